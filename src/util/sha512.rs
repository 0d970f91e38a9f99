//! SHA-384 and SHA-512 (FIPS 180-4) over the assembly block function in
//! `sys::sha512`: the streaming around it (partial blocks, the padding
//! with the 128-bit message length, big-endian output, SHA-384's initial
//! values and truncation). Only available where that block function is
//! (x86-64 with AVX2, BMI1 and BMI2); elsewhere the image hash keeps ring's.

use crate::sys::sha512::{blocks_fn, BlocksFn};

/// FIPS 180-4 §5.3.5: the first 64 bits of the fractional parts of the
/// square roots of the first 8 primes.
#[rustfmt::skip]
const IV_512: [u64; 8] = [
    0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b, 0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1, 0x9b05_688c_2b3e_6c1f, 0x1f83_d9ab_fb41_bd6b, 0x5be0_cd19_137e_2179,
];

/// FIPS 180-4 §5.3.4: the same for the 9th through 16th primes.
#[rustfmt::skip]
const IV_384: [u64; 8] = [
    0xcbbb_9d5d_c105_9ed8, 0x629a_292a_367c_d507, 0x9159_015a_3070_dd17, 0x152f_ecd8_f70e_5939,
    0x6733_2667_ffc0_0b31, 0x8eb4_4a87_6858_1511, 0xdb0c_2e0d_64f9_8fa7, 0x47b5_481d_befa_4fa4,
];

/// A running SHA-384 or SHA-512. `Clone`: the state survives a resumed
/// download.
#[derive(Clone)]
pub struct Sha512 {
    state: [u64; 8],
    /// Bytes of a block not yet complete: `buf[..buffered]`.
    buf: [u8; 128],
    buffered: usize,
    /// Message length in bytes so far.
    len: u128,
    /// 48 (SHA-384) or 64 (SHA-512).
    out_len: usize,
    blocks: BlocksFn,
}

impl Sha512 {
    /// SHA-512, when this CPU runs the block function.
    pub fn new_sha512() -> Option<Sha512> {
        Self::new(IV_512, 64)
    }

    /// SHA-384, when this CPU runs the block function.
    pub fn new_sha384() -> Option<Sha512> {
        Self::new(IV_384, 48)
    }

    fn new(state: [u64; 8], out_len: usize) -> Option<Sha512> {
        Some(Sha512 {
            state,
            buf: [0; 128],
            buffered: 0,
            len: 0,
            out_len,
            blocks: blocks_fn()?,
        })
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u128;
        if self.buffered > 0 {
            let take = data.len().min(128 - self.buffered);
            self.buf[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < 128 {
                return;
            }
            (self.blocks)(&mut self.state, &self.buf);
            self.buffered = 0;
        }
        let whole = data.len() & !127;
        if whole > 0 {
            (self.blocks)(&mut self.state, &data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// The digest: 48 or 64 bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // FIPS 180-4 §5.1.2: a 1 bit, zeroes, the length in bits as a
        // 128-bit big-endian number, to a whole number of blocks.
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 256];
        let n = self.buffered;
        tail[..n].copy_from_slice(&self.buf[..n]);
        tail[n] = 0x80;
        let total = if n < 112 { 128 } else { 256 };
        tail[total - 16..total].copy_from_slice(&bits.to_be_bytes());
        (self.blocks)(&mut self.state, &tail[..total]);
        let mut out: Vec<u8> = self.state.iter().flat_map(|w| w.to_be_bytes()).collect();
        out.truncate(self.out_len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::digest;

    fn hex(b: &[u8]) -> String {
        crate::util::bytes::hex(b)
    }

    type Case = (fn() -> Option<Sha512>, &'static digest::Algorithm);

    /// Both algorithms, each with ring's equivalent; `None` (and a note)
    /// on a CPU without the block function.
    fn both() -> Option<[Case; 2]> {
        if blocks_fn().is_none() {
            eprintln!("skipped: no AVX2+BMI2 SHA-512 block function on this CPU");
            return None;
        }
        Some([
            (Sha512::new_sha512, &digest::SHA512),
            (Sha512::new_sha384, &digest::SHA384),
        ])
    }

    /// `data` fed in random pieces (0 to 300 bytes, sometimes bigger),
    /// through a clone now and then.
    fn chunked(mut h: Sha512, data: &[u8], rng: &mut fastrand::Rng) -> Vec<u8> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = if rng.u8(..) < 16 {
                rng.usize(..=rest.len())
            } else {
                rng.usize(..=300).min(rest.len())
            };
            h.update(&rest[..n]);
            rest = &rest[n..];
            if rng.u8(..) < 8 {
                h = h.clone();
            }
        }
        h.finish()
    }

    #[test]
    fn every_short_length_matches_ring() {
        let Some(algos) = both() else { return };
        let mut rng = fastrand::Rng::with_seed(384);
        let data: Vec<u8> = (0..1000).map(|_| rng.u8(..)).collect();
        for (new, algo) in algos {
            for len in 0..=1000 {
                let want = digest::digest(algo, &data[..len]);
                let mut one = new().unwrap();
                one.update(&data[..len]);
                assert_eq!(one.finish(), want.as_ref(), "one piece, {len} bytes");
                let got = chunked(new().unwrap(), &data[..len], &mut rng);
                assert_eq!(got, want.as_ref(), "pieces, {len} bytes");
            }
        }
    }

    #[test]
    fn long_random_lengths_match_ring() {
        let Some(algos) = both() else { return };
        let mut rng = fastrand::Rng::with_seed(4096);
        let data: Vec<u8> = (0..3 << 20).map(|_| rng.u8(..)).collect();
        for (new, algo) in algos {
            for _ in 0..6 {
                let len = rng.usize(1000..=data.len());
                let start = rng.usize(..16);
                let d = &data[start..len];
                let got = chunked(new().unwrap(), d, &mut rng);
                assert_eq!(got, digest::digest(algo, d).as_ref(), "{} bytes", d.len());
            }
        }
    }

    #[test]
    fn fips_examples() {
        let Some(_) = both() else { return };
        let long = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        let million = vec![b'a'; 1_000_000];
        for (msg, sha512, sha384) in [
            (
                &b"abc"[..],
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                &long[..],
                "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018\
                 501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
                "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712\
                 fcc7c71a557e2db966c3e9fa91746039",
            ),
            (
                &million[..],
                "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb\
                 de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b",
                "9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b\
                 07b8b3dc38ecc4ebae97ddd87f3d8985",
            ),
        ] {
            let mut h = Sha512::new_sha512().unwrap();
            h.update(msg);
            assert_eq!(hex(&h.finish()), sha512);
            let mut h = Sha512::new_sha384().unwrap();
            h.update(msg);
            assert_eq!(hex(&h.finish()), sha384);
        }
    }

    /// `cargo test --release sha512_speed -- --ignored --nocapture`: 1 GiB
    /// hashed from a 16 MiB buffer, by this module and by ring, 5 rounds
    /// interleaved, then `openssl speed` (if installed) for comparison.
    #[test]
    #[ignore]
    fn sha512_speed() {
        use std::time::Instant;
        let Some(_) = both() else { return };
        let buf: Vec<u8> = (0..16 << 20).map(|i| (i * 7 + 3) as u8).collect();
        let per_pass = 64;
        let mb = (buf.len() * per_pass) as f64 / 1e6;
        let (mut ours, mut rings) = (vec![], vec![]);
        for _ in 0..5 {
            let t = Instant::now();
            let mut h = Sha512::new_sha512().unwrap();
            for _ in 0..per_pass {
                h.update(&buf);
            }
            std::hint::black_box(h.finish());
            ours.push(mb / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut h = digest::Context::new(&digest::SHA512);
            for _ in 0..per_pass {
                h.update(&buf);
            }
            std::hint::black_box(h.finish());
            rings.push(mb / t.elapsed().as_secs_f64());
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!("ours MB/s: {} (best {:.0})", show(&ours), best(&ours));
        println!("ring MB/s: {} (best {:.0})", show(&rings), best(&rings));
        if let Ok(out) = std::process::Command::new("openssl")
            .args([
                "speed", "-evp", "sha512", "-bytes", "16384", "-seconds", "3",
            ])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().find(|l| l.starts_with("sha512")) {
                println!("openssl (kB/s, 16384-byte blocks): {line}");
            }
        }
    }
}
