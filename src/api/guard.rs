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
pub const MAX_HEAD: usize = 16 * 1024;
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
    pub fn new(status: &'static str, why: impl std::fmt::Display) -> Refusal {
        Refusal {
            status,
            faultstring: format!("{status}: {why}"),
        }
    }

    fn bad(why: impl std::fmt::Display) -> Refusal {
        Refusal::new("400 Bad Request", why)
    }

    /// The whole HTTP response, with IPA's `{faultcode, faultstring}` body.
    pub fn response(&self) -> Vec<u8> {
        let code = if self.status.starts_with('5') {
            "Server"
        } else {
            "Client"
        };
        let body =
            serde_json::json!({"faultcode": code, "faultstring": self.faultstring}).to_string();
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
    /// A response body that runs until the connection closes.
    UntilClose,
}

/// A request head that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// The client's HTTP/1.x minor version (0 or 1; 1.2–1.9 count as 1).
    pub minor: u8,
    /// End-to-end header fields in order; framing and hop-by-hop fields
    /// (Connection, Content-Length, Transfer-Encoding, Expect, ...) are
    /// not among them.
    pub fields: Vec<(String, String)>,
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
        let mut out = Vec::with_capacity(64 + self.target.len() + 32 * self.fields.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
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
        format!("the request line and headers exceed {MAX_HEAD} bytes"),
    )
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_tchar(c))
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
    let mut lines = head.split(|&c| c == b'\n').map(|l| {
        // every LF must close a CR LF; the last line had its CR LF stripped
        l.strip_suffix(b"\r").unwrap_or(l)
    });
    // bare LFs and stray CRs (split above only on LF)
    if head.iter().enumerate().any(|(i, &c)| {
        (c == b'\n' && (i == 0 || head[i - 1] != b'\r'))
            || c == b'\r' && head.get(i + 1) != Some(&b'\n')
    }) {
        return Err(Refusal::bad("a line ends in a bare LF or CR"));
    }
    let line = lines.next().unwrap_or_default();
    if !line
        .iter()
        .all(|&c| c == b' ' || (0x21..=0x7e).contains(&c))
    {
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
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let (mut close, mut keep_alive_token) = (false, false);
    let mut expect_continue = false;
    for line in lines {
        if fields.len() >= MAX_FIELDS {
            return Err(Refusal::new(
                "431 Request Header Fields Too Large",
                format!("more than {MAX_FIELDS} header fields"),
            ));
        }
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            return Err(Refusal::bad("obsolete line folding in a header field"));
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(Refusal::bad("a header line without a colon"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if !is_token(name) {
            return Err(Refusal::bad("malformed header field name"));
        }
        if !value
            .iter()
            .all(|&c| c == b' ' || c == b'\t' || (0x21..=0x7e).contains(&c))
        {
            return Err(Refusal::bad(
                "a header field value holds a byte that is not printable ASCII",
            ));
        }
        // all ASCII now
        let name = String::from_utf8_lossy(name).into_owned();
        let value = String::from_utf8_lossy(value)
            .trim_matches([' ', '\t'])
            .to_string();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                for v in value.split(',').map(|v| v.trim_matches([' ', '\t'])) {
                    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(Refusal::bad(format!("invalid Content-Length {v:?}")));
                    }
                    // more digits than u64 holds: far beyond any cap
                    let n = v.parse::<u64>().unwrap_or(u64::MAX);
                    if length.is_some_and(|l| l != n) {
                        return Err(Refusal::bad("conflicting Content-Length values"));
                    }
                    length = Some(n);
                }
            }
            "transfer-encoding" => {
                for c in value.split(',').map(|c| c.trim_matches([' ', '\t'])) {
                    codings.push(c.to_ascii_lowercase());
                }
            }
            "connection" => {
                for t in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                    if t.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case("keep-alive") {
                        keep_alive_token = true;
                    }
                }
            }
            "expect" => {
                if value.eq_ignore_ascii_case("100-continue") {
                    expect_continue = true;
                } else {
                    return Err(Refusal::new(
                        "417 Expectation Failed",
                        format!("unsupported expectation {value:?}"),
                    ));
                }
            }
            // hop-by-hop: the front is the client's peer, not tiny_http
            "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade" => {}
            _ => fields.push((name, value)),
        }
    }
    let framing = match (codings.is_empty(), length) {
        (true, None) | (true, Some(0)) => Framing::None,
        (true, Some(n)) => Framing::Length(n),
        (false, Some(_)) => {
            return Err(Refusal::bad(
                "both Transfer-Encoding and Content-Length frame the body",
            ))
        }
        (false, None) if minor == 0 => {
            return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (false, None) if codings == ["chunked"] => Framing::Chunked,
        (false, None) => {
            return Err(Refusal::new(
                "501 Not Implemented",
                "the only transfer coding accepted is chunked",
            ))
        }
    };
    Ok(Head {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
        fields,
        framing,
        keep_alive: !close && (minor == 1 || keep_alive_token),
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
        let bad = |why: &str| Refusal::bad(format!("malformed chunked body: {why}"));
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
    /// The header fields but the framing ones (and Connection); a HEAD
    /// answer keeps its Content-Length.
    pub fields: Vec<(String, String)>,
    pub framing: Framing,
}

/// Parse a response head from tiny_http. `to_head`: the request was HEAD
/// (no body whatever the fields say).
pub fn parse_response_head(head: &[u8], to_head: bool) -> io::Result<ResponseHead> {
    let bad =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("API response: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let mut fields = Vec::new();
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| bad("bad Content-Length"))?,
            );
            if to_head {
                fields.push((name.to_string(), value.to_string()));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
            if !chunked {
                return Err(bad("unknown transfer coding"));
            }
        } else if !name.eq_ignore_ascii_case("connection") {
            fields.push((name.to_string(), value.to_string()));
        }
    }
    let framing = if to_head || matches!(status, 100..=199 | 204 | 304) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(ResponseHead {
        status,
        fields,
        framing,
    })
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
        assert_eq!(h.fields, [("X".to_string(), "y".to_string())]);
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
            b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 12\r\n\r\n",
            false,
        );
        assert_eq!((r.status, r.framing), (200, Framing::Length(12)));
        assert_eq!(r.fields, [("Server".to_string(), "t".to_string())]);
        let r = h(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true);
        assert_eq!(r.framing, Framing::None);
        assert_eq!(r.fields, [("Content-Length".to_string(), "12".to_string())]);
        let r = h(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, Framing::Chunked);
        let r = h(b"HTTP/1.1 100 Continue\r\n\r\n", false);
        assert_eq!((r.status, r.framing), (100, Framing::None));
        let r = h(b"HTTP/1.1 200 OK\r\nServer: t\r\n\r\n", false);
        assert_eq!(r.framing, Framing::UntilClose);
        assert!(parse_response_head(b"garbage\r\n\r\n", false).is_err());
    }
}
