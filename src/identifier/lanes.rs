//! SHA-256's compression function on sixteen blocks at once, for lookup pseudonyms
//! computed in bulk on CPUs without SHA instructions.
//!
//! Without SHA instructions (the Skylake and Cascade Lake Xeons many clouds still rent,
//! for one), `sha2` compresses one block at a time in scalar code: about 500–700 ns a
//! block on a 2 GHz Xeon, and a lookup pseudonym takes two blocks. SHA-256 has no
//! branches and no table lookups that depend on the data, so sixteen blocks can go
//! through its rounds side by side: the code below is plain Rust over arrays of sixteen
//! words, one word per block ("lane"), which the compiler turns into SIMD instructions
//! (SSE2, part of every x86-64 CPU): about 180–240 ns a block on the same machine.
//! Where the CPU has SHA instructions, `sha2` uses them and beats the lanes, so the
//! lanes are used only where it has none ([`worthwhile`], asked at run time).
//!
//! Only arithmetic on values: no secret-dependent branch or memory access, as in any
//! SHA-256. Tests check the function against `sha2`'s on random blocks and states.

/// Blocks compressed side by side.
pub(super) const LANES: usize = 16;

/// One word of each of [`LANES`] blocks or states.
pub(super) type Lanes = [u32; LANES];

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

/// Whether lookup pseudonyms are computed faster in lanes than one by one by `sha2`
/// on this CPU: on x86-64 without SHA instructions. (Elsewhere the lanes have not been
/// measured, so `sha2` computes them.)
pub(super) fn worthwhile() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !std::is_x86_feature_detected!("sha")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compresses, in each lane `l`, the state of lane `l` with the block of lane `l`
/// (FIPS 180-4, 6.2.2, steps 1 to 4).
pub(super) fn compress(state: &mut [Lanes; 8], block: &[Lanes; 16]) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use sha2::digest::generic_array::GenericArray;

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
            for l in 0..LANES {
                let s: [u32; 8] = std::array::from_fn(|i| before[i][l]);
                let b: [u32; 16] = std::array::from_fn(|i| block[i][l]);
                let got: [u32; 8] = std::array::from_fn(|i| state[i][l]);
                proptest::prop_assert_eq!(got, sha2_compress(&s, &b), "lane {}", l);
            }
        }
    }

    #[test]
    fn the_empty_message_in_every_lane() {
        // SHA-256("") = e3b0c442 98fc1c14 ...: one padded block from the initial value.
        let iv = [
            0x6a09_e667u32,
            0xbb67_ae85,
            0x3c6e_f372,
            0xa54f_f53a,
            0x510e_527f,
            0x9b05_688c,
            0x1f83_d9ab,
            0x5be0_cd19,
        ];
        let mut state: [Lanes; 8] = iv.map(|w| [w; LANES]);
        let mut block = [[0u32; LANES]; 16];
        block[0] = [0x8000_0000; LANES];
        compress(&mut state, &block);
        assert_eq!(state[0], [0xe3b0_c442; LANES]);
        assert_eq!(state[1], [0x98fc_1c14; LANES]);
    }
}
