//! A command's JSON body, read from the API's connection into a
//! `serde_json::Value` with every string held once.
//!
//! Parsing a body the usual way holds an inline configdrive (tens of MiB
//! of base64) three times at once: the body bytes, serde_json's scratch
//! buffer (`from_reader`) or the body itself (`from_slice`), and the
//! `Value`'s own `String`. Here the body is never whole in memory: a small
//! lexer between the connection and serde_json (it knows only where JSON
//! strings start and end) takes every string longer than [`DIVERT`] out
//! of the stream as it arrives, into the `String` that will hold it,
//! unescaped in place, and hands serde_json a short placeholder instead
//! (a NUL, a random per-request nonce and an index: no client can spell
//! one). The placeholders are then replaced by their strings, moved, not
//! copied. So a body of N bytes costs N bytes of strings plus the small
//! values' overhead, and the front frees its copy of the body as this
//! reads it.
//!
//! That overhead is bounded too: a body may hold at most [`MAX_VALUES`]
//! JSON values (counted by the separators `[`, `,` and `:`), since a
//! 64 MiB body of `0,0,0,…` would otherwise cost 32 M values of 32 bytes
//! each, over 1 GiB. Ironic's largest bodies (a node with its
//! driver_internal_info, cached steps and ports) hold a few thousand.

use serde_json::Value;
use std::io::{self, Read};

/// Strings at least this long are taken out of serde_json's way.
pub const DIVERT: usize = 64 * 1024;
/// The most JSON values a body may hold (about 100 bytes of memory each,
/// at most, whatever their kind).
pub const MAX_VALUES: u64 = 100_000;

/// Why a body was not parsed.
#[derive(Debug)]
pub enum BodyError {
    /// Over the byte limit given.
    TooLarge,
    /// Over [`MAX_VALUES`].
    TooManyValues,
    /// The connection failed.
    Read(io::Error),
    /// Not JSON (serde_json's message, or the lexer's for a long string).
    Json(String),
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Outside,
    InString,
    Escape,
}

/// The lexer: a `Read` of the body as serde_json is to see it.
struct Lexer<R> {
    inner: R,
    max: u64,
    /// Strings at least this long are diverted ([`DIVERT`]).
    divert: usize,
    read: u64,
    input: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    state: State,
    /// The current string's raw (escaped) bytes; a long one stays here
    /// until it ends, then becomes its `String`.
    cur: Vec<u8>,
    strings: Vec<String>,
    values: u64,
    prefix: String,
    eof: bool,
    failure: Option<BodyError>,
}

impl<R: Read> Lexer<R> {
    fn fail(&mut self, e: BodyError) -> io::Error {
        self.failure = Some(e);
        io::Error::other("the lexer stopped")
    }

    /// Lex the next piece of input into `out`.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.at = 0;
        let n = loop {
            match self.inner.read(&mut self.input) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(BodyError::Read(e))),
            }
        };
        if n == 0 {
            self.eof = true;
            // an unterminated string: what there is, for serde_json to
            // report the end of input
            if self.state != State::Outside {
                self.out.push(b'"');
                if self.cur.len() < self.divert {
                    self.out.extend_from_slice(&self.cur);
                }
            }
            return Ok(());
        }
        self.read += n as u64;
        if self.read > self.max {
            return Err(self.fail(BodyError::TooLarge));
        }
        let input = std::mem::take(&mut self.input);
        let r = self.lex(&input[..n]);
        self.input = input;
        r
    }

    fn lex(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.state {
                State::Outside => {
                    let end = data.iter().position(|&b| b == b'"').unwrap_or(data.len());
                    let sep = data[..end]
                        .iter()
                        .filter(|&&b| matches!(b, b'[' | b',' | b':'))
                        .count() as u64;
                    self.values += sep;
                    if self.values > MAX_VALUES {
                        return Err(self.fail(BodyError::TooManyValues));
                    }
                    self.out.extend_from_slice(&data[..end]);
                    if end < data.len() {
                        self.state = State::InString;
                        self.cur.clear();
                        data = &data[end + 1..];
                    } else {
                        data = &[];
                    }
                }
                State::InString => {
                    let end = data
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\')
                        .unwrap_or(data.len());
                    self.cur.extend_from_slice(&data[..end]);
                    let Some(&c) = data.get(end) else {
                        data = &[];
                        continue;
                    };
                    data = &data[end + 1..];
                    if c == b'\\' {
                        self.cur.push(c);
                        self.state = State::Escape;
                    } else {
                        self.end_string()?;
                        self.state = State::Outside;
                    }
                }
                State::Escape => {
                    self.cur.push(data[0]);
                    data = &data[1..];
                    self.state = State::InString;
                }
            }
        }
        Ok(())
    }

    fn end_string(&mut self) -> io::Result<()> {
        if self.cur.len() < self.divert {
            self.out.push(b'"');
            self.out.extend_from_slice(&self.cur);
            self.out.push(b'"');
            return Ok(());
        }
        let mut raw = std::mem::take(&mut self.cur);
        if let Err(e) = unescape(&mut raw) {
            return Err(self.fail(BodyError::Json(e)));
        }
        let s = match String::from_utf8(raw) {
            Ok(s) => s,
            Err(_) => return Err(self.fail(BodyError::Json("invalid unicode in a string".into()))),
        };
        let i = self.strings.len();
        self.strings.push(s);
        // "\u0000" in JSON: the placeholder starts with a NUL
        self.out
            .extend_from_slice(format!("\"\\u0000{}{i:08}\"", &self.prefix[1..]).as_bytes());
        Ok(())
    }
}

impl<R: Read> Read for Lexer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// JSON's string escapes undone in place (what serde_json does for a
/// short string): each escape is at least as long as what it stands for.
fn unescape(b: &mut Vec<u8>) -> Result<(), String> {
    let hex = |b: &[u8], at: usize| -> Result<u32, String> {
        let h = b.get(at..at + 4).ok_or("EOF while parsing a hex escape")?;
        // four hex digits, nothing else (from_str_radix takes a sign)
        h.iter().try_fold(0u32, |n, &c| {
            let d = (c as char).to_digit(16).ok_or("invalid escape")?;
            Ok(n << 4 | d)
        })
    };
    let (mut r, mut w) = (0, 0);
    while r < b.len() {
        let c = b[r];
        if c < 0x20 {
            return Err("control character (\\u0000-\\u001F) found while parsing a string".into());
        }
        if c != b'\\' {
            b[w] = c;
            w += 1;
            r += 1;
            continue;
        }
        let e = *b.get(r + 1).ok_or("EOF while parsing a string")?;
        r += 2;
        let one = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut cp = hex(b, r)?;
                r += 4;
                if (0xdc00..0xe000).contains(&cp) {
                    return Err("lone trailing surrogate in hex escape".into());
                }
                if (0xd800..0xdc00).contains(&cp) {
                    if b.get(r..r + 2) != Some(b"\\u") {
                        return Err("lone leading surrogate in hex escape".into());
                    }
                    let lo = hex(b, r + 2)?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err("lone leading surrogate in hex escape".into());
                    }
                    r += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                let ch = char::from_u32(cp).ok_or("invalid unicode code point")?;
                let mut tmp = [0u8; 4];
                let s = ch.encode_utf8(&mut tmp);
                b[w..w + s.len()].copy_from_slice(s.as_bytes());
                w += s.len();
                continue;
            }
            _ => return Err("invalid escape".into()),
        };
        b[w] = one;
        w += 1;
    }
    b.truncate(w);
    Ok(())
}

/// Put each diverted string back where its placeholder is (keys too).
fn resolve(v: &mut Value, strings: &mut [String], prefix: &str) {
    let index = |s: &str| -> Option<usize> {
        s.strip_prefix(prefix)
            .filter(|i| i.len() == 8)
            .and_then(|i| i.parse().ok())
    };
    match v {
        Value::String(s) => {
            if let Some(s2) = index(s).and_then(|i| strings.get_mut(i)) {
                *s = std::mem::take(s2);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve(x, strings, prefix)),
        Value::Object(m) => {
            if m.keys().any(|k| index(k).is_some()) {
                for (k, x) in std::mem::take(m) {
                    let k = match index(&k).and_then(|i| strings.get_mut(i)) {
                        Some(s) => std::mem::take(s),
                        None => k,
                    };
                    m.insert(k, x);
                }
            }
            m.values_mut().for_each(|x| resolve(x, strings, prefix));
        }
        _ => {}
    }
}

/// Parse the JSON document `r` yields, at most `max` bytes of it.
pub fn parse(r: impl Read, max: u64) -> Result<Value, BodyError> {
    parse_diverting(r, max, DIVERT)
}

/// [`parse`], diverting strings from `divert` bytes on: for the fuzz
/// target `command_json`, whose small inputs would otherwise never reach
/// the diverted path.
#[doc(hidden)]
pub fn parse_diverting(r: impl Read, max: u64, divert: usize) -> Result<Value, BodyError> {
    let mut nonce = [0u8; 8];
    if crate::sys::getrandom(&mut nonce).is_err() {
        fastrand::fill(&mut nonce);
    }
    let prefix = format!("\0ironic-agent:{:016x}:", u64::from_le_bytes(nonce));
    let mut lexer = Lexer {
        inner: r,
        max,
        divert: divert.max(1),
        read: 0,
        input: vec![0; 64 * 1024],
        out: Vec::new(),
        at: 0,
        state: State::Outside,
        cur: Vec::new(),
        strings: Vec::new(),
        values: 0,
        prefix,
        eof: false,
        failure: None,
    };
    // serde_json reads byte by byte: through a buffer
    let parsed = serde_json::from_reader::<_, Value>(io::BufReader::new(&mut lexer));
    if let Some(f) = lexer.failure.take() {
        return Err(f);
    }
    let mut v = parsed.map_err(|e| BodyError::Json(e.to_string()))?;
    if !lexer.strings.is_empty() {
        resolve(&mut v, &mut lexer.strings, &lexer.prefix);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn parse_in(body: &[u8], step: usize) -> Result<Value, BodyError> {
        parse(Trickle(body, step), 1 << 30)
    }

    #[test]
    fn same_value_as_serde_json() {
        let long: String = "x\"y\\z\u{e9}\u{1F600}/\n\t".repeat(DIVERT / 8);
        let doc = json!({
            "name": "standby.prepare_image",
            "params": {
                "configdrive": "H4sI".repeat(DIVERT / 2),
                "escaped": long,
                "list": [1, 2.5, -3, true, false, null, "short", {"a": "b"}],
                "long key ".repeat(DIVERT / 4): {"nested": ["y".repeat(DIVERT + 1)]},
                "unicode \u{2603}": "\u{1F600}",
            }
        });
        let text = serde_json::to_vec(&doc).unwrap();
        for step in [1, 3, 7, 4096, 1 << 20] {
            assert_eq!(parse_in(&text, step).unwrap(), doc, "step {step}");
        }
        // escapes serde_json writes differently: \/, \uXXXX, surrogates
        let mut s = String::from("{\"k\": \"");
        s.push_str(&"\\u00e9\\/\\ud83d\\ude00\\b\\f\\r".repeat(DIVERT / 16));
        s.push_str("\"}");
        assert_eq!(
            parse_in(s.as_bytes(), 1000).unwrap(),
            serde_json::from_str::<Value>(&s).unwrap()
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        let long = "a".repeat(DIVERT);
        for bad in [
            format!("{{\"k\": \"{long}\\x\"}}"),
            format!("{{\"k\": \"{long}\\ud800\"}}"),
            format!("{{\"k\": \"{long}\\udc00\"}}"),
            format!("{{\"k\": \"{long}\\u12\"}}"),
            // from_str_radix would take the sign
            format!("{{\"k\": \"{long}\\u+123\"}}"),
            format!("{{\"k\": \"{long}\\ud83d\\u+e00\"}}"),
            format!("{{\"k\": \"{long}\u{1}\"}}"),
            format!("{{\"k\": \"{long}"),
            format!("{{\"k\": \"{long}\"}} trailing"),
            "{\"k\": ".to_string(),
            "[1, 2".to_string(),
        ] {
            assert!(
                matches!(parse_in(bad.as_bytes(), 999), Err(BodyError::Json(_))),
                "{}",
                &bad[bad.len().saturating_sub(20)..]
            );
        }
        let mut invalid = format!("{{\"k\": \"{long}").into_bytes();
        invalid.extend_from_slice(b"\xff\"}");
        assert!(matches!(parse_in(&invalid, 999), Err(BodyError::Json(_))));
        assert!(matches!(
            parse(Trickle(b"{\"a\": 1}", 3), 4),
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn values_are_bounded() {
        let mut ok = b"[".to_vec();
        ok.extend(b"0,".repeat(MAX_VALUES as usize - 2));
        ok.extend(b"0]");
        assert_eq!(
            parse_in(&ok, 1 << 16).unwrap().as_array().unwrap().len(),
            MAX_VALUES as usize - 1
        );
        let mut over = b"[".to_vec();
        over.extend(b"0,".repeat(MAX_VALUES as usize));
        over.extend(b"0]");
        assert!(matches!(
            parse_in(&over, 1 << 16),
            Err(BodyError::TooManyValues)
        ));
        // separators inside strings are not values
        let s = format!("[\"{}\"]", ",".repeat(MAX_VALUES as usize * 2));
        assert!(parse_in(s.as_bytes(), 1 << 16).is_ok());
    }

    #[test]
    fn placeholders_cannot_be_forged() {
        // a client's string shaped like a placeholder stays as sent
        let forged = "\u{0}ironic-agent:0000000000000000:00000000";
        let doc = json!({"a": forged, "b": "c".repeat(DIVERT)});
        let text = serde_json::to_vec(&doc).unwrap();
        assert_eq!(parse_in(&text, 1 << 16).unwrap(), doc);
    }
}
