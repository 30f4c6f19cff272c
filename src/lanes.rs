//! SHA-256's compression function on sixteen blocks at once, for hashing in bulk on
//! CPUs without SHA instructions: lookup pseudonyms in audience matching, the vault's
//! slot checksums and the log's entry hashes when a ledger opens.
//!
//! Without SHA instructions (the Skylake and Cascade Lake Xeons many clouds still rent,
//! for one), `sha2` compresses one block at a time in scalar code: about 500–700 ns a
//! block on a 2 GHz Xeon (a lookup pseudonym takes two blocks, a vault slot four, an
//! entry about five). SHA-256 has no
//! branches and no table lookups that depend on the data, so sixteen blocks can go
//! through its rounds side by side: the code below is plain Rust over arrays of sixteen
//! words, one word per block ("lane"), which the compiler turns into SIMD instructions.
//! It is compiled twice: for SSE2, part of every x86-64 CPU, and for AVX2 (eight lanes
//! to a register instead of four), which [`compress`] takes where the CPU has it, after
//! asking (the crate's one `unsafe` block). On that 2 GHz Xeon, a block takes 73–82 ns
//! in the AVX2 copy, 187–254 ns in the SSE2 one and 447–466 ns in `sha2` (three
//! alternating runs of each; BENCHMARKS.md, "Stop 21").
//! Where the CPU has SHA instructions, `sha2` uses them, and is assumed to beat the
//! lanes there: neither copy of the lanes has been measured on such a CPU. So the lanes
//! are used only where it has none ([`worthwhile`], asked at run time).
//!
//! Only arithmetic on values: no secret-dependent branch or memory access, as in any
//! SHA-256. Tests check both copies against `sha2`'s on random blocks and states.

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

/// Whether SHA-256 is computed faster in lanes than one message at a time by `sha2`
/// on this CPU: on x86-64 without SHA instructions. (Elsewhere the lanes have not been
/// measured, so `sha2` computes them.)
pub(crate) fn worthwhile() -> bool {
    #[cfg(test)]
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    #[cfg(target_arch = "x86_64")]
    {
        !std::is_x86_feature_detected!("sha")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

/// Compresses, in each lane `l`, the state of lane `l` with the block of lane `l`
/// (FIPS 180-4, 6.2.2, steps 1 to 4): in AVX2 registers where the CPU has them, in
/// SSE2 ones elsewhere (the same code, compiled twice).
#[allow(
    unsafe_code,
    reason = "the crate's one unsafe block: calling the AVX2 copy of `compress_any` after \
              asking the CPU whether it has AVX2"
)]
pub(crate) fn compress(state: &mut [Lanes; 8], block: &[Lanes; 16]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: `compress_avx2`'s only requirement is that the CPU running it has
        // AVX2 (a `#[target_feature]` function may use the feature's instructions
        // anywhere), and `wide` has just asked the CPU, as the standard library's
        // `is_x86_feature_detected!` does (the OS's support for the registers included).
        unsafe { compress_avx2(state, block) };
        return;
    }
    compress_any(state, block);
}

/// Whether [`compress`] runs in AVX2 registers on this CPU.
#[cfg(any(test, target_arch = "x86_64"))]
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`compress_any`], compiled for CPUs with AVX2: eight lanes to a register instead
/// of four: 73–82 ns a block against the SSE2 copy's 187–254 ns on this project's 2 GHz
/// Xeon (BENCHMARKS.md, "Stop 21"). Only for a CPU with AVX2: see [`compress`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(state: &mut [Lanes; 8], block: &[Lanes; 16]) {
    compress_any(state, block);
}

/// SHA-256's compression in lanes, in plain Rust: inlined into [`compress_avx2`] and
/// [`compress`], and compiled for the instructions each may use.
#[inline(always)]
fn compress_any(state: &mut [Lanes; 8], block: &[Lanes; 16]) {
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

/// The SHA-256 digest of each message, in order: sixteen at a time in lanes where that
/// is faster ([`worthwhile`]), one by one through `sha2` elsewhere.
pub(crate) fn sha256_each(messages: &[&[u8]]) -> Vec<[u8; 32]> {
    sha256_each_in(messages, worthwhile())
}

/// [`sha256_each`], in lanes if `in_lanes` (but for a last group of fewer than [`FEW`]
/// messages).
pub(crate) fn sha256_each_in(messages: &[&[u8]], in_lanes: bool) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(messages.len());
    for group in messages.chunks(LANES) {
        if in_lanes && group.len() >= FEW {
            sha256_lanes(group, &mut out);
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
/// [`compress`] leaves its own schedule on the stack.
fn sha256_lanes(group: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    let blocks_of = |m: &[u8]| (m.len() + 9).div_ceil(BLOCK);
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
        compress(&mut state, &words);
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

/// Block `b` of `message` padded as SHA-256 pads it (the 0x80 byte after the message,
/// zeros, and the length in bits in the last 8 bytes of the last block), written to
/// `block`; zeros past the padded message.
fn padded_block(message: &[u8], b: usize, block: &mut [u8; BLOCK]) {
    let start = b.saturating_mul(BLOCK);
    let last = (message.len() + 9).div_ceil(BLOCK).saturating_sub(1);
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

    proptest::proptest! {
        /// Every lane gives `sha2`'s compression of its own state and block.
        #[test]
        fn each_lane_equals_sha2(words in proptest::collection::vec(proptest::num::u32::ANY, 24 * LANES)) {
            let (states, blocks) = words.split_at(8 * LANES);
            let mut state: [Lanes; 8] = std::array::from_fn(|i| std::array::from_fn(|l| states[l * 8 + i]));
            let block: [Lanes; 16] = std::array::from_fn(|i| std::array::from_fn(|l| blocks[l * 16 + i]));
            let before = state;
            compress(&mut state, &block);
            // The SSE2 copy too, on a CPU whose `compress` takes the AVX2 one.
            let mut narrow = before;
            compress_any(&mut narrow, &block);
            for l in 0..LANES {
                let s: [u32; 8] = std::array::from_fn(|i| before[i][l]);
                let b: [u32; 16] = std::array::from_fn(|i| block[i][l]);
                let got: [u32; 8] = std::array::from_fn(|i| state[i][l]);
                let got_narrow: [u32; 8] = std::array::from_fn(|i| narrow[i][l]);
                proptest::prop_assert_eq!(got, sha2_compress(&s, &b), "lane {} (AVX2: {})", l, wide());
                proptest::prop_assert_eq!(got_narrow, sha2_compress(&s, &b), "lane {} in SSE2", l);
            }
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
        }
    }

    #[test]
    fn every_length_around_the_block_edges() {
        let long: Vec<u8> = (0..=600u32).map(|i| (i * 7) as u8).collect();
        let refs: Vec<&[u8]> = (0..=600).map(|n| &long[..n]).collect();
        let expect: Vec<[u8; 32]> = refs.iter().map(|m| Sha256::digest(m).into()).collect();
        assert_eq!(sha256_each_in(&refs, true), expect);
        // One group of very different lengths: lanes that end early keep their state.
        let mixed: Vec<&[u8]> = [0, 600, 55, 56, 64, 1, 119, 120, 240, 300]
            .iter()
            .map(|n| &long[..*n])
            .collect();
        let expect: Vec<[u8; 32]> = mixed.iter().map(|m| Sha256::digest(m).into()).collect();
        assert_eq!(sha256_each_in(&mixed, true), expect);
    }

    #[test]
    fn the_empty_message_in_every_lane() {
        // SHA-256("") = e3b0c442 98fc1c14 ...: one padded block from the initial value.
        let mut state: [Lanes; 8] = IV.map(|w| [w; LANES]);
        let mut block = [[0u32; LANES]; 16];
        block[0] = [0x8000_0000; LANES];
        compress(&mut state, &block);
        assert_eq!(state[0], [0xe3b0_c442; LANES]);
        assert_eq!(state[1], [0x98fc_1c14; LANES]);
    }
}
