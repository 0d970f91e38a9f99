//! Small self-contained helpers: base64 (configdrives, log bundles, basic
//! auth), SHA-256 crypt (rescue passwords), random strings.

pub mod bytes;
pub mod chan;
pub mod guid;
pub mod gzip;
pub mod regex;
// the block function under it is x86-64 assembly; elsewhere ring hashes
#[cfg(target_arch = "x86_64")]
pub mod sha512;
pub mod specs;

use sha2::{Digest, Sha256};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Feed `data` to a CRC-32 register (IEEE 802.3, reflected, poly
/// 0xEDB88320: the GPT's and gzip's); start from `!0`, finish with `!`.
/// Hand-written rather than a new dependency: 20 lines, tested against the
/// standard check value.
pub fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// The UTC calendar time of a Unix timestamp: (year, month, day, hour,
/// minute, second), by Howard Hinnant's days-to-civil algorithm (the log's
/// timestamps, the auto-TLS certificate's validity).
pub fn civil_utc(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = rem as u32;
    (
        year,
        month as u32,
        day as u32,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
    )
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut w = Base64Writer::with_capacity(data.len().div_ceil(3) * 4);
    w.push(data);
    w.finish()
}

/// Base64 text built as bytes arrive (a log bundle straight out of its
/// gzip encoder, never whole in memory as bytes and as text at once).
#[derive(Default)]
pub struct Base64Writer {
    text: String,
    rest: [u8; 3],
    n: usize,
}

impl Base64Writer {
    pub fn with_capacity(n: usize) -> Base64Writer {
        Base64Writer {
            text: String::with_capacity(n),
            ..Default::default()
        }
    }

    fn group(&mut self, chunk: &[u8]) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                self.text
                    .push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                self.text.push('=');
            }
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        while self.n > 0 && !data.is_empty() {
            self.rest[self.n] = data[0];
            self.n += 1;
            data = &data[1..];
            if self.n == 3 {
                let g = self.rest;
                self.group(&g);
                self.n = 0;
            }
        }
        if self.n > 0 {
            return;
        }
        let whole = data.len() / 3 * 3;
        for chunk in data[..whole].chunks(3) {
            self.group(chunk);
        }
        let tail = &data[whole..];
        self.rest[..tail.len()].copy_from_slice(tail);
        self.n = tail.len();
    }

    /// The text, padded.
    pub fn finish(mut self) -> String {
        if self.n > 0 {
            let g = self.rest;
            self.group(&g[..self.n]);
        }
        self.text
    }
}

impl std::io::Write for Base64Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decode standard or URL-safe base64; whitespace is ignored, padding is
/// optional. `None` on any other character or a dangling bit group.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut d = Base64Decoder::default();
    d.feed(text.as_bytes(), &mut out).ok()?;
    d.finish().then_some(out)
}

/// [`base64_decode`] piece by piece: text in, bytes out, in bounded
/// memory (a configdrive's text is tens of MiB).
#[derive(Clone, Copy, Debug, Default)]
pub struct Base64Decoder {
    acc: u32,
    bits: u32,
    padding: bool,
}

impl Base64Decoder {
    /// Decode `text` onto `out`; `Err(())` on a character base64 does not
    /// allow here (the decoder is then spent).
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        out.reserve(text.len() / 4 * 3 + 3);
        for &c in text {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                b'=' => {
                    self.padding = true;
                    continue;
                }
                b' ' | b'\n' | b'\r' | b'\t' => continue,
                _ => return Err(()),
            };
            if self.padding {
                return Err(()); // data after padding
            }
            self.acc = (self.acc << 6) | u32::from(v);
            self.bits += 6;
            if self.bits >= 8 {
                self.bits -= 8;
                out.push((self.acc >> self.bits) as u8);
                self.acc &= (1 << self.bits) - 1;
            }
        }
        Ok(())
    }

    /// Whether the text ended on a whole byte (no dangling bit group).
    pub fn finish(&self) -> bool {
        self.bits < 6
    }
}

/// Whether `text` is base64 [`base64_decode`] accepts, checked without
/// decoding it anywhere.
pub fn base64_valid(text: &[u8]) -> bool {
    let mut d = Base64Decoder::default();
    let mut out = Vec::with_capacity(48 << 10);
    for piece in text.chunks(64 << 10) {
        out.clear();
        if d.feed(piece, &mut out).is_err() {
            return false;
        }
    }
    d.finish()
}

/// The bytes base64 text decodes to, read in pieces: a `Read` over a text
/// source (a `&[u8]`, an HTTP body). A character base64 does not allow
/// is an `InvalidData` error, and [`Base64Reader::invalid`] says so.
pub struct Base64Reader<R> {
    inner: R,
    d: Base64Decoder,
    buf: Vec<u8>,
    at: usize,
    text: Vec<u8>,
    invalid: bool,
    eof: bool,
}

impl<R: std::io::Read> Base64Reader<R> {
    pub fn new(inner: R) -> Self {
        Base64Reader {
            inner,
            d: Base64Decoder::default(),
            buf: Vec::new(),
            at: 0,
            text: vec![0; 64 << 10],
            invalid: false,
            eof: false,
        }
    }

    /// Whether the text held a character base64 does not allow, or ended
    /// on a dangling bit group.
    pub fn invalid(&self) -> bool {
        self.invalid
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: std::io::Read> std::io::Read for Base64Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid base64");
        while self.at == self.buf.len() {
            if self.invalid {
                return Err(bad());
            }
            if self.eof {
                return Ok(0);
            }
            self.buf.clear();
            self.at = 0;
            let n = match self.inner.read(&mut self.text) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                self.invalid = !self.d.finish();
                continue;
            }
            if self.d.feed(&self.text[..n], &mut self.buf).is_err() {
                self.invalid = true;
                self.buf.clear();
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Strings longer than this are not repeated in a result or a message.
pub const ECHO_MAX: usize = 64 * 1024;

/// `v` with each string longer than [`ECHO_MAX`] replaced by a note of its
/// length: what a command result or an error message repeats of its
/// input (an inline configdrive, a file's contents), which would
/// otherwise keep tens of MiB for as long as the agent runs.
pub fn elided(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() > ECHO_MAX => {
            Value::String(format!("<{} bytes, not echoed>", s.len()))
        }
        Value::Array(a) => Value::Array(a.iter().map(elided).collect()),
        Value::Object(m) => elided_map(m),
        v => v.clone(),
    }
}

/// [`elided`] of an object.
pub fn elided_map(m: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    // collect_map, not collect: a map collected from an iterator is sorted
    // by std's stable sort first, instantiated for this item type alone
    serde_json::Value::Object(collect_map(m.iter().map(|(k, v)| (k.clone(), elided(v)))))
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random salt from crypt's alphabet.
pub fn random_salt(len: usize) -> String {
    let mut b = vec![0u8; len];
    if crate::sys::getrandom(&mut b).is_err() {
        fastrand::fill(&mut b);
    }
    b.iter()
        .map(|x| CRYPT64[(*x & 63) as usize] as char)
        .collect()
}

/// SHA-256 crypt (`$5$`, Ulrich Drepper's specification, 5000 rounds): what
/// IPA's `crypt_mksalt('SHA-256')` produces for an unhashed rescue password.
pub fn sha256_crypt(password: &[u8], salt: &str) -> String {
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let p = password;
    let b = Sha256::new()
        .chain_update(p)
        .chain_update(salt)
        .chain_update(p)
        .finalize();
    let mut ctx = Sha256::new().chain_update(p).chain_update(salt);
    let mut n = p.len();
    while n > 32 {
        ctx.update(b);
        n -= 32;
    }
    ctx.update(&b[..n]);
    let mut n = p.len();
    while n > 0 {
        if n & 1 == 1 {
            ctx.update(b);
        } else {
            ctx.update(p);
        }
        n >>= 1;
    }
    let a = ctx.finalize();
    let mut dp = Sha256::new();
    for _ in 0..p.len() {
        dp.update(p);
    }
    let dp = dp.finalize();
    let p_seq: Vec<u8> = dp.iter().cycle().take(p.len()).copied().collect();
    let mut ds = Sha256::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let ds = ds.finalize();
    let s_seq: Vec<u8> = ds.iter().cycle().take(salt.len()).copied().collect();
    let mut c = a;
    for i in 0..5000 {
        let mut ctx = Sha256::new();
        if i & 1 == 1 {
            ctx.update(&p_seq);
        } else {
            ctx.update(c);
        }
        if i % 3 != 0 {
            ctx.update(&s_seq);
        }
        if i % 7 != 0 {
            ctx.update(&p_seq);
        }
        if i & 1 == 1 {
            ctx.update(c);
        } else {
            ctx.update(&p_seq);
        }
        c = ctx.finalize();
    }
    let mut out = format!("$5${}$", String::from_utf8_lossy(salt));
    let mut put = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..n {
            out.push(CRYPT64[(w & 63) as usize] as char);
            w >>= 6;
        }
    };
    let order = [
        (0, 10, 20),
        (21, 1, 11),
        (12, 22, 2),
        (3, 13, 23),
        (24, 4, 14),
        (15, 25, 5),
        (6, 16, 26),
        (27, 7, 17),
        (18, 28, 8),
        (9, 19, 29),
    ];
    for (x, y, z) in order {
        put(c[x], c[y], c[z], 4);
    }
    put(0, c[31], c[30], 3);
    out
}

/// Stable in-place insertion sort for the agent's short lists (disks, NICs,
/// partitions, step names: at most a few hundred entries). std's driftsort
/// is the better algorithm for long slices but instantiates ~4 KiB of code
/// per element type and comparator; a dozen call sites cost more of the
/// static binary's budget than any of these lists costs in time.
pub fn sort_small_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && cmp(&v[j - 1], &v[j]) == std::cmp::Ordering::Greater {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// [`sort_small_by`] in the natural order.
pub fn sort_small<T: Ord>(v: &mut [T]) {
    sort_small_by(v, T::cmp)
}

/// Sort `v` by `cmp`, not stably, in O(n log n): a heapsort whose loop is
/// one non-generic function driven through a `dyn` closure, so each call
/// site adds ~100 bytes instead of the ~3 KiB of the standard library's
/// `sort_unstable` instantiated per element type and comparator (with
/// [`collect_map`], 15 call sites: -54,080 bytes of the static binary,
/// 2026-12-06). Fast enough for the long lists too (qcow2 tables).
pub fn sort_unstable_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
    heapsort(v.len(), &mut |i, j, swap| {
        if swap {
            v.swap(i, j);
            false
        } else {
            cmp(&v[i], &v[j]) == std::cmp::Ordering::Less
        }
    });
}

/// [`sort_unstable_by`] in the natural order.
pub fn sort_unstable<T: Ord>(v: &mut [T]) {
    sort_unstable_by(v, T::cmp)
}

/// Heapsort of `n` elements through `op(i, j, swap)`: swap elements `i`
/// and `j` when `swap`, else tell whether element `i` < element `j`.
fn heapsort(n: usize, op: &mut dyn FnMut(usize, usize, bool) -> bool) {
    fn sift(mut root: usize, end: usize, op: &mut dyn FnMut(usize, usize, bool) -> bool) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && op(child, child + 1, false) {
                child += 1;
            }
            if !op(root, child, false) {
                return;
            }
            op(root, child, true);
            root = child;
        }
    }
    for i in (0..n / 2).rev() {
        sift(i, n, op);
    }
    for end in (1..n).rev() {
        op(0, end, true);
        sift(0, end, op);
    }
}

/// `iter.collect()` into a map (`BTreeMap`, serde_json's `Map`) by
/// inserting one pair after the other, as `collect` does for duplicates
/// (the last value wins). `collect` sorts the pairs first with the
/// standard library's stable sort, ~4.5 KiB of code per key and value
/// type; insertion uses the `BTreeMap::insert` that is linked anyway.
pub fn collect_map<M: Default + Extend<(K, V)>, K, V>(iter: impl IntoIterator<Item = (K, V)>) -> M {
    let mut m = M::default();
    m.extend(iter);
    m
}

/// Numbers that Ironic may send as strings in older releases.
pub fn as_u64_lenient(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
        }
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A random UUID (version 4) string, for command ids.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    guid::Guid::from_rfc4122(b).to_lower()
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it: a
/// bug in one command must not take the API down with it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decode `%XX` and `+` in a URL component; invalid escapes stay as-is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One log record from `target` (the caller's `module_path!()`, which the
/// log line names), at `level`, made out of line: a call site passes its
/// arguments and this one copy builds the record (what `log!` builds
/// inline at every site). Same target, level, filtering and text.
#[inline(never)]
pub fn log_to(level: log::Level, target: &'static str, args: std::fmt::Arguments<'_>) {
    log::log!(target: target, level, "{args}");
}

/// `log::info!(...)` as `crate::util::log_at!(Info, ...)`, through [`log_to`]:
/// every log line of the library goes through it (-18,688 B over 229 sites,
/// 2026-12-07); main.rs, outside the crate's reach of this macro, keeps
/// `log::`.
macro_rules! log_at {
    ($level:ident, $($arg:tt)+) => {
        $crate::util::log_to(log::Level::$level, module_path!(), format_args!($($arg)+))
    };
}
pub(crate) use log_at;

/// A test's scratch directory, `ironic-agent-<name>-<pid>` under the
/// temporary directory: made empty, and removed when the test ends
/// (passing or not).
#[cfg(test)]
pub struct Scratch(pub std::path::PathBuf);

#[cfg(test)]
impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ironic-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

#[cfg(test)]
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_times() {
        assert_eq!(civil_utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_utc(1_764_057_600), (2025, 11, 25, 8, 0, 0));
        assert_eq!(civil_utc(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(civil_utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_utc(2_524_608_000), (2050, 1, 1, 0, 0, 0));
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uuid(), u);
    }

    #[test]
    fn base64_streams() {
        use std::io::{Read, Write};
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 5) as u8).collect();
        let text = base64_encode(&data);
        for split in [1usize, 2, 3, 4, 5, 64, 999] {
            let mut w = Base64Writer::default();
            for piece in data.chunks(split) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.finish(), text, "split {split}");
            let mut d = Base64Decoder::default();
            let mut out = Vec::new();
            for piece in text.as_bytes().chunks(split) {
                d.feed(piece, &mut out).unwrap();
            }
            assert!(d.finish());
            assert_eq!(out, data);
        }
        let mut r = Base64Reader::new(text.as_bytes());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(!r.invalid());
        assert!(base64_valid(text.as_bytes()));
        for bad in ["Zm9v!", "Z", "Zg==Zg"] {
            assert!(!base64_valid(bad.as_bytes()), "{bad}");
            let mut r = Base64Reader::new(bad.as_bytes());
            assert!(r.read_to_end(&mut Vec::new()).is_err(), "{bad}");
            assert!(r.invalid(), "{bad}");
        }
    }

    #[test]
    fn base64_roundtrip() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
        }
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
    }

    #[test]
    fn sha256_crypt_spec_vectors() {
        // Checked against glibc crypt(3) (Python 3.11 `crypt.crypt`).
        assert_eq!(
            sha256_crypt(b"Hello world!", "saltstring"),
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
        );
    }

    #[test]
    fn salts() {
        let s = random_salt(16);
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|c| CRYPT64.contains(&c)));
    }

    #[test]
    fn heapsort_sorts() {
        let mut seed = 7u64;
        for n in [0usize, 1, 2, 3, 10, 100, 1000] {
            let mut v: Vec<(u64, u32)> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 60, i as u32)
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            sort_unstable(&mut v);
            assert_eq!(v, want);
            sort_unstable_by(&mut v, |a, b| b.cmp(a));
            want.reverse();
            assert_eq!(v, want);
        }
    }

    #[test]
    fn collect_map_keeps_the_last_duplicate() {
        let pairs = [("b", 1), ("a", 2), ("b", 3)];
        let m: std::collections::BTreeMap<&str, i32> = collect_map(pairs);
        assert_eq!(m, pairs.into_iter().collect());
        assert_eq!(m["b"], 3);
    }

    #[test]
    fn sort_small_is_stable_and_sorts() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
        sort_small_by(&mut v, |a, b| a.0.cmp(&b.0));
        assert_eq!(v, [(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
        let mut w: Vec<u32> = (0..300).rev().collect();
        sort_small(&mut w);
        assert!(w.windows(2).all(|p| p[0] < p[1]));
        let mut e: Vec<u8> = vec![];
        sort_small(&mut e);
    }
}
