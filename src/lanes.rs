//! SHA-256's compression function on sixteen blocks at once, for hashing in bulk:
//! lookup pseudonyms in audience matching, the vault's slot checksums and the log's
//! entry hashes when a ledger opens.
//!
//! Without SHA instructions (the Skylake and Cascade Lake Xeons many clouds still rent,
//! for one), `sha2` compresses one block at a time in scalar code: about 500–700 ns a
//! block on a 2 GHz Xeon (a lookup pseudonym takes two blocks, a vault slot four, an
//! entry about five). SHA-256 has no
//! branches and no table lookups that depend on the data, so sixteen blocks can go
//! through its rounds side by side: the plain copy below is Rust over arrays of sixteen
//! words, one word per block ("lane"), which the compiler turns into SIMD instructions.
//! It is compiled twice: for SSE2, part of every x86-64 CPU, and for AVX2 (eight lanes
//! to a register instead of four). On that 2 GHz Xeon, a block takes 73–82 ns
//! in the AVX2 copy, 187–254 ns in the SSE2 one and 447–466 ns in `sha2` (three
//! alternating runs of each; BENCHMARKS.md, "Stop 21").
//!
//! With SHA instructions, `sha2` uses them for one block at a time, and each
//! `sha256rnds2` (two of the 64 rounds) waits for the one before it. A third copy
//! ([`Copy::Sha`]) takes four blocks through the rounds side by side in those
//! instructions, so that the CPU works on one block while another waits: on an EPYC
//! of family 25, a million lookup pseudonyms' blocks (two each) took 41–49 ms this way
//! against 77–85 ms in `sha2` (BENCHMARKS.md, "Stop 27").
//!
//! For whole messages ([`sha256_each`]: vault checksums, entry hashes), that copy reads
//! four messages' blocks as they are, without spreading them across lanes first.
//!
//! Callers take the fastest copy the CPU has ([`Copy::best`], after asking it); the call
//! into a copy compiled for CPU features is the crate's one `unsafe` block. Only
//! arithmetic on values: no secret-dependent branch or memory access, as in any
//! SHA-256. Tests check every copy the CPU runs against `sha2`'s on random blocks,
//! states and messages.

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Bytes in a SHA-256 block.
const BLOCK: usize = 64;

/// Blocks compressed side by side.
pub(crate) const LANES: usize = 16;

/// One word of each of [`LANES`] blocks or states.
pub(crate) type Lanes = [u32; LANES];

/// SHA-256's round constants (FIPS 180-4, 4.2.2).
#[rustfmt::skip]
const K: [u32; 64] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
    0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
    0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
    0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
    0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
    0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
    0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
];

/// Whether SHA-256 is computed in lanes rather than one message at a time by `sha2`
/// on this CPU: on x86-64, in SHA instructions where it has them, in AVX2 or SSE2
/// registers elsewhere. The SIMD lanes were measured faster than `sha2` on a CPU without
/// SHA instructions (BENCHMARKS.md, "Stop 20"); the SHA copy about as fast for whole
/// messages (200,000 of 240 bytes: 35–56 ms against 42–50 ms, "Stop 28") and faster for
/// the one-block HMACs of audience matching. (Other CPUs have not been measured, so
/// `sha2` computes them.)
pub(crate) fn worthwhile() -> bool {
    #[cfg(test)]
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    cfg!(target_arch = "x86_64")
}

/// Tests: 1 or 2 force [`worthwhile`]'s answer (false or true), 0 lets the CPU decide.
/// Both paths give the same digests, so a test forcing one while another test runs
/// changes only which path that test takes.
#[cfg(test)]
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Tests: makes [`worthwhile`] answer `lanes` (`None`: the CPU decides again).
#[cfg(test)]
pub(crate) fn force(lanes: Option<bool>) {
    let v = match lanes {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    };
    FORCED.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The copies of the compression function in lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Copy {
    /// Four lanes at a time, side by side, in SHA instructions ([`compress_sha`]).
    Sha,
    /// The plain Rust copy compiled for AVX2 ([`work_avx2`]).
    Avx2,
    /// The plain Rust copy compiled for SSE2, which every x86-64 CPU has
    /// ([`compress_any`]; elsewhere, whatever the target has).
    Plain,
}

impl Copy {
    /// The fastest copy on this CPU: the SHA instructions' where it has them (1.6 to
    /// 1.9 times `sha2`'s speed, which does one block at a time; BENCHMARKS.md,
    /// "Stop 27"), else the AVX2 one, else the plain one.
    pub(crate) fn best() -> Copy {
        if Copy::Sha.runs_here() {
            Copy::Sha
        } else if Copy::Avx2.runs_here() {
            Copy::Avx2
        } else {
            Copy::Plain
        }
    }

    /// Whether this CPU has what the copy needs (asked as the standard library's
    /// `is_x86_feature_detected!` asks: the OS's support for the registers included).
    pub(crate) fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        match self {
            Copy::Sha => {
                std::is_x86_feature_detected!("sha")
                    && std::is_x86_feature_detected!("sse4.1")
                    && std::is_x86_feature_detected!("ssse3")
            }
            Copy::Avx2 => std::is_x86_feature_detected!("avx2"),
            Copy::Plain => true,
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Copy::Plain
        }
    }
}

/// Work for [`run`]: a compression in lanes, or HMACs of one-block messages.
enum Work<'a> {
    /// [`compress_in`]'s arguments.
    Compress {
        state: &'a mut [Lanes; 8],
        block: &'a [Lanes; 16],
        used: usize,
    },
    /// [`hmac_one_block`]'s arguments.
    Hmac(HmacJob<'a>),
    /// [`sha256_each_in`]'s messages, and the vector their digests are appended to.
    Digests {
        messages: &'a [&'a [u8]],
        out: &'a mut Vec<[u8; 32]>,
    },
}

/// [`hmac_one_block`]'s arguments: the key's inner and outer states, the padded
/// one-block messages (the first `used` of them) and where their HMACs go.
struct HmacJob<'a> {
    inner: &'a [u32; 8],
    outer: &'a [u32; 8],
    blocks: &'a [[u32; 16]; LANES],
    used: usize,
    out: &'a mut [[u32; 8]; LANES],
}

/// A copy compiled for CPU features: safe to call only on a CPU that has them.
#[cfg(target_arch = "x86_64")]
type FastCopy = unsafe fn(Work<'_>);

/// Compresses, in each of the first `used` lanes `l` (all sixteen at most), the state
/// of lane `l` with the block of lane `l` (FIPS 180-4, 6.2.2, steps 1 to 4), in the
/// copy `copy` if this CPU can run it, in the plain copy otherwise. Lanes past `used`
/// may be left as they were or compressed too.
pub(crate) fn compress_in(copy: Copy, state: &mut [Lanes; 8], block: &[Lanes; 16], used: usize) {
    run(copy, Work::Compress { state, block, used });
}

/// Does `work` in `copy` if this CPU can run it, in the plain copy otherwise.
#[allow(
    unsafe_code,
    reason = "the crate's one unsafe block: calling a copy compiled for CPU features \
              (`#[target_feature]`) after asking the CPU whether it has them"
)]
fn run(copy: Copy, work: Work<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        let fast: Option<FastCopy> = match copy {
            Copy::Sha if copy.runs_here() => Some(work_sha),
            Copy::Avx2 if copy.runs_here() => Some(work_avx2),
            _ => None,
        };
        if let Some(fast) = fast {
            // SAFETY: a `#[target_feature]` function's only requirement is that the CPU
            // running it has the features it names (it may use their instructions
            // anywhere), and `runs_here` has just asked the CPU for exactly those of
            // the copy chosen: `sha`, `sse4.1` and `ssse3` for `work_sha` (SSE2 is part
            // of x86-64), `avx2` for `work_avx2`.
            unsafe { fast(work) };
            return;
        }
    }
    work_plain(work);
}

/// [`run`]'s plain copy: the lanes in plain Rust, compiled for the target's baseline
/// (SSE2 on x86-64), and inlined into [`work_avx2`] to be compiled for AVX2 there.
#[inline(always)]
fn work_plain(work: Work<'_>) {
    match work {
        Work::Compress { state, block, used } => compress_any(state, block, used),
        Work::Hmac(job) => hmac_lanes(job, compress_any),
        // (Only the SHA copy is asked for them; here when this CPU cannot run it.)
        Work::Digests { messages, out } => {
            out.extend(messages.iter().map(|m| <[u8; 32]>::from(Sha256::digest(m))))
        }
    }
}

/// [`work_plain`], compiled for CPUs with AVX2: eight lanes to a register instead of
/// four: a block in 73–82 ns against the SSE2 copy's 187–254 ns on this project's
/// 2 GHz Xeon (BENCHMARKS.md, "Stop 21"). Only for a CPU with AVX2: see [`run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn work_avx2(work: Work<'_>) {
    work_plain(work);
}

/// [`run`] in SHA instructions. Only for a CPU with SHA instructions, SSE4.1 and
/// SSSE3: see [`run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn work_sha(work: Work<'_>) {
    match work {
        Work::Compress { state, block, used } => compress_sha(state, block, used),
        Work::Hmac(job) => hmac_sha(job),
        Work::Digests { messages, out } => sha_digests(messages, out),
    }
}

/// [`sha256_each`] in SHA instructions: the messages four at a time, each group's
/// blocks through the rounds side by side, read from the messages where they lie.
/// Through the lanes of [`compress_in`], every block was first spread across sixteen
/// lanes and gathered back for the SHA instructions: on an EPYC of family 25, model 1
/// (stop 28), 200,000 messages of 240 bytes took 50–79 ms that way, 35–56 ms this way
/// and 42–50 ms in `sha2`, alternating in one process; opening the 1M-subject ledger
/// spent about 1.2 s of CPU in SHA-256 that way, 0.85 s this way. Messages of
/// different lengths take different numbers of blocks: one that has ended keeps its
/// state while the others go on. A padded last block is copied into one buffer, which
/// is wiped when all messages are done; like `sha2`, this copy leaves its schedule and
/// states in registers and on the stack.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn sha_digests(messages: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    use std::arch::x86_64::_mm_setzero_si128;
    let (iv_abef, iv_cdgh) = sha_load_state(&IV);
    let mut bytes = [0u8; BLOCK];
    for group in messages.chunks(SHA_WAYS) {
        let most = group.iter().map(|m| blocks_of(m)).max().unwrap_or(0);
        let (mut abef, mut cdgh) = ([iv_abef; SHA_WAYS], [iv_cdgh; SHA_WAYS]);
        for b in 0..most {
            let mut w = [[_mm_setzero_si128(); 4]; SHA_WAYS];
            for (w, m) in w.iter_mut().zip(group) {
                // A block wholly inside the message is read where it is (its last
                // block, which holds the padding, never is).
                let whole = m
                    .get(b.saturating_mul(BLOCK)..)
                    .and_then(|rest| rest.first_chunk::<BLOCK>());
                *w = match whole {
                    Some(block) => sha_load_bytes(block),
                    None => {
                        padded_block(m, b, &mut bytes);
                        sha_load_bytes(&bytes)
                    }
                };
            }
            let (next_abef, next_cdgh) = sha_rounds(abef, cdgh, w);
            let next = next_abef.into_iter().zip(next_cdgh);
            for (((abef, cdgh), next), m) in abef.iter_mut().zip(&mut cdgh).zip(next).zip(group) {
                if b < blocks_of(m) {
                    (*abef, *cdgh) = next;
                }
            }
        }
        for (abef, cdgh) in abef.into_iter().zip(cdgh).take(group.len()) {
            let mut digest = [0u8; 32];
            for (dst, w) in digest.chunks_exact_mut(4).zip(sha_state(abef, cdgh)) {
                dst.copy_from_slice(&w.to_be_bytes());
            }
            out.push(digest);
        }
    }
    bytes.zeroize();
}

/// Blocks that [`compress_sha`] takes through SHA-256's rounds side by side.
#[cfg(target_arch = "x86_64")]
const SHA_WAYS: usize = 4;

/// [`compress_in`] in SHA instructions: the lanes in groups of [`SHA_WAYS`], each group's
/// blocks through the rounds side by side. One `sha256rnds2` (two rounds) waits for the
/// one before it of the same block, several cycles on the CPUs measured, while the CPU
/// could start one or two every cycle: interleaving independent blocks fills those
/// cycles. Only the groups holding the first `used` lanes are compressed. Only for a
/// CPU with SHA instructions, SSE4.1 and SSSE3: see [`run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress_sha(state: &mut [Lanes; 8], block: &[Lanes; 16], used: usize) {
    for first in (0..used.min(LANES)).step_by(SHA_WAYS) {
        sha_group(state, block, first);
    }
}

/// One group of [`SHA_WAYS`] lanes from `first` on, in SHA instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_group(state: &mut [Lanes; 8], block: &[Lanes; 16], first: usize) {
    use std::arch::x86_64::_mm_setzero_si128;
    let word = |rows: &[Lanes], i: usize, lane: usize| -> u32 {
        rows.get(i).and_then(|r| r.get(lane)).copied().unwrap_or(0)
    };
    let mut abef = [_mm_setzero_si128(); SHA_WAYS];
    let mut cdgh = [_mm_setzero_si128(); SHA_WAYS];
    let mut w = [[_mm_setzero_si128(); 4]; SHA_WAYS];
    for (j, ((abef, cdgh), w)) in abef.iter_mut().zip(&mut cdgh).zip(&mut w).enumerate() {
        let l = first + j;
        (*abef, *cdgh) = sha_load_state(&std::array::from_fn(|i| word(state, i, l)));
        *w = sha_load_block(&std::array::from_fn(|i| word(block, i, l)));
    }
    let (abef, cdgh) = sha_rounds(abef, cdgh, w);
    for (j, (abef, cdgh)) in abef.into_iter().zip(cdgh).enumerate() {
        for (row, w) in state.iter_mut().zip(sha_state(abef, cdgh)) {
            if let Some(dst) = row.get_mut(first + j) {
                *dst = w;
            }
        }
    }
    // Like `sha2`'s, this copy leaves its schedule and working values in registers and
    // on the stack: callers wipe the blocks and states they own.
}

/// HMAC-SHA256 of one-block messages from a key's two states: for each of the first
/// `used` blocks (each a padded message's only block, as words; at most [`LANES`]),
/// compresses it from `inner`, then compresses the padded inner digest from `outer`,
/// and writes the outer state (the HMAC, as words) to `out`; the rest of `out` is left
/// as it was. In SHA instructions, four messages side by side and the inner digests
/// kept in registers, where the CPU has them; in lanes elsewhere.
pub(crate) fn hmac_one_block(
    inner: &[u32; 8],
    outer: &[u32; 8],
    blocks: &[[u32; 16]; LANES],
    used: usize,
    out: &mut [[u32; 8]; LANES],
) {
    hmac_one_block_in(Copy::best(), inner, outer, blocks, used, out);
}

/// [`hmac_one_block`] in `copy` if this CPU can run it, in the plain copy otherwise.
pub(crate) fn hmac_one_block_in(
    copy: Copy,
    inner: &[u32; 8],
    outer: &[u32; 8],
    blocks: &[[u32; 16]; LANES],
    used: usize,
    out: &mut [[u32; 8]; LANES],
) {
    let used = used.min(LANES);
    let job = HmacJob {
        inner,
        outer,
        blocks,
        used,
        out,
    };
    run(copy, Work::Hmac(job));
}

/// [`hmac_one_block`] in lanes: the blocks turned into lanes, both compressions by
/// `compress`, the digests turned back. The lanes are wiped after use.
#[inline(always)]
fn hmac_lanes(
    HmacJob {
        inner,
        outer,
        blocks,
        used,
        out,
    }: HmacJob<'_>,
    compress: impl Fn(&mut [Lanes; 8], &[Lanes; 16], usize),
) {
    let mut words: [Lanes; 16] = std::array::from_fn(|i| {
        std::array::from_fn(|l| blocks.get(l).and_then(|b| b.get(i)).copied().unwrap_or(0))
    });
    let mut state = inner.map(|w| [w; LANES]);
    compress(&mut state, &words, used);
    // The outer block: the inner digest, the 0x80 byte, zeros and the length in bits of
    // the key block and the digest.
    words = [[0; LANES]; 16];
    for (dst, src) in words.iter_mut().zip(&state) {
        *dst = *src;
    }
    let [.., w8, _, _, _, _, _, _, w15] = &mut words;
    *w8 = [0x8000_0000; LANES];
    *w15 = [OUTER_BITS; LANES];
    state.zeroize();
    let mut digest = outer.map(|w| [w; LANES]);
    compress(&mut digest, &words, used);
    words.zeroize();
    for (l, dst) in out.iter_mut().enumerate().take(used) {
        for (d, row) in dst.iter_mut().zip(&digest) {
            *d = row.get(l).copied().unwrap_or(0);
        }
    }
    digest.zeroize();
}

/// The length in bits of what an HMAC's outer hash covers: the key block and the inner
/// digest.
const OUTER_BITS: u32 = ((BLOCK + 32) * 8) as u32;

/// [`hmac_one_block`] in SHA instructions: both compressions of four messages side by
/// side, the inner digests kept in registers between them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn hmac_sha(
    HmacJob {
        inner,
        outer,
        blocks,
        used,
        out,
    }: HmacJob<'_>,
) {
    use std::arch::x86_64::{_mm_set_epi32, _mm_setzero_si128};
    let (inner_abef, inner_cdgh) = sha_load_state(inner);
    let (outer_abef, outer_cdgh) = sha_load_state(outer);
    let groups = blocks.chunks(SHA_WAYS).zip(out.chunks_mut(SHA_WAYS));
    for (g, (blocks, out)) in groups.enumerate().take(used.div_ceil(SHA_WAYS)) {
        let mut w = [[_mm_setzero_si128(); 4]; SHA_WAYS];
        for (w, block) in w.iter_mut().zip(blocks) {
            *w = sha_load_block(block);
        }
        let (abef, cdgh) = sha_rounds([inner_abef; SHA_WAYS], [inner_cdgh; SHA_WAYS], w);
        // The outer blocks: the inner digest (words 0 to 7), the 0x80 byte, zeros and
        // the length in bits.
        for (w, (abef, cdgh)) in w.iter_mut().zip(abef.into_iter().zip(cdgh)) {
            let [lo, hi] = sha_state_words(abef, cdgh);
            *w = [
                lo,
                hi,
                _mm_set_epi32(0, 0, 0, 0x8000_0000_u32 as i32),
                _mm_set_epi32(OUTER_BITS as i32, 0, 0, 0),
            ];
        }
        let (abef, cdgh) = sha_rounds([outer_abef; SHA_WAYS], [outer_cdgh; SHA_WAYS], w);
        let in_use = used.saturating_sub(g * SHA_WAYS);
        for (dst, (abef, cdgh)) in out.iter_mut().zip(abef.into_iter().zip(cdgh)).take(in_use) {
            *dst = sha_state(abef, cdgh);
        }
    }
}

/// A state's words as SHA instructions hold them: A, B, E, F in one register and C, D,
/// G, H in the other, the highest word first (Intel's layout, as `sha2`'s x86 code
/// uses it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_load_state(words: &[u32; 8]) -> (std::arch::x86_64::__m128i, std::arch::x86_64::__m128i) {
    use std::arch::x86_64::_mm_set_epi32;
    let [a, b, c, d, e, f, g, h] = words.map(|w| w as i32);
    (_mm_set_epi32(a, b, e, f), _mm_set_epi32(c, d, g, h))
}

/// A block's sixteen words, four to a register, the first word lowest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_load_block(words: &[u32; 16]) -> [std::arch::x86_64::__m128i; 4] {
    use std::arch::x86_64::_mm_set_epi32;
    let w = words.map(|w| w as i32);
    let [w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15] = w;
    [
        _mm_set_epi32(w3, w2, w1, w0),
        _mm_set_epi32(w7, w6, w5, w4),
        _mm_set_epi32(w11, w10, w9, w8),
        _mm_set_epi32(w15, w14, w13, w12),
    ]
}

/// A block's sixteen words from its bytes (big-endian, as SHA-256 reads them), four to
/// a register, the first word lowest: [`sha_load_block`] of the bytes' words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_load_bytes(bytes: &[u8; BLOCK]) -> [std::arch::x86_64::__m128i; 4] {
    use std::arch::x86_64::{_mm_set_epi32, _mm_set_epi64x, _mm_shuffle_epi8};
    // Four bytes as they lie in memory (little-endian), turned around in the register.
    let word = |i: usize| {
        let four = bytes.get(4 * i..).and_then(|b| b.first_chunk::<4>()).copied();
        i32::from_le_bytes(four.unwrap_or_default())
    };
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    std::array::from_fn(|r| {
        let q = 4 * r;
        _mm_shuffle_epi8(
            _mm_set_epi32(word(q + 3), word(q + 2), word(q + 1), word(q)),
            swap,
        )
    })
}

/// The state in the SHA instructions' layout back as words A to D and E to H, each in a
/// register, the first word lowest: also the first eight words of a block holding the
/// state's digest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_state_words(
    abef: std::arch::x86_64::__m128i,
    cdgh: std::arch::x86_64::__m128i,
) -> [std::arch::x86_64::__m128i; 2] {
    use std::arch::x86_64::{_mm_alignr_epi8, _mm_blend_epi16, _mm_shuffle_epi32};
    let feba = _mm_shuffle_epi32::<0x1B>(abef);
    let dchg = _mm_shuffle_epi32::<0xB1>(cdgh);
    [
        _mm_blend_epi16::<0xF0>(feba, dchg),
        _mm_alignr_epi8::<8>(dchg, feba),
    ]
}

/// The state in the SHA instructions' layout back as its eight words, A first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_state(abef: std::arch::x86_64::__m128i, cdgh: std::arch::x86_64::__m128i) -> [u32; 8] {
    use std::arch::x86_64::_mm_extract_epi32;
    let [lo, hi] = sha_state_words(abef, cdgh);
    [
        _mm_extract_epi32::<0>(lo) as u32,
        _mm_extract_epi32::<1>(lo) as u32,
        _mm_extract_epi32::<2>(lo) as u32,
        _mm_extract_epi32::<3>(lo) as u32,
        _mm_extract_epi32::<0>(hi) as u32,
        _mm_extract_epi32::<1>(hi) as u32,
        _mm_extract_epi32::<2>(hi) as u32,
        _mm_extract_epi32::<3>(hi) as u32,
    ]
}

/// SHA-256's compression of [`SHA_WAYS`] blocks side by side, from the states `abef`
/// and `cdgh` (in the SHA instructions' layout) with the blocks' words `w`: returns the
/// new states, the old ones added.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_rounds(
    mut abef: [std::arch::x86_64::__m128i; SHA_WAYS],
    mut cdgh: [std::arch::x86_64::__m128i; SHA_WAYS],
    mut w: [[std::arch::x86_64::__m128i; 4]; SHA_WAYS],
) -> (
    [std::arch::x86_64::__m128i; SHA_WAYS],
    [std::arch::x86_64::__m128i; SHA_WAYS],
) {
    use std::arch::x86_64::_mm_add_epi32;
    let (abef0, cdgh0) = (abef, cdgh);
    sha_step::<0>(&mut abef, &mut cdgh, &mut w);
    sha_step::<1>(&mut abef, &mut cdgh, &mut w);
    sha_step::<2>(&mut abef, &mut cdgh, &mut w);
    sha_step::<3>(&mut abef, &mut cdgh, &mut w);
    sha_step::<4>(&mut abef, &mut cdgh, &mut w);
    sha_step::<5>(&mut abef, &mut cdgh, &mut w);
    sha_step::<6>(&mut abef, &mut cdgh, &mut w);
    sha_step::<7>(&mut abef, &mut cdgh, &mut w);
    sha_step::<8>(&mut abef, &mut cdgh, &mut w);
    sha_step::<9>(&mut abef, &mut cdgh, &mut w);
    sha_step::<10>(&mut abef, &mut cdgh, &mut w);
    sha_step::<11>(&mut abef, &mut cdgh, &mut w);
    sha_step::<12>(&mut abef, &mut cdgh, &mut w);
    sha_step::<13>(&mut abef, &mut cdgh, &mut w);
    sha_step::<14>(&mut abef, &mut cdgh, &mut w);
    sha_step::<15>(&mut abef, &mut cdgh, &mut w);
    for (s, s0) in abef.iter_mut().zip(abef0).chain(cdgh.iter_mut().zip(cdgh0)) {
        *s = _mm_add_epi32(*s, s0);
    }
    (abef, cdgh)
}

/// Four rounds (`I` = 0 to 15: rounds 4·I to 4·I+3) of each block of a group. `w` holds
/// a block's next four groups of four message words; from `I` = 4 on, each step makes
/// the next group from the four before it (`sha256msg1`, `sha256msg2`), and every step
/// rotates `w` so that the group used is first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn sha_step<const I: usize>(
    abef: &mut [std::arch::x86_64::__m128i; SHA_WAYS],
    cdgh: &mut [std::arch::x86_64::__m128i; SHA_WAYS],
    w: &mut [[std::arch::x86_64::__m128i; 4]; SHA_WAYS],
) {
    use std::arch::x86_64::{
        _mm_add_epi32, _mm_alignr_epi8, _mm_set_epi32, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32,
        _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    };
    let k = |i: usize| K.get(4 * I + i).map_or(0, |k| *k as i32);
    let k = _mm_set_epi32(k(3), k(2), k(1), k(0));
    for ((abef, cdgh), w) in abef.iter_mut().zip(cdgh.iter_mut()).zip(w.iter_mut()) {
        let [w0, w1, w2, w3] = *w;
        let now = if I >= 4 {
            let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8::<4>(w3, w2));
            _mm_sha256msg2_epu32(t, w3)
        } else {
            w0
        };
        *w = [w1, w2, w3, now];
        let t1 = _mm_add_epi32(now, k);
        *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, t1);
        let t2 = _mm_shuffle_epi32::<0x0E>(t1);
        *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, t2);
    }
}

/// SHA-256's compression in lanes, in plain Rust: inlined into [`work_avx2`] and
/// [`work_plain`], and compiled for the instructions each may use. All sixteen lanes
/// are compressed, `used` or not: in SIMD registers they cost the same.
#[inline(always)]
fn compress_any(state: &mut [Lanes; 8], block: &[Lanes; 16], _used: usize) {
    // The message schedule.
    let mut w = [[0u32; LANES]; 64];
    for (dst, src) in w.iter_mut().zip(block) {
        *dst = *src;
    }
    for t in 16..64 {
        let (done, rest) = w.split_at_mut(t);
        // The words t-16, t-15, t-7 and t-2.
        if let (Some(new), [.., w16, w15, _, _, _, _, _, _, _, w7, _, _, _, _, w2, _]) =
            (rest.first_mut(), &*done)
        {
            for ((((n, a), b), c), d) in new.iter_mut().zip(w16).zip(w15).zip(w7).zip(w2) {
                let s0 = b.rotate_right(7) ^ b.rotate_right(18) ^ (b >> 3);
                let s1 = d.rotate_right(17) ^ d.rotate_right(19) ^ (d >> 10);
                *n = a.wrapping_add(s0).wrapping_add(*c).wrapping_add(s1);
            }
        }
    }
    // The rounds.
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (k, wt) in K.iter().zip(&w) {
        let mut next_a = [0u32; LANES];
        let mut next_e = [0u32; LANES];
        let lanes = next_a
            .iter_mut()
            .zip(next_e.iter_mut())
            .zip(a.iter().zip(&b).zip(c.iter().zip(&d)))
            .zip(e.iter().zip(&f).zip(g.iter().zip(&h)).zip(wt));
        for (((na, ne), ((a, b), (c, d))), (((e, f), (g, h)), w)) in lanes {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(*w);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            *ne = d.wrapping_add(t1);
            *na = t1.wrapping_add(s0.wrapping_add(maj));
        }
        (h, g, f, e, d, c, b, a) = (g, f, e, next_e, c, b, a, next_a);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        for (s, v) in s.iter_mut().zip(v) {
            *s = s.wrapping_add(v);
        }
    }
    // Like `sha2`'s compression function, this one leaves its schedule and working
    // variables on the stack: callers wipe the blocks and states they own.
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
pub(crate) const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The SHA-256 digest of each message, in order: several at a time where this CPU has
/// a copy for it ([`worthwhile`]: four in SHA instructions, sixteen in SIMD lanes), one
/// by one through `sha2` elsewhere.
pub(crate) fn sha256_each(messages: &[&[u8]]) -> Vec<[u8; 32]> {
    sha256_each_in(messages, worthwhile())
}

/// [`sha256_each`], in lanes if `in_lanes`: in SHA instructions four messages at a
/// time, in the other copies sixteen (but for a last group of fewer than [`FEW`]).
pub(crate) fn sha256_each_in(messages: &[&[u8]], in_lanes: bool) -> Vec<[u8; 32]> {
    sha256_each_with(Copy::best(), messages, in_lanes)
}

/// [`sha256_each_in`] with the copy `copy` (if this CPU runs it): in SHA instructions
/// four messages at a time (see `sha_digests`), in the other copies sixteen messages at
/// a time in lanes.
fn sha256_each_with(copy: Copy, messages: &[&[u8]], in_lanes: bool) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(messages.len());
    if in_lanes && copy == Copy::Sha {
        run(
            copy,
            Work::Digests {
                messages,
                out: &mut out,
            },
        );
        return out;
    }
    for group in messages.chunks(LANES) {
        if in_lanes && group.len() >= FEW {
            sha256_lanes(copy, group, &mut out);
        } else {
            out.extend(group.iter().map(|m| <[u8; 32]>::from(Sha256::digest(m))));
        }
    }
    out
}

/// Groups of fewer messages are hashed one by one by `sha2`: a block in all sixteen
/// lanes costs about as much as three blocks of `sha2` in the AVX2 copy, and seven in
/// the SSE2 one (BENCHMARKS.md, "Stop 21"), whatever the number of lanes in use.
const FEW: usize = 4;

/// Appends the digests of up to [`LANES`] messages to `out`. Messages of different
/// lengths take different numbers of blocks: a lane whose message has ended keeps its
/// state while the longer ones go on. The blocks and the intermediate states are wiped
/// after use (the messages may hold secrets, as a vault slot does); like `sha2`,
/// [`compress_in`] leaves its own schedule on the stack.
fn sha256_lanes(copy: Copy, group: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    let most = group.iter().map(|m| blocks_of(m)).max().unwrap_or(0);
    let mut state: [Lanes; 8] = IV.map(|w| [w; LANES]);
    let mut words = [[0u32; LANES]; 16];
    let mut block = [0u8; BLOCK];
    for b in 0..most {
        for (lane, m) in group.iter().enumerate() {
            padded_block(m, b, &mut block);
            for (dst, src) in words.iter_mut().zip(block.chunks_exact(4)) {
                if let (Some(dst), Ok(src)) = (dst.get_mut(lane), <[u8; 4]>::try_from(src)) {
                    *dst = u32::from_be_bytes(src);
                }
            }
        }
        let mut before = state;
        compress_in(copy, &mut state, &words, group.len());
        // Lanes whose message ended before this block (and lanes without a message)
        // keep their state.
        for (lane, m) in (0..LANES).map(|l| (l, group.get(l))) {
            if m.is_none_or(|m| b >= blocks_of(m)) {
                for (s, old) in state.iter_mut().zip(&before) {
                    if let (Some(s), Some(old)) = (s.get_mut(lane), old.get(lane)) {
                        *s = *old;
                    }
                }
            }
        }
        before.zeroize();
    }
    block.zeroize();
    words.zeroize();
    for lane in 0..group.len() {
        let mut digest = [0u8; 32];
        for (dst, w) in digest.chunks_exact_mut(4).zip(&state) {
            dst.copy_from_slice(&w.get(lane).copied().unwrap_or_default().to_be_bytes());
        }
        out.push(digest);
    }
    state.zeroize();
}

/// How many blocks `message` takes once padded (the 0x80 byte and the 8-byte length
/// follow it).
fn blocks_of(message: &[u8]) -> usize {
    (message.len() + 9).div_ceil(BLOCK)
}

/// Block `b` of `message` padded as SHA-256 pads it (the 0x80 byte after the message,
/// zeros, and the length in bits in the last 8 bytes of the last block), written to
/// `block`; zeros past the padded message.
fn padded_block(message: &[u8], b: usize, block: &mut [u8; BLOCK]) {
    let start = b.saturating_mul(BLOCK);
    let last = blocks_of(message).saturating_sub(1);
    match message.get(start..start.saturating_add(BLOCK)) {
        Some(whole) => block.copy_from_slice(whole),
        None => {
            block.fill(0);
            let rest = message.get(start..).unwrap_or_default();
            if let Some(dst) = block.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            if start <= message.len() {
                if let Some(end) = block.get_mut(rest.len()) {
                    *end = 0x80;
                }
            }
        }
    }
    if b == last {
        let bits = (message.len() as u64).wrapping_mul(8).to_be_bytes();
        if let Some(dst) = block.last_chunk_mut::<8>() {
            *dst = bits;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use sha2::digest::generic_array::GenericArray;
    use sha2::{Digest, Sha256};

    fn sha2_compress(state: &[u32; 8], block: &[u32; 16]) -> [u32; 8] {
        let mut bytes = [0u8; 64];
        for (dst, w) in bytes.chunks_exact_mut(4).zip(block) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        let mut s = *state;
        sha2::compress256(&mut s, std::slice::from_ref(GenericArray::from_slice(&bytes)));
        s
    }

    const COPIES: [Copy; 3] = [Copy::Sha, Copy::Avx2, Copy::Plain];

    proptest::proptest! {
        /// In every copy this CPU runs, every lane in use gives `sha2`'s compression of
        /// its own state and block.
        #[test]
        fn each_lane_equals_sha2(
            words in proptest::collection::vec(proptest::num::u32::ANY, 24 * LANES),
            used in 1..=LANES,
        ) {
            let (states, blocks) = words.split_at(8 * LANES);
            let before: [Lanes; 8] = std::array::from_fn(|i| std::array::from_fn(|l| states[l * 8 + i]));
            let block: [Lanes; 16] = std::array::from_fn(|i| std::array::from_fn(|l| blocks[l * 16 + i]));
            for copy in COPIES.into_iter().filter(|c| c.runs_here()) {
                for used in [used, LANES] {
                    let mut state = before;
                    compress_in(copy, &mut state, &block, used);
                    for l in 0..used {
                        let s: [u32; 8] = std::array::from_fn(|i| before[i][l]);
                        let b: [u32; 16] = std::array::from_fn(|i| block[i][l]);
                        let got: [u32; 8] = std::array::from_fn(|i| state[i][l]);
                        proptest::prop_assert_eq!(got, sha2_compress(&s, &b), "lane {} of {} in {:?}", l, used, copy);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// In every copy this CPU runs, the HMAC of each one-block message in use is
        /// `sha2`'s: the inner compression from the inner state, then the outer one of
        /// the padded inner digest; the rest of the output is left alone.
        #[test]
        fn hmac_of_one_block_equals_sha2(
            words in proptest::collection::vec(proptest::num::u32::ANY, 16 * LANES + 16),
            used in 0..=LANES,
        ) {
            let (keys, blocks) = words.split_at(16);
            let inner: [u32; 8] = std::array::from_fn(|i| keys[i]);
            let outer: [u32; 8] = std::array::from_fn(|i| keys[8 + i]);
            let blocks: [[u32; 16]; LANES] = std::array::from_fn(|l| std::array::from_fn(|i| blocks[l * 16 + i]));
            let expect: Vec<[u32; 8]> = blocks.iter().map(|b| {
                let digest = sha2_compress(&inner, b);
                let mut block = [0u32; 16];
                block[..8].copy_from_slice(&digest);
                block[8] = 0x8000_0000;
                block[15] = 768;
                sha2_compress(&outer, &block)
            }).collect();
            for copy in COPIES.into_iter().filter(|c| c.runs_here()) {
                let mut out = [[7u32; 8]; LANES];
                hmac_one_block_in(copy, &inner, &outer, &blocks, used, &mut out);
                for l in 0..LANES {
                    let want = if l < used { expect[l] } else { [7; 8] };
                    proptest::prop_assert_eq!(out[l], want, "message {} of {} in {:?}", l, used, copy);
                }
            }
        }
    }

    /// The copies the tests above could check: on the x86-64 machines this project runs
    /// on, at least the SSE2 copy and one of the others.
    #[test]
    fn which_copies_run_here() {
        assert!(Copy::Plain.runs_here());
        if cfg!(target_arch = "x86_64") {
            assert!(
                Copy::Sha.runs_here() || Copy::Avx2.runs_here(),
                "neither SHA nor AVX2 here"
            );
            assert_eq!(Copy::best() == Copy::Sha, Copy::Sha.runs_here());
        } else {
            assert_eq!(Copy::best(), Copy::Plain);
        }
    }

    proptest::proptest! {
        /// Messages of any lengths, mixed, give `sha2`'s digests in order, in lanes and
        /// not.
        #[test]
        fn digests_of_messages_of_any_length_equal_sha2(
            messages in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..40)
        ) {
            let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
            let expect: Vec<[u8; 32]> = refs.iter().map(|m| Sha256::digest(m).into()).collect();
            proptest::prop_assert_eq!(&sha256_each_in(&refs, true), &expect);
            proptest::prop_assert_eq!(&sha256_each_in(&refs, false), &expect);
            for copy in COPIES.into_iter().filter(|c| c.runs_here()) {
                proptest::prop_assert_eq!(&sha256_each_with(copy, &refs, true), &expect, "in {:?}", copy);
            }
        }
    }

    #[test]
    fn every_length_around_the_block_edges() {
        let long: Vec<u8> = (0..=600u32).map(|i| (i * 7) as u8).collect();
        let refs: Vec<&[u8]> = (0..=600).map(|n| &long[..n]).collect();
        let expect: Vec<[u8; 32]> = refs.iter().map(|m| Sha256::digest(m).into()).collect();
        // One group of very different lengths: lanes that end early keep their state.
        let mixed: Vec<&[u8]> = [0, 600, 55, 56, 64, 1, 119, 120, 240, 300]
            .iter()
            .map(|n| &long[..*n])
            .collect();
        let expect_mixed: Vec<[u8; 32]> = mixed.iter().map(|m| Sha256::digest(m).into()).collect();
        for copy in COPIES.into_iter().filter(|c| c.runs_here()) {
            assert_eq!(sha256_each_with(copy, &refs, true), expect, "{copy:?}");
            assert_eq!(sha256_each_with(copy, &mixed, true), expect_mixed, "{copy:?}");
        }
    }

    #[test]
    fn the_empty_message_in_every_lane() {
        // SHA-256("") = e3b0c442 98fc1c14 ...: one padded block from the initial value.
        for copy in COPIES.into_iter().filter(|c| c.runs_here()) {
            let mut state: [Lanes; 8] = IV.map(|w| [w; LANES]);
            let mut block = [[0u32; LANES]; 16];
            block[0] = [0x8000_0000; LANES];
            compress_in(copy, &mut state, &block, LANES);
            assert_eq!(state[0], [0xe3b0_c442; LANES], "{copy:?}");
            assert_eq!(state[1], [0x98fc_1c14; LANES], "{copy:?}");
        }
    }
}
