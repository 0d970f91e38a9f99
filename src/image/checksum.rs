//! Image checksums (protocol §7, IPA's `standby.ImageDownload.__init__`,
//! `_fetch_checksum`, `_get_algorithm_by_length`): which algorithm and
//! which expected digest an `image_info` asks for, checksum files in GNU
//! (`<digest>  [*]<file>`) and BSD/CentOS (`SHA256 (<file>) = <digest>`)
//! form, and the running hash the streaming writer feeds.
//!
//! Resolution order, as IPA's:
//! 1. `os_hash_algo` when this agent knows it → `os_hash_value` (which may
//!    itself be an http(s) URL to a checksum file);
//! 2. `checksum` that is an http(s) URL → fetch it, algorithm by length;
//! 3. `checksum` literal → algorithm by length: 32 = md5 (only while md5
//!    is enabled), 64 = sha256, 128 = sha512.
//!
//! Digests are compared case-insensitively (IPA compares the exact
//! strings, so an upper-case checksum file fails there for no reason).

use super::info::ImageInfo;
use crate::config::Env;
use crate::error::{AgentError, Kind, Result};
#[cfg(target_arch = "x86_64")]
use crate::util::sha512::Sha512;
use md5::Digest;

/// The hash algorithms this agent computes (hashlib names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    /// hashlib's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha224 => "sha224",
            Algo::Sha256 => "sha256",
            Algo::Sha384 => "sha384",
            Algo::Sha512 => "sha512",
        }
    }

    /// `os_hash_algo` → algorithm; `None` for names this agent does not
    /// implement (IPA: not in `hashlib.algorithms_available`).
    pub fn from_name(name: &str) -> Option<Algo> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => Algo::Md5,
            "sha224" => Algo::Sha224,
            "sha256" => Algo::Sha256,
            "sha384" => Algo::Sha384,
            "sha512" => Algo::Sha512,
            _ => return None,
        })
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
            Algo::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha384 | Algo::Sha512 => self.sha2x_or_ring(),
        }
    }
}

impl Algo {
    /// SHA-384 (`self` is Sha384) or SHA-512: the agent's assembly where
    /// the CPU runs it, else ring's.
    fn sha2x_or_ring(self) -> Hasher {
        let sha384 = self == Algo::Sha384;
        #[cfg(target_arch = "x86_64")]
        {
            let own = if sha384 {
                Sha512::new_sha384()
            } else {
                Sha512::new_sha512()
            };
            if let Some(h) = own {
                crate::util::log_at!(Debug, "{}: the agent's AVX2+BMI2 assembly", self.name());
                return Hasher::Sha2x(h);
            }
        }
        Hasher::Ring(ring::digest::Context::new(if sha384 {
            &ring::digest::SHA384
        } else {
            &ring::digest::SHA512
        }))
    }
}

/// IPA's `check_md5_enabled` text.
pub const MD5_DISABLED: &str =
    "MD5 support is disabled, and support will be removed in a 2024 version of Ironic.";

/// IPA's `_get_algorithm_by_length`: SHA-2 by hex length, md5 for 32 hex
/// digits only while md5 is enabled. The error texts are IPA's.
pub fn algo_by_length(digest: &str, md5_enabled: bool) -> Result<Algo> {
    match digest.len() {
        128 => Ok(Algo::Sha512),
        64 => Ok(Algo::Sha256),
        32 if md5_enabled => Ok(Algo::Md5),
        32 => Err(AgentError::msg(MD5_DISABLED)),
        _ => Err(AgentError::msg(
            "Unable to identify checksum algorithm used, and a value is not specified \
                  in the os_hash_algo setting.",
        )),
    }
}

/// A running digest; the state survives a resumed download. SHA-384/512
/// come from our AVX2+BMI2 assembly (`util::sha512`: ~830 MB/s here
/// against ring's ~600) when the CPU has those features, else from ring
/// (see Cargo.toml: faster than sha2 on x86-64).
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    #[cfg(target_arch = "x86_64")]
    Sha2x(Sha512),
    Ring(ring::digest::Context),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            #[cfg(target_arch = "x86_64")]
            Hasher::Sha2x(h) => h.update(data),
            Hasher::Ring(h) => h.update(data),
        }
    }

    /// Lower-case hex, as hashlib's `hexdigest()`.
    pub fn hexdigest(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            #[cfg(target_arch = "x86_64")]
            Hasher::Sha2x(h) => h.finish(),
            Hasher::Ring(h) => h.finish().as_ref().to_vec(),
        };
        crate::util::bytes::hex(&bytes)
    }
}

/// What the image must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub algo: Algo,
    /// Lower-case hex.
    pub value: String,
}

impl Expected {
    pub fn matches(&self, actual: &str) -> bool {
        self.value.eq_ignore_ascii_case(actual)
    }
}

/// IPA's `_is_checksum_url`.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_hex_digest(s: &str) -> bool {
    matches!(s.len(), 32 | 64 | 128) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The basename of a URL's path (IPA: `os.path.basename(urlparse(u).path)`).
pub fn url_basename(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.rsplit('/').next().unwrap_or("")
}

/// Why a checksum file yielded no digest; the texts are IPA's.
fn file_error(why: impl Into<String>) -> AgentError {
    AgentError::msg(why)
}

/// True when `line` names `fname`: GNU `<digest> [*]<fname>` at the end of
/// the line, or BSD/CentOS `(<fname>)` followed by whitespace (IPA's
/// `FILENAME_MATCHERS`, matched literally rather than as a regex).
fn names_file(line: &str, fname: &str) -> bool {
    if let Some(head) = line.strip_suffix(fname) {
        let head = head.strip_suffix('*').unwrap_or(head);
        if head.ends_with(char::is_whitespace) {
            return true;
        }
    }
    let paren = format!("({fname})");
    line.match_indices(&paren).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + paren.len()..].chars().next();
        before.is_some_and(char::is_whitespace) && after.is_some_and(char::is_whitespace)
    })
}

/// A digest at the start of the line followed by whitespace, or at the end
/// preceded by whitespace (IPA's `CHECKSUM_MATCHERS`, md5 first, then
/// sha256, then sha512).
fn digest_in_line(line: &str) -> Option<&str> {
    for len in [32, 64, 128] {
        if let Some(first) = line.get(..len) {
            let next = line[len..].chars().next();
            if is_hex_digest(first) && next.is_some_and(char::is_whitespace) {
                return Some(first);
            }
        }
        if line.len() > len {
            let split = line.len() - len;
            if let (Some(last), Some(before)) = (line.get(split..), line.get(..split)) {
                if is_hex_digest(last) && before.ends_with(char::is_whitespace) {
                    return Some(last);
                }
            }
        }
    }
    None
}

/// IPA's `_fetch_checksum` after the download: the digest for `fname`.
pub fn parse_checksum_file(text: &str, fname: &str) -> Result<String> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => return Err(file_error("Empty checksum file")),
        [only] if !only.contains(' ') => {
            return if is_hex_digest(only) {
                Ok(only.to_string())
            } else {
                Err(file_error(format!(
                    "Invalid checksum file (No valid checksum found) ['{only}']"
                )))
            };
        }
        _ => {}
    }
    for line in lines {
        if line.starts_with('#') || !names_file(line, fname) {
            continue;
        }
        if let Some(d) = digest_in_line(line) {
            return Ok(d.to_string());
        }
    }
    Err(file_error(format!(
        "Checksum file does not contain name {fname}"
    )))
}

fn checksum_error(details: String) -> AgentError {
    crate::util::log_at!(Error, "{details}");
    AgentError::new(Kind::ImageChecksumError, details)
}

/// Work out the expected digest. `fetch(url)` downloads a checksum file
/// (and fails with IPA's `ImageDownloadError` texts).
pub fn resolve(
    env: &Env,
    info: &ImageInfo,
    fetch: &mut dyn FnMut(&str) -> Result<String>,
) -> Result<Expected> {
    resolve_with(info, env.lookup.md5_enabled, fetch)
}

pub fn resolve_with(
    info: &ImageInfo,
    md5_enabled: bool,
    fetch: &mut dyn FnMut(&str) -> Result<String>,
) -> Result<Expected> {
    let id = &info.id;
    let first_url = info.urls.first().map(String::as_str).unwrap_or("");
    let fname = url_basename(first_url).to_string();
    let mut from_url = |url: &str| -> Result<String> {
        crate::util::log_at!(Debug, "downloading checksums file from {url}");
        let text = fetch(url)?;
        parse_checksum_file(&text, &fname).map_err(|e| AgentError::download(url, e.into_details()))
    };
    let algo_name = info.os_hash_algo.as_deref();
    let checksum = info.checksum.as_deref();
    let requested = algo_name.and_then(Algo::from_name);
    let (algo, value) = if let Some(algo) = requested {
        let v = info.os_hash_value.as_deref().unwrap_or("");
        let v = if is_url(v) {
            from_url(v)?
        } else {
            v.to_string()
        };
        // This agent refuses md5 whichever field asks for it while the
        // lookup disables it (IPA only checks the legacy field).
        if algo == Algo::Md5 && !md5_enabled {
            return Err(checksum_error(format!(
                "Unable to proceed with image {id}: {MD5_DISABLED}"
            )));
        }
        (algo, v)
    } else if let Some(c) = checksum {
        let v = if is_url(c) {
            from_url(c)?
        } else {
            c.to_string()
        };
        match algo_by_length(&v, md5_enabled) {
            Ok(a) => (a, v),
            Err(why) => {
                return Err(checksum_error(format!(
                    "Unable to proceed with image {id} as the checksum indicator has been used \
                     but the algorithm could not be identified. Error: {}",
                    why.details
                )))
            }
        }
    } else {
        return Err(checksum_error(format!(
            "Unable to verify image {id} with available checksums. Please make sure the \
             specified 'os_hash_algo' (currently {}) is supported by this ramdisk, or provide \
             a md5 checksum via the 'checksum' field",
            algo_name.unwrap_or("None")
        )));
    };
    // IPA: warn when the digest's length contradicts the named algorithm
    // (an easy mistake with checksum URLs).
    if let (Some(name), Ok(detected)) = (algo_name, algo_by_length(&value, true)) {
        if detected != algo {
            crate::util::log_at!(
                Warn,
                "Provided checksum algorithm {name} does not match the detected algorithm {}. \
                 It may be a sign of a user error when providing the algorithm or the checksum \
                 URL.",
                detected.name()
            );
        }
    }
    Ok(Expected {
        algo,
        value: value.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn info(v: Value) -> ImageInfo {
        ImageInfo::parse(v.as_object().unwrap(), true).unwrap()
    }

    fn no_fetch(_: &str) -> Result<String> {
        panic!("unexpected fetch")
    }

    #[test]
    fn hashes_like_hashlib() {
        assert_eq!(Algo::Sha256.hasher().hexdigest(), SHA256_EMPTY);
        assert_eq!(Algo::Md5.hasher().hexdigest(), MD5_EMPTY);
        // FIPS 180-2's "abc" vectors, fed in pieces through a clone as a
        // resumed download does (the hash thread digests a clone at the end)
        for (algo, want) in [
            (
                Algo::Sha224,
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                Algo::Sha384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                Algo::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ] {
            let mut h = algo.hasher();
            h.update(b"a");
            let mut h = h.clone();
            h.update(b"bc");
            assert_eq!(h.hexdigest(), want, "{}", algo.name());
        }
    }

    #[test]
    fn sha384_512_use_the_assembly_where_the_cpu_runs_it() {
        let asm = crate::sys::sha512::blocks_fn().is_some();
        if !asm {
            eprintln!("no AVX2+BMI2 SHA-512 on this CPU: checking ring's path only");
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let data: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        for (algo, ring_algo) in [
            (Algo::Sha384, &ring::digest::SHA384),
            (Algo::Sha512, &ring::digest::SHA512),
        ] {
            let mut h = algo.hasher();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(matches!(h, Hasher::Sha2x(_)), asm);
            #[cfg(not(target_arch = "x86_64"))]
            assert!(matches!(h, Hasher::Ring(_)));
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.usize(..=5000).min(rest.len());
                h.update(&rest[..n]);
                rest = &rest[n..];
                // a resumed download goes on from a clone
                h = h.clone();
            }
            let want = ring::digest::digest(ring_algo, &data);
            assert_eq!(h.hexdigest(), crate::util::bytes::hex(want.as_ref()));
        }
    }

    #[test]
    fn by_length() {
        assert_eq!(algo_by_length(SHA256_EMPTY, false), Ok(Algo::Sha256));
        assert_eq!(algo_by_length(&"a".repeat(128), false), Ok(Algo::Sha512));
        assert_eq!(algo_by_length(MD5_EMPTY, true), Ok(Algo::Md5));
        assert_eq!(
            algo_by_length(MD5_EMPTY, false).unwrap_err().details,
            MD5_DISABLED
        );
        assert!(algo_by_length("abc", true).is_err());
    }

    #[test]
    fn basenames() {
        assert_eq!(url_basename("http://h/a/b/img.qcow2"), "img.qcow2");
        assert_eq!(url_basename("https://h:8080/img.raw?x=1#f"), "img.raw");
        assert_eq!(url_basename("http://h"), "");
    }

    #[test]
    fn checksum_files() {
        let gnu = format!(
            "# comment {SHA256_EMPTY}  img.raw\n{}  other.raw\n{SHA256_EMPTY} *img.raw\n",
            "1".repeat(64)
        );
        assert_eq!(parse_checksum_file(&gnu, "img.raw").unwrap(), SHA256_EMPTY);
        assert_eq!(
            parse_checksum_file(&gnu, "other.raw").unwrap(),
            "1".repeat(64)
        );
        let bsd = format!("SHA256 (img.qcow2) = {SHA256_EMPTY}\nSHA256 (x) = {MD5_EMPTY}\n");
        assert_eq!(
            parse_checksum_file(&bsd, "img.qcow2").unwrap(),
            SHA256_EMPTY
        );
        // CentOS style with a comment header
        let centos = format!(
            "# CentOS-Stream.qcow2: 123 bytes\nSHA256 (CentOS-Stream.qcow2) = {SHA256_EMPTY}\n"
        );
        assert_eq!(
            parse_checksum_file(&centos, "CentOS-Stream.qcow2").unwrap(),
            SHA256_EMPTY
        );
        // a bare digest on one line
        assert_eq!(
            parse_checksum_file(&format!("  {MD5_EMPTY}\n\n"), "x").unwrap(),
            MD5_EMPTY
        );
        assert_eq!(
            parse_checksum_file(" \n\n", "x").unwrap_err().details,
            "Empty checksum file"
        );
        assert_eq!(
            parse_checksum_file("nothex", "x").unwrap_err().details,
            "Invalid checksum file (No valid checksum found) ['nothex']"
        );
        assert_eq!(
            parse_checksum_file(&gnu, "missing.raw")
                .unwrap_err()
                .details,
            "Checksum file does not contain name missing.raw"
        );
        // names are literal: "imgXraw" must not match "img.raw"
        let tricky = format!("{SHA256_EMPTY}  imgXraw\n{SHA256_EMPTY}  a-img.raw\n");
        assert!(parse_checksum_file(&tricky, "img.raw").is_err());
        // a digest that is neither at the start nor at the end is not used
        let odd = format!("x {SHA256_EMPTY} img.raw\n y");
        assert!(parse_checksum_file(&odd, "img.raw").is_err());
    }

    #[test]
    fn resolution_order() {
        let i = info(json!({"id": "i", "urls": ["http://h/img.raw"],
            "os_hash_algo": "sha512", "os_hash_value": "AB".repeat(64),
            "checksum": MD5_EMPTY}));
        let e = resolve_with(&i, true, &mut no_fetch).unwrap();
        assert_eq!(e.algo, Algo::Sha512);
        assert_eq!(e.value, "ab".repeat(64));
        assert!(e.matches(&"AB".repeat(64)));
        // unknown os_hash_algo falls back to the legacy field
        let i = info(json!({"id": "i", "urls": ["http://h/img.raw"],
            "os_hash_algo": "sha3_256", "os_hash_value": "x", "checksum": SHA256_EMPTY}));
        assert_eq!(
            resolve_with(&i, true, &mut no_fetch).unwrap().algo,
            Algo::Sha256
        );
        let i = info(json!({"id": "i", "urls": ["u"], "os_hash_algo": "sha3_256",
            "os_hash_value": "x"}));
        let e = resolve_with(&i, true, &mut no_fetch).unwrap_err();
        assert!(e.details.contains("(currently sha3_256) is supported"));
        // legacy md5 refused while disabled
        let i = info(json!({"id": "i", "urls": ["u"], "checksum": MD5_EMPTY}));
        let e = resolve_with(&i, false, &mut no_fetch).unwrap_err();
        assert!(e.is(Kind::ImageChecksumError) && e.details.contains("MD5 support is disabled"));
        let i = info(json!({"id": "i", "urls": ["u"], "os_hash_algo": "md5",
            "os_hash_value": MD5_EMPTY}));
        assert!(resolve_with(&i, false, &mut no_fetch).is_err());
        assert!(resolve_with(&i, true, &mut no_fetch).is_ok());
        // a 40-digit (sha1) legacy checksum has no known algorithm
        let i = info(json!({"id": "i", "urls": ["u"], "checksum": "a".repeat(40)}));
        let e = resolve_with(&i, true, &mut no_fetch).unwrap_err();
        assert!(e.details.contains("could not be identified"));
    }

    #[test]
    fn checksum_urls_are_fetched() {
        let i = info(json!({"id": "i", "urls": ["http://h/d/img.qcow2"],
            "checksum": "http://h/d/SHA256SUMS"}));
        let mut asked = vec![];
        let mut fetch = |u: &str| {
            asked.push(u.to_string());
            Ok(format!("{SHA256_EMPTY}  img.qcow2\n"))
        };
        let e = resolve_with(&i, true, &mut fetch).unwrap();
        assert_eq!(asked, vec!["http://h/d/SHA256SUMS"]);
        assert_eq!((e.algo, e.value.as_str()), (Algo::Sha256, SHA256_EMPTY));
        // os_hash_value as a URL
        let i = info(json!({"id": "i", "urls": ["http://h/img.qcow2"],
            "os_hash_algo": "sha256", "os_hash_value": "https://h/SUMS"}));
        let e = resolve_with(&i, true, &mut |_| Ok(format!("{SHA256_EMPTY}\n"))).unwrap();
        assert_eq!(e.value, SHA256_EMPTY);
        // a checksum file without our file name
        let e = resolve_with(&i, true, &mut |_| Ok("a  b\nc  d\n".into())).unwrap_err();
        assert!(e.is(Kind::ImageDownloadError));
        assert_eq!(
            e.details,
            "Download of image https://h/SUMS failed: Checksum file does not contain name \
             img.qcow2"
        );
    }
}
