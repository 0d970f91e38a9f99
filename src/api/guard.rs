//! The front's HTTP/1.1 parsing: pure functions over bytes, no I/O, so a
//! fuzz target can call them directly ([`parse_head`], [`HeadScanner`],
//! [`Chunked`], [`parse_response_head`]).
//!
//! What reaches tiny_http is only what these functions accepted and
//! [`Head::canonical`] re-serialised: an HTTP/1.1 request line, end-to-end
//! header fields, and the body's exact `Content-Length` (a chunked body is
//! decoded by the front first). Everything else is answered by the front
//! itself ([`Refusal`]) and the connection closed.
//!
//! Why not hand tiny_http 0.12 what the client sent: it reads a request
//! line or header of any length into memory; it deadlocks its connection
//! thread on a request line above HTTP/1.1 (it takes a second response
//! writer for its 505 that waits on the first); it decodes any
//! Transfer-Encoding as chunked, also when a Content-Length framed the
//! request; it keeps a `Connection: upgrade` request's whole stream as its
//! body; and when a request is dropped with its body unread it drains the
//! rest with `vec![0; remaining]` (`util/equal_reader.rs`) sized by the
//! client's Content-Length (tiny-http PR #290, never merged). All of that
//! happens before any handler runs, for unauthenticated requests too.

use std::io;

/// Longest request head (request line and header fields) accepted.
/// cheroot, which IPA serves with, allows 64 KiB by default; Ironic's
/// heads are a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024; // too_large_head() says so
/// Most header fields in one request head.
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line (with extensions) or trailer section of a
/// chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// A request the front answers itself before closing the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub faultstring: String,
}

impl Refusal {
    pub fn new(status: &'static str, why: &str) -> Refusal {
        Refusal {
            status,
            faultstring: format!("{status}: {why}"),
        }
    }

    fn bad(why: &str) -> Refusal {
        Refusal::new("400 Bad Request", why)
    }

    /// The whole HTTP response, with IPA's `{faultcode, faultstring}` body.
    pub fn response(&self) -> Vec<u8> {
        let code = if self.status.starts_with('5') {
            "Server"
        } else {
            "Client"
        };
        let body = format!(
            "{{\"faultcode\":\"{code}\",\"faultstring\":{}}}",
            serde_json::Value::from(self.faultstring.as_str())
        );
        format!(
            "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// No body.
    #[default]
    None,
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// The client's HTTP/1.x minor version (0 or 1; 1.2–1.9 count as 1).
    pub minor: u8,
    /// The end-to-end header fields in order, as `Name: value\r\n` lines;
    /// framing and hop-by-hop fields (Connection, Content-Length,
    /// Transfer-Encoding, Expect, ...) are not among them.
    pub fields: Vec<u8>,
    pub framing: Framing,
    /// The client allows another request on this connection afterwards.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl Head {
    /// The head tiny_http gets: HTTP/1.1, the end-to-end fields, and the
    /// body's exact length when there is one.
    pub fn canonical(&self, body_len: u64) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        out.extend_from_slice(&self.fields);
        if body_len > 0 || self.framing != Framing::None {
            out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Finds where a request head ends in a growing buffer, scanning each
/// byte once however the head is split across reads.
#[derive(Debug, Default)]
pub struct HeadScanner {
    /// Bytes already scanned.
    at: usize,
    /// Where the request line starts (after empty lines, which RFC 9112
    /// §2.2 lets a server ignore).
    start: usize,
    /// True once a byte other than an empty line's CR LF was seen.
    begun: bool,
}

impl HeadScanner {
    pub fn new() -> HeadScanner {
        HeadScanner::default()
    }

    /// `Some((start, end))`: the head is `buf[start..end]`, its final
    /// CR LF CR LF included. `None`: not complete yet. A bare LF, a CR not
    /// followed by LF, or a head longer than [`MAX_HEAD`] is refused.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, Refusal> {
        while self.at < buf.len() {
            let i = self.at;
            let after_cr = i > 0 && buf[i - 1] == b'\r';
            match buf[i] {
                b'\n' if !after_cr => return Err(Refusal::bad("a line ends in a bare LF")),
                b'\n' if !self.begun => self.start = i + 1,
                b'\n' if i >= self.start + 3 && &buf[i - 3..i] == b"\r\n\r" => {
                    self.at = i + 1;
                    return Ok(Some((self.start, i + 1)));
                }
                b'\n' => {}
                _ if after_cr => return Err(Refusal::bad("a CR not followed by LF")),
                b'\r' => {}
                _ => self.begun = true,
            }
            self.at += 1;
            if self.at - self.start > MAX_HEAD || (!self.begun && self.start > MAX_HEAD) {
                return Err(too_large_head());
            }
        }
        Ok(None)
    }
}

fn too_large_head() -> Refusal {
    Refusal::new(
        "431 Request Header Fields Too Large",
        "the request line and headers exceed 16384 bytes",
    )
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_tchar(c))
}

/// Printable ASCII, and space and tab where `blanks`.
fn printable(s: &[u8], blanks: bool) -> bool {
    s.iter()
        .all(|&c| (0x21..=0x7e).contains(&c) || (blanks && (c == b' ' || c == b'\t')))
}

/// Without leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The comma-separated elements of a field value, trimmed.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&c| c == b',').map(trim_ows)
}

/// Parse one complete request head: the request line, the header fields
/// and the final empty line (`head` ends with CR LF CR LF, as
/// [`HeadScanner`] delimits it). Pure: the fuzz target's entry point.
pub fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    if head.len() > MAX_HEAD + 4 {
        return Err(too_large_head());
    }
    let Some(head) = head.strip_suffix(b"\r\n\r\n") else {
        return Err(Refusal::bad(
            "the request head does not end with an empty line",
        ));
    };
    // every CR is followed by LF and every LF preceded by CR
    let crlf_only = head.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && head[i - 1] == b'\r',
        _ => true,
    });
    if !crlf_only {
        return Err(Refusal::bad("a line ends in a bare LF or CR"));
    }
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    if !printable(line, true) {
        return Err(Refusal::bad(
            "the request line holds a byte that is not printable ASCII",
        ));
    }
    let parts: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Refusal::bad("malformed request line"));
    };
    if !is_token(method) || target.is_empty() {
        return Err(Refusal::bad("malformed request line"));
    }
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(Refusal::new(
                    "505 HTTP Version Not Supported",
                    "this agent speaks HTTP/1.0 and HTTP/1.1",
                ));
            }
            (minor - b'0').min(1)
        }
        _ => return Err(Refusal::bad("malformed HTTP version")),
    };
    let mut fields = Vec::new();
    let (mut count, mut length, mut codings) = (0, None::<u64>, 0);
    let (mut chunked, mut close, mut keep_alive) = (false, false, false);
    let mut expect_continue = false;
    for line in lines {
        count += 1;
        if count > MAX_FIELDS {
            return Err(Refusal::new(
                "431 Request Header Fields Too Large",
                "too many header fields",
            ));
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(Refusal::bad("a header line without a colon"));
        };
        // a name is a token: no space before the colon, no line folding
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if !is_token(name) {
            return Err(Refusal::bad("malformed header field name"));
        }
        if !printable(value, true) {
            return Err(Refusal::bad(
                "a header field value holds a byte that is not printable ASCII",
            ));
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            for v in elements(value) {
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return Err(Refusal::bad("invalid Content-Length"));
                }
                // more digits than u64 holds: far beyond any cap
                let n = v.iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::bad("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if is("transfer-encoding") {
            for c in elements(value) {
                codings += 1;
                chunked = c.eq_ignore_ascii_case(b"chunked");
            }
        } else if is("connection") {
            for t in elements(value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::new(
                    "417 Expectation Failed",
                    "the only expectation supported is 100-continue",
                ));
            }
            expect_continue = true;
        } else if !["keep-alive", "proxy-connection", "te", "trailer", "upgrade"]
            .iter()
            .any(|n| is(n))
        {
            // hop-by-hop ones stay out: the front is the client's peer
            fields.extend_from_slice(name);
            fields.extend_from_slice(b": ");
            fields.extend_from_slice(value);
            fields.extend_from_slice(b"\r\n");
        }
    }
    let framing = match (codings, length) {
        (0, None | Some(0)) => Framing::None,
        (0, Some(n)) => Framing::Length(n),
        (_, Some(_)) => {
            return Err(Refusal::bad(
                "both Transfer-Encoding and Content-Length frame the body",
            ))
        }
        _ if minor == 0 => return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request")),
        (1, None) if chunked => Framing::Chunked,
        _ => {
            return Err(Refusal::new(
                "501 Not Implemented",
                "the only transfer coding accepted is chunked",
            ))
        }
    };
    // all printable ASCII, checked above
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Head {
        method: text(method),
        target: text(target),
        minor,
        fields,
        framing,
        keep_alive: !close && (minor == 1 || keep_alive),
        expect_continue: expect_continue && framing != Framing::None,
    })
}

/// A chunked body decoder (RFC 9112 §7.1) fed bytes as they arrive.
/// Chunk extensions and trailer fields are read and dropped.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of the current size line or trailer section so far.
    line: usize,
    size: u64,
    /// Decoded bytes so far.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    /// In a chunk extension, up to the CR.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size,
            line: 0,
            size: 0,
            total: 0,
        }
    }
}

impl Chunked {
    pub fn new() -> Chunked {
        Chunked::default()
    }

    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode from `input`, appending data to `out` (at most `max` decoded
    /// bytes in all, else 413). Returns how many input bytes were used:
    /// all of them unless the body ended inside `input`.
    pub fn feed(
        &mut self,
        input: &[u8],
        max: u64,
        out: &mut impl FnMut(&[u8]),
    ) -> Result<usize, Refusal> {
        use ChunkState::*;
        let bad = |why: &str| Refusal::bad(&format!("malformed chunked body: {why}"));
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let c = input[i];
            if matches!(self.state, Size | Ext | SizeLf | Trailer | TrailerLf) {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err(bad("a chunk-size line or the trailers are too long"));
                }
            }
            match self.state {
                Data => {
                    let n = (self.size.min((input.len() - i) as u64)) as usize;
                    out(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (c as char).to_digit(16).unwrap_or(0) as u64;
                        if self.line > 16 {
                            return Err(bad("chunk size too large"));
                        }
                        self.size = self.size << 4 | d;
                    }
                    b';' | b' ' | b'\t' if self.line > 1 => self.state = Ext,
                    b'\r' if self.line > 1 => self.state = SizeLf,
                    _ => return Err(bad("invalid chunk size")),
                },
                Ext => match c {
                    b'\r' => self.state = SizeLf,
                    b'\t' | b' '..=b'~' => {}
                    _ => return Err(bad("invalid chunk extension")),
                },
                SizeLf => {
                    if c != b'\n' {
                        return Err(bad("chunk size line without CR LF"));
                    }
                    self.line = 0;
                    if self.size == 0 {
                        self.state = TrailerStart;
                    } else {
                        self.total = self.total.saturating_add(self.size);
                        if self.total > max {
                            return Err(Refusal::new(
                                "413 Request Entity Too Large",
                                "The data value transmitted exceeds the capacity limit.",
                            ));
                        }
                        self.state = Data;
                    }
                }
                DataCr if c == b'\r' => self.state = DataLf,
                DataLf if c == b'\n' => {
                    self.state = Size;
                    self.size = 0;
                }
                DataCr | DataLf => return Err(bad("chunk data not followed by CR LF")),
                TrailerStart => match c {
                    b'\r' => self.state = FinalLf,
                    b'\n' => return Err(bad("a trailer line ends in a bare LF")),
                    _ => {
                        self.line += 1;
                        self.state = Trailer;
                    }
                },
                Trailer => match c {
                    b'\r' => self.state = TrailerLf,
                    b'\n' => return Err(bad("a trailer line ends in a bare LF")),
                    _ => {}
                },
                TrailerLf if c == b'\n' => self.state = TrailerStart,
                FinalLf if c == b'\n' => self.state = Done,
                TrailerLf | FinalLf => return Err(bad("a bare CR in the trailers")),
                Done => {}
            }
            i += 1;
        }
        Ok(i)
    }
}

/// What the front needs of a response head from tiny_http.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The status line and header fields but Content-Length (kept in an
    /// answer to HEAD) and Connection, CR LF between them, none at the end.
    pub head: Vec<u8>,
    /// The body's length (0 when there is none).
    pub length: u64,
}

/// Parse a response head from tiny_http (`head` ends with CR LF CR LF).
/// The API's answers always carry a Content-Length (`api::json_response`;
/// tiny_http's own are short and framed by it too); anything else is an
/// error. `to_head`: the request was HEAD, the answer has no body.
pub fn parse_response_head(head: &[u8], to_head: bool) -> io::Result<ResponseHead> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("API answer: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let mut out = ResponseHead {
        status,
        head: status_line.as_bytes().to_vec(),
        length: 0,
    };
    let mut framed = to_head || matches!(status, 100..=199 | 204 | 304);
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        if name.eq_ignore_ascii_case("content-length") {
            if !to_head {
                out.length = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad Content-Length"))?;
                framed = true;
                continue;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("a transfer coding"));
        } else if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.head.extend_from_slice(b"\r\n");
        out.head.extend_from_slice(line.as_bytes());
    }
    if !framed {
        return Err(bad("no Content-Length"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(buf: &[u8]) -> Result<Option<(usize, usize)>, Refusal> {
        HeadScanner::new().scan(buf)
    }

    fn head(s: &str) -> Result<Head, Refusal> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn scanner_finds_the_end_in_any_split() {
        let req = b"\r\nPOST /v1/commands HTTP/1.1\r\nHost: x\r\n\r\nbody";
        let end = req.len() - 4;
        for cut in 0..req.len() {
            let mut s = HeadScanner::new();
            let first = s.scan(&req[..cut]).unwrap();
            let got = first.or_else(|| s.scan(req).unwrap());
            assert_eq!(got, Some((2, end)), "cut at {cut}");
        }
        assert_eq!(scan_all(b"GET / HTTP/1.1\r\nHo").unwrap(), None);
    }

    #[test]
    fn scanner_refuses_bare_lf_stray_cr_and_long_heads() {
        for bad in [
            &b"GET / HTTP/1.1\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\rHost: x\r\n\r\n",
        ] {
            let e = scan_all(bad).unwrap_err();
            assert!(e.status.starts_with("400"), "{bad:?}: {e:?}");
        }
        let long = vec![b'A'; MAX_HEAD + 10];
        assert!(scan_all(&long).unwrap_err().status.starts_with("431"));
        let blank = b"\r\n".repeat(MAX_HEAD);
        assert!(scan_all(&blank).unwrap_err().status.starts_with("431"));
        // a head of exactly the limit passes
        let mut ok = b"GET / HTTP/1.1\r\nX: ".to_vec();
        ok.resize(MAX_HEAD - 4, b'a');
        ok.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan_all(&ok).unwrap(), Some((0, ok.len())));
        assert!(parse_head(&ok).is_ok());
    }

    #[test]
    fn canonical_heads() {
        let h = head(
            "POST /v1/commands/?wait=true HTTP/1.1\r\nHost: a:1\r\nConnection: keep-alive\r\n\
             Content-Type: application/json\r\ncontent-length: 5\r\nExpect: 100-continue\r\n\
             Upgrade: h2c\r\nTE: trailers\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive && h.expect_continue);
        assert_eq!(
            String::from_utf8(h.canonical(5)).unwrap(),
            "POST /v1/commands/?wait=true HTTP/1.1\r\nHost: a:1\r\n\
             Content-Type: application/json\r\nContent-Length: 5\r\n\r\n"
        );
        let h = head("GET /v1/status HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (h.minor, h.keep_alive, h.framing),
            (0, false, Framing::None)
        );
        assert_eq!(h.canonical(0), b"GET /v1/status HTTP/1.1\r\n\r\n");
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        // HTTP/1.2 is answered as 1.1 (RFC 9110 §6.2)
        assert_eq!(head("GET / HTTP/1.2\r\n\r\n").unwrap().minor, 1);
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            h.canonical(3),
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
        );
        let h = head("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\nX:  y \r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(7));
        assert_eq!(h.fields, b"X: y\r\n");
    }

    #[test]
    fn hostile_heads_are_refused() {
        let status = |s: &str| head(s).unwrap_err().status;
        for v in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/9.1"] {
            assert!(
                status(&format!("GET / {v}\r\n\r\n")).starts_with("505"),
                "{v}"
            );
        }
        for bad in [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 \r\n\r\n",
            "GET / HTTP/11\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\n\r\n\r\n",
        ] {
            assert!(status(bad).starts_with("400"), "{bad:?}");
        }
        for te in [
            "identity",
            "gzip, chunked",
            "chunked, chunked",
            "chunked, gzip",
            "",
        ] {
            let s = status(&format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n"
            ));
            assert!(s.starts_with("501"), "{te}: {s}");
        }
        assert!(status("POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n").starts_with("417"));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_FIELDS + 1)
        );
        assert!(status(&many).starts_with("431"));
        // a huge length is a length, refused by the body cap, not here
        let h = head("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(h.unwrap().framing, Framing::Length(u64::MAX));
        let r = String::from_utf8(Refusal::new("505 HTTP Version Not Supported", "x").response())
            .unwrap();
        assert!(
            r.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"),
            "{r}"
        );
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with(
            "{\"faultcode\":\"Server\",\"faultstring\":\"505 HTTP Version Not Supported: x\"}"
        ));
    }

    fn dechunk(input: &[u8], max: u64) -> Result<(Vec<u8>, usize, bool), Refusal> {
        let mut c = Chunked::new();
        let mut out = vec![];
        let used = c.feed(input, max, &mut |d| out.extend_from_slice(d))?;
        Ok((out, used, c.done()))
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET";
        let (out, used, done) = dechunk(body, 100).unwrap();
        assert_eq!(
            (out.as_slice(), used, done),
            (&b"hello0123456789"[..], body.len() - 3, true)
        );
        for cut in 0..=body.len() - 3 {
            let mut c = Chunked::new();
            let mut out = vec![];
            let a = c
                .feed(&body[..cut], 100, &mut |d| out.extend_from_slice(d))
                .unwrap();
            assert_eq!(a, cut);
            let b = c
                .feed(&body[cut..], 100, &mut |d| out.extend_from_slice(d))
                .unwrap();
            assert_eq!(
                (out.as_slice(), a + b, c.done()),
                (&b"hello0123456789"[..], body.len() - 3, true)
            );
        }
        let (_, _, done) = dechunk(b"5\r\nhel", 100).unwrap();
        assert!(!done);
    }

    #[test]
    fn hostile_chunked_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"0\r\nT: x\n\r\n",
            b"5;\x01\r\n",
        ] {
            let e = dechunk(bad, 100).unwrap_err();
            assert!(e.status.starts_with("400"), "{bad:?}: {e:?}");
        }
        let e = dechunk(b"65\r\n", 100).unwrap_err();
        assert!(e.status.starts_with("413"), "{e:?}");
        let e = dechunk(b"ffffffffffffffff\r\n", u64::MAX - 1).unwrap_err();
        assert!(e.status.starts_with("413"), "{e:?}");
        let long = [b"1;".as_slice(), &[b'x'; 2000]].concat();
        assert!(dechunk(&long, 100).unwrap_err().status.starts_with("400"));
    }

    #[test]
    fn response_heads() {
        let h = |b: &[u8], to_head| parse_response_head(b, to_head).unwrap();
        let r = h(
            b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 12\r\nConnection: x\r\n\r\n",
            false,
        );
        assert_eq!((r.status, r.length), (200, 12));
        assert_eq!(r.head, b"HTTP/1.1 200 OK\r\nServer: t");
        let r = h(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true);
        assert_eq!(
            (r.length, r.head.as_slice()),
            (0, &b"HTTP/1.1 200 OK\r\nContent-Length: 12"[..])
        );
        let r = h(b"HTTP/1.1 100 Continue\r\n\r\n", false);
        assert_eq!((r.status, r.length), (100, 0));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nServer: t\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse_response_head(bad, false).is_err());
        }
    }
}
