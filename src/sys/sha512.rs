//! The SHA-512 block function (FIPS 180-4 §6.4.2) in x86-64 assembly for
//! CPUs with AVX2 and BMI2, written here after the technique of Intel's
//! "Fast SHA-512 Implementations on Intel Architecture Processors": ring's
//! generic x86-64 SHA-512 runs ~590 MB/s on the AMD EPYC build machine,
//! OpenSSL's AVX2 code 800+, and the image hash is a SHA-512 deploy's
//! serial bottleneck. Only whole 128-byte blocks pass through here; the
//! streaming (partial blocks, padding, SHA-384's IV and truncation) is
//! safe Rust in `util::sha512`.
//!
//! How it works, two blocks A and B at a time:
//! * the message schedule runs in AVX2 vectors, one block per 128-bit
//!   lane, two 64-bit words per lane: ymm0..7 hold W[t-16..t-1] of both
//!   blocks (the lanes' word order makes `vpalignr` and `vpshufb` work per
//!   lane, with no cross-lane shuffles), and W[t]+K[t] of both goes to a
//!   1280-byte stack buffer: pair j (words 2j, 2j+1) at 32·j, A's two
//!   words first, then B's;
//! * the rounds are scalar: Σ0/Σ1 with BMI2 `rorx` (a rotate that leaves
//!   its source alone), Ch as (e∧f) + (¬e∧g) with `andn` (the two terms
//!   never share a bit, so `+` is `⊕` and folds into T1's sum), Maj as
//!   ((a⊕b)∧(b⊕c))⊕b, where b⊕c is the previous round's a⊕b, kept in a
//!   register (r13 and r15 swap that role every round);
//! * the eight working variables are never moved: each round names them
//!   one register further on (the `rounds8!` macro), so after 8 rounds the
//!   names are back where they started and a loop can go around;
//! * block A's rounds 0..63 run in a loop of 8 rounds that also computes
//!   the schedule of the following 8 words of both blocks (4 vector
//!   steps, into ymm0..3; ymm0..3 and ymm4..7 then trade places, 12
//!   register moves), so the vector units work while the scalar ones do;
//!   A's last 16 rounds and all of B's 80 only read the buffer (another
//!   loop of 8).
//!
//! Size against speed, measured on the 2-vCPU AMD EPYC (Zen 4) build
//! machine, best of 5 × 1 GiB, several alternating runs: this code is
//! 2,790 bytes and runs 829-842 MB/s; a 16-round schedule loop (no moves)
//! was 4,013 bytes and 840-854 MB/s (~1.7 % faster); computing the whole
//! schedule before the rounds instead of beside them 703-726 MB/s. OpenSSL
//! 3.0's AVX2 code: ~838 MB/s. Fully unrolled 80 rounds was not tried.

/// FIPS 180-4 §4.2.3: the first 64 bits of the fractional parts of the
/// cube roots of the first 80 primes.
#[cfg(any(target_arch = "x86_64", test))]
#[rustfmt::skip]
pub(crate) static K: [u64; 80] = [
    0x428a_2f98_d728_ae22, 0x7137_4491_23ef_65cd, 0xb5c0_fbcf_ec4d_3b2f, 0xe9b5_dba5_8189_dbbc,
    0x3956_c25b_f348_b538, 0x59f1_11f1_b605_d019, 0x923f_82a4_af19_4f9b, 0xab1c_5ed5_da6d_8118,
    0xd807_aa98_a303_0242, 0x1283_5b01_4570_6fbe, 0x2431_85be_4ee4_b28c, 0x550c_7dc3_d5ff_b4e2,
    0x72be_5d74_f27b_896f, 0x80de_b1fe_3b16_96b1, 0x9bdc_06a7_25c7_1235, 0xc19b_f174_cf69_2694,
    0xe49b_69c1_9ef1_4ad2, 0xefbe_4786_384f_25e3, 0x0fc1_9dc6_8b8c_d5b5, 0x240c_a1cc_77ac_9c65,
    0x2de9_2c6f_592b_0275, 0x4a74_84aa_6ea6_e483, 0x5cb0_a9dc_bd41_fbd4, 0x76f9_88da_8311_53b5,
    0x983e_5152_ee66_dfab, 0xa831_c66d_2db4_3210, 0xb003_27c8_98fb_213f, 0xbf59_7fc7_beef_0ee4,
    0xc6e0_0bf3_3da8_8fc2, 0xd5a7_9147_930a_a725, 0x06ca_6351_e003_826f, 0x1429_2967_0a0e_6e70,
    0x27b7_0a85_46d2_2ffc, 0x2e1b_2138_5c26_c926, 0x4d2c_6dfc_5ac4_2aed, 0x5338_0d13_9d95_b3df,
    0x650a_7354_8baf_63de, 0x766a_0abb_3c77_b2a8, 0x81c2_c92e_47ed_aee6, 0x9272_2c85_1482_353b,
    0xa2bf_e8a1_4cf1_0364, 0xa81a_664b_bc42_3001, 0xc24b_8b70_d0f8_9791, 0xc76c_51a3_0654_be30,
    0xd192_e819_d6ef_5218, 0xd699_0624_5565_a910, 0xf40e_3585_5771_202a, 0x106a_a070_32bb_d1b8,
    0x19a4_c116_b8d2_d0c8, 0x1e37_6c08_5141_ab53, 0x2748_774c_df8e_eb99, 0x34b0_bcb5_e19b_48a8,
    0x391c_0cb3_c5c9_5a63, 0x4ed8_aa4a_e341_8acb, 0x5b9c_ca4f_7763_e373, 0x682e_6ff3_d6b2_b8a3,
    0x748f_82ee_5def_b2fc, 0x78a5_636f_4317_2f60, 0x84c8_7814_a1f0_ab72, 0x8cc7_0208_1a64_39ec,
    0x90be_fffa_2363_1e28, 0xa450_6ceb_de82_bde9, 0xbef9_a3f7_b2c6_7915, 0xc671_78f2_e372_532b,
    0xca27_3ece_ea26_619c, 0xd186_b8c7_21c0_c207, 0xeada_7dd6_cde0_eb1e, 0xf57d_4f7f_ee6e_d178,
    0x06f0_67aa_7217_6fba, 0x0a63_7dc5_a2c8_98a6, 0x113f_9804_bef9_0dae, 0x1b71_0b35_131c_471b,
    0x28db_77f5_2304_7d84, 0x32ca_ab7b_40c7_2493, 0x3c9e_be0a_15c9_bebc, 0x431d_67c4_9c10_0d4c,
    0x4cc5_d4be_cb3e_42b6, 0x597f_299c_fc65_7e2a, 0x5fcb_6fab_3ad6_faec, 0x6c44_198c_4a47_5817,
];

/// A block function: `state` advanced over `blocks`, whose length is a
/// multiple of 128 (it panics otherwise).
pub type BlocksFn = fn(&mut [u64; 8], &[u8]);

/// The AVX2+BMI2 block function when this CPU has them (and BMI1, for
/// `andn`; std
/// caches the CPUID answer, and checks that the kernel saves the YMM
/// registers), else `None`: the caller keeps ring's. (A hand-written
/// CPUID/XGETBV check instead of std's detector saved only 352 bytes of
/// the static binary, so std's it is.)
pub fn blocks_fn() -> Option<BlocksFn> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
    {
        return Some(x86::blocks);
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::K;
    use std::arch::asm;

    /// `vpshufb` masks, per 128-bit lane: each 64-bit word's bytes reversed
    /// (the message is big-endian), then each word rotated right by 8 bits
    /// (σ0's ROTR 8).
    static MASKS: [u8; 32] = [
        7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, //
        1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15, 8,
    ];

    // Stack frame above the 64-byte aligned rsp: the W+K buffer, then
    // the arguments and the caller's rsp.
    macro_rules! frame {
        (wk_end) => {
            "1280"
        };
        (ctx) => {
            "1280"
        };
        (next) => {
            "1288"
        };
        (end) => {
            "1296"
        };
        (k) => {
            "1304"
        };
        (rsp) => {
            "1312"
        };
        (has_b) => {
            "1320"
        };
    }

    /// One round (FIPS 180-4 §6.4.2 step 3). `$y` holds b⊕c on entry and
    /// Maj on the way; `$x` is free on entry and leaves holding a⊕b, the
    /// next round's b⊕c. r12 and r14 are scratch. `$wk` addresses
    /// W[t]+K[t].
    macro_rules! round {
        ($a:literal, $b:literal, $c:literal, $d:literal, $e:literal, $f:literal, $g:literal,
         $h:literal, $y:literal, $x:literal, $wk:expr) => {
            concat!(
                "add ",
                $h,
                ", qword ptr ",
                $wk,
                "\n",
                "rorx r12, ",
                $e,
                ", 41\n",
                "rorx r14, ",
                $e,
                ", 18\n",
                "andn ",
                $x,
                ", ",
                $e,
                ", ",
                $g,
                "\n",
                "xor r12, r14\n",
                "rorx r14, ",
                $e,
                ", 14\n",
                "add ",
                $h,
                ", ",
                $x,
                "\n",
                "xor r12, r14\n",
                "mov r14, ",
                $f,
                "\n",
                "and r14, ",
                $e,
                "\n",
                "add ",
                $h,
                ", r14\n",
                "add ",
                $h,
                ", r12\n",
                "rorx r12, ",
                $a,
                ", 39\n",
                "rorx r14, ",
                $a,
                ", 34\n",
                "mov ",
                $x,
                ", ",
                $a,
                "\n",
                "xor r12, r14\n",
                "rorx r14, ",
                $a,
                ", 28\n",
                "xor ",
                $x,
                ", ",
                $b,
                "\n",
                "xor r12, r14\n",
                "and ",
                $y,
                ", ",
                $x,
                "\n",
                "add ",
                $d,
                ", ",
                $h,
                "\n",
                "xor ",
                $y,
                ", ",
                $b,
                "\n",
                "add ",
                $h,
                ", r12\n",
                "add ",
                $h,
                ", ",
                $y,
                "\n",
            )
        };
    }

    /// Round `$i` (0..7) of a group of 8 whose W+K pairs start at `$base`
    /// (a string like "rsi + 128"): the register names rotate by one per
    /// round, r15/r13 swap the b⊕c role.
    macro_rules! r {
        (0, $base:literal) => {
            round!(
                "rax",
                "rbx",
                "rcx",
                "rdx",
                "r8",
                "r9",
                "r10",
                "r11",
                "r15",
                "r13",
                concat!("[", $base, " + 0]")
            )
        };
        (1, $base:literal) => {
            round!(
                "r11",
                "rax",
                "rbx",
                "rcx",
                "rdx",
                "r8",
                "r9",
                "r10",
                "r13",
                "r15",
                concat!("[", $base, " + 8]")
            )
        };
        (2, $base:literal) => {
            round!(
                "r10",
                "r11",
                "rax",
                "rbx",
                "rcx",
                "rdx",
                "r8",
                "r9",
                "r15",
                "r13",
                concat!("[", $base, " + 32]")
            )
        };
        (3, $base:literal) => {
            round!(
                "r9",
                "r10",
                "r11",
                "rax",
                "rbx",
                "rcx",
                "rdx",
                "r8",
                "r13",
                "r15",
                concat!("[", $base, " + 40]")
            )
        };
        (4, $base:literal) => {
            round!(
                "r8",
                "r9",
                "r10",
                "r11",
                "rax",
                "rbx",
                "rcx",
                "rdx",
                "r15",
                "r13",
                concat!("[", $base, " + 64]")
            )
        };
        (5, $base:literal) => {
            round!(
                "rdx",
                "r8",
                "r9",
                "r10",
                "r11",
                "rax",
                "rbx",
                "rcx",
                "r13",
                "r15",
                concat!("[", $base, " + 72]")
            )
        };
        (6, $base:literal) => {
            round!(
                "rcx",
                "rdx",
                "r8",
                "r9",
                "r10",
                "r11",
                "rax",
                "rbx",
                "r15",
                "r13",
                concat!("[", $base, " + 96]")
            )
        };
        (7, $base:literal) => {
            round!(
                "rbx",
                "rcx",
                "rdx",
                "r8",
                "r9",
                "r10",
                "r11",
                "rax",
                "r13",
                "r15",
                concat!("[", $base, " + 104]")
            )
        };
    }

    /// One schedule step (FIPS 180-4 §6.4.2 step 1) for both blocks: the
    /// pair W[t], W[t+1] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
    /// replaces W[t-16], W[t-15] in `$w0`; `$w1`, `$w4`, `$w5`, `$w7` hold
    /// W[t-14..t-13], W[t-8..t-7], W[t-6..t-5], W[t-2..t-1]. Then
    /// W+K goes to the buffer at `$st`, K's pair being at `$k`. ymm9 is
    /// the ROTR 8 mask; ymm10..12 are scratch.
    macro_rules! step {
        ($w0:literal, $w1:literal, $w4:literal, $w5:literal, $w7:literal, $k:literal,
         $st:literal) => {
            concat!(
                "vpalignr ymm10, ",
                $w1,
                ", ",
                $w0,
                ", 8\n",
                "vpalignr ymm11, ",
                $w5,
                ", ",
                $w4,
                ", 8\n",
                "vpaddq ",
                $w0,
                ", ",
                $w0,
                ", ymm11\n",
                "vpsrlq ymm11, ymm10, 1\n",
                "vpsllq ymm12, ymm10, 63\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpsrlq ymm12, ymm10, 7\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpshufb ymm12, ymm10, ymm9\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpaddq ",
                $w0,
                ", ",
                $w0,
                ", ymm11\n",
                "vpsrlq ymm11, ",
                $w7,
                ", 19\n",
                "vpsllq ymm12, ",
                $w7,
                ", 45\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpsrlq ymm12, ",
                $w7,
                ", 61\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpsllq ymm12, ",
                $w7,
                ", 3\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpsrlq ymm12, ",
                $w7,
                ", 6\n",
                "vpxor ymm11, ymm11, ymm12\n",
                "vpaddq ",
                $w0,
                ", ",
                $w0,
                ", ymm11\n",
                "vbroadcasti128 ymm11, xmmword ptr [",
                $k,
                "]\n",
                "vpaddq ymm11, ymm11, ",
                $w0,
                "\n",
                "vmovdqa ymmword ptr [",
                $st,
                "], ymm11\n",
            )
        };
    }

    /// Load message pair `$i` (bytes 16i..16i+16) of A (r12) and B (r13)
    /// into `$w` (big-endian words, ymm8 the byte-swap mask), and store
    /// its W+K (K at rdi).
    macro_rules! load {
        ($i:literal, $w:literal, $x:literal) => {
            concat!(
                "vmovdqu ",
                $x,
                ", xmmword ptr [r12 + 16*",
                $i,
                "]\n",
                "vinserti128 ",
                $w,
                ", ",
                $w,
                ", xmmword ptr [r13 + 16*",
                $i,
                "], 1\n",
                "vpshufb ",
                $w,
                ", ",
                $w,
                ", ymm8\n",
                "vbroadcasti128 ymm10, xmmword ptr [rdi + 16*",
                $i,
                "]\n",
                "vpaddq ymm10, ymm10, ",
                $w,
                "\n",
                "vmovdqa ymmword ptr [rsp + 32*",
                $i,
                "], ymm10\n",
            )
        };
    }

    /// Add the working variables into the state at `[r14]` and keep the
    /// sums (the next block's start) in the registers.
    macro_rules! add_state {
        () => {
            concat!(
                "mov r14, qword ptr [rsp + ",
                frame!(ctx),
                "]\n",
                "add rax, qword ptr [r14]\n",
                "add rbx, qword ptr [r14 + 8]\n",
                "add rcx, qword ptr [r14 + 16]\n",
                "add rdx, qword ptr [r14 + 24]\n",
                "add r8, qword ptr [r14 + 32]\n",
                "add r9, qword ptr [r14 + 40]\n",
                "add r10, qword ptr [r14 + 48]\n",
                "add r11, qword ptr [r14 + 56]\n",
                "mov qword ptr [r14], rax\n",
                "mov qword ptr [r14 + 8], rbx\n",
                "mov qword ptr [r14 + 16], rcx\n",
                "mov qword ptr [r14 + 24], rdx\n",
                "mov qword ptr [r14 + 32], r8\n",
                "mov qword ptr [r14 + 40], r9\n",
                "mov qword ptr [r14 + 48], r10\n",
                "mov qword ptr [r14 + 56], r11\n",
            )
        };
    }

    /// `state` advanced over `blocks` (a multiple of 128 bytes). Only
    /// reachable through [`super::blocks_fn`], after the CPU was seen to
    /// have AVX2 and BMI2.
    pub(super) fn blocks(state: &mut [u64; 8], blocks: &[u8]) {
        assert!(
            blocks.len() % 128 == 0,
            "SHA-512 takes whole 128-byte blocks"
        );
        let n = blocks.len() / 128;
        if n == 0 {
            return;
        }
        // SAFETY: the assembly reads the 64 bytes of `state` and writes them
        // back, reads the n·128 bytes of `blocks` (n ≥ 1) and the 640 bytes of
        // `K` and 32 of `MASKS`, and writes only its own stack frame
        // (rbx and rbp pushed, then 1,344 bytes more, rounded down to 64-byte
        // alignment: at most 1,423 bytes below the caller's rsp, restored at
        // the end). No `nostack`, so the compiler keeps nothing below rsp.
        // Every other register it touches is an input it consumes or
        // declared clobbered. It executes AVX2, BMI1 and BMI2 instructions:
        // `blocks_fn` hands out this function only when the CPU reports all
        // three.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "mov rbp, rsp",
                "sub rsp, 1344",
                "and rsp, -64",
                concat!("mov qword ptr [rsp + ", frame!(rsp), "], rbp"),
                concat!("mov qword ptr [rsp + ", frame!(ctx), "], rdi"),
                concat!("mov qword ptr [rsp + ", frame!(next), "], rsi"),
                "shl rdx, 7",
                "add rdx, rsi",
                concat!("mov qword ptr [rsp + ", frame!(end), "], rdx"),
                concat!("mov qword ptr [rsp + ", frame!(k), "], rcx"),
                "vbroadcasti128 ymm8, xmmword ptr [r8]",
                "vbroadcasti128 ymm9, xmmword ptr [r8 + 16]",
                "mov rax, qword ptr [rdi]",
                "mov rbx, qword ptr [rdi + 8]",
                "mov rcx, qword ptr [rdi + 16]",
                "mov rdx, qword ptr [rdi + 24]",
                "mov r8, qword ptr [rdi + 32]",
                "mov r9, qword ptr [rdi + 40]",
                "mov r10, qword ptr [rdi + 48]",
                "mov r11, qword ptr [rdi + 56]",
                // Next pair of blocks: A at r12, B at r13 (= A, its rounds
                // skipped, when only one block is left).
                "2:",
                concat!("mov r12, qword ptr [rsp + ", frame!(next), "]"),
                "lea r13, [r12 + 128]",
                "lea r14, [r12 + 256]",
                concat!("mov r15, qword ptr [rsp + ", frame!(end), "]"),
                "cmp r14, r15",
                "cmova r13, r12",
                "cmova r14, r15",
                concat!("mov qword ptr [rsp + ", frame!(next), "], r14"),
                "mov r14, r13",
                "sub r14, r12",
                concat!("mov qword ptr [rsp + ", frame!(has_b), "], r14"),
                concat!("mov rdi, qword ptr [rsp + ", frame!(k), "]"),
                load!("0", "ymm0", "xmm0"),
                load!("1", "ymm1", "xmm1"),
                load!("2", "ymm2", "xmm2"),
                load!("3", "ymm3", "xmm3"),
                load!("4", "ymm4", "xmm4"),
                load!("5", "ymm5", "xmm5"),
                load!("6", "ymm6", "xmm6"),
                load!("7", "ymm7", "xmm7"),
                "add rdi, 128",
                "mov rsi, rsp",
                "mov ebp, 8",
                "mov r15, rbx",
                "xor r15, rcx",
                // A's rounds 0..63, 8 a time, with the schedule of words
                // 16..79 of both blocks, 8 a time (the two halves of the
                // vector window swap places at the end of each pass).
                "3:",
                r!(0, "rsi"),
                step!("ymm0", "ymm1", "ymm4", "ymm5", "ymm7", "rdi", "rsi + 256"),
                r!(1, "rsi"),
                r!(2, "rsi"),
                step!("ymm1", "ymm2", "ymm5", "ymm6", "ymm0", "rdi + 16", "rsi + 288"),
                r!(3, "rsi"),
                r!(4, "rsi"),
                step!("ymm2", "ymm3", "ymm6", "ymm7", "ymm1", "rdi + 32", "rsi + 320"),
                r!(5, "rsi"),
                r!(6, "rsi"),
                step!("ymm3", "ymm4", "ymm7", "ymm0", "ymm2", "rdi + 48", "rsi + 352"),
                r!(7, "rsi"),
                "vmovdqa ymm10, ymm0",
                "vmovdqa ymm0, ymm4",
                "vmovdqa ymm4, ymm10",
                "vmovdqa ymm10, ymm1",
                "vmovdqa ymm1, ymm5",
                "vmovdqa ymm5, ymm10",
                "vmovdqa ymm10, ymm2",
                "vmovdqa ymm2, ymm6",
                "vmovdqa ymm6, ymm10",
                "vmovdqa ymm10, ymm3",
                "vmovdqa ymm3, ymm7",
                "vmovdqa ymm7, ymm10",
                "add rsi, 128",
                "add rdi, 64",
                "dec ebp",
                "jnz 3b",
                "mov ebp, 2",
                "4:",
                r!(0, "rsi"),
                r!(1, "rsi"),
                r!(2, "rsi"),
                r!(3, "rsi"),
                r!(4, "rsi"),
                r!(5, "rsi"),
                r!(6, "rsi"),
                r!(7, "rsi"),
                "add rsi, 128",
                "dec ebp",
                "jnz 4b",
                add_state!(),
                // rsi is at the buffer's end after A, 16 bytes past it
                // after B.
                concat!("lea r14, [rsp + ", frame!(wk_end), "]"),
                "cmp rsi, r14",
                "jne 5f",
                concat!("cmp qword ptr [rsp + ", frame!(has_b), "], 0"),
                "je 5f",
                "lea rsi, [rsp + 16]",
                "mov ebp, 10",
                "mov r15, rbx",
                "xor r15, rcx",
                "jmp 4b",
                "5:",
                concat!("mov r14, qword ptr [rsp + ", frame!(next), "]"),
                concat!("cmp r14, qword ptr [rsp + ", frame!(end), "]"),
                "jb 2b",
                "vzeroupper",
                concat!("mov rsp, qword ptr [rsp + ", frame!(rsp), "]"),
                "pop rbx",
                "pop rbp",
                inout("rdi") state.as_mut_ptr() => _,
                inout("rsi") blocks.as_ptr() => _,
                inout("rdx") n => _,
                inout("rcx") K.as_ptr() => _,
                inout("r8") MASKS.as_ptr() => _,
                out("r12") _,
                out("r13") _,
                out("r14") _,
                out("r15") _,
                clobber_abi("C"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-4 §6.4.2 as written, one block at a time.
    fn reference(state: &mut [u64; 8], blocks: &[u8]) {
        for block in blocks.chunks_exact(128) {
            let mut w = [0u64; 80];
            for (t, word) in block.chunks_exact(8).enumerate() {
                w[t] = u64::from_be_bytes(word.try_into().unwrap());
            }
            for t in 16..80 {
                let s0 = w[t - 15].rotate_right(1) ^ w[t - 15].rotate_right(8) ^ (w[t - 15] >> 7);
                let s1 = w[t - 2].rotate_right(19) ^ w[t - 2].rotate_right(61) ^ (w[t - 2] >> 6);
                w[t] = s1
                    .wrapping_add(w[t - 7])
                    .wrapping_add(s0)
                    .wrapping_add(w[t - 16]);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
            for t in 0..80 {
                let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
                let ch = (e & f) ^ (!e & g);
                let t1 = h
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(K[t])
                    .wrapping_add(w[t]);
                let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                (h, g, f, e, d, c, b, a) =
                    (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
            }
            for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = s.wrapping_add(v);
            }
        }
    }

    #[test]
    fn reference_is_fips() {
        // FIPS 180-4's "abc" example: one padded block from the SHA-512 IV
        let mut block = [0u8; 128];
        block[..3].copy_from_slice(b"abc");
        block[3] = 0x80;
        block[127] = 24;
        let mut s = [
            0x6a09_e667_f3bc_c908,
            0xbb67_ae85_84ca_a73b,
            0x3c6e_f372_fe94_f82b,
            0xa54f_f53a_5f1d_36f1,
            0x510e_527f_ade6_82d1,
            0x9b05_688c_2b3e_6c1f,
            0x1f83_d9ab_fb41_bd6b,
            0x5be0_cd19_137e_2179,
        ];
        reference(&mut s, &block);
        let digest: Vec<u8> = s.iter().flat_map(|w| w.to_be_bytes()).collect();
        let want = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                    2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
    }

    #[test]
    fn asm_matches_reference() {
        let Some(f) = blocks_fn() else {
            eprintln!("skipped: this CPU lacks AVX2 or BMI2 (or is not x86-64)");
            return;
        };
        let mut rng = fastrand::Rng::with_seed(512);
        for n in 0..=9 {
            for _ in 0..40 {
                let data: Vec<u8> = (0..n * 128).map(|_| rng.u8(..)).collect();
                let init: [u64; 8] = std::array::from_fn(|_| rng.u64(..));
                let (mut want, mut got) = (init, init);
                reference(&mut want, &data);
                f(&mut got, &data);
                assert_eq!(got, want, "{n} blocks");
            }
        }
        // unaligned input, and a long run
        let data: Vec<u8> = (0..1001 * 128 + 1).map(|_| rng.u8(..)).collect();
        let (mut want, mut got) = ([7u64; 8], [7u64; 8]);
        reference(&mut want, &data[1..]);
        f(&mut got, &data[1..]);
        assert_eq!(got, want);
    }
}
