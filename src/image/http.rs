//! An image body over plain HTTP read straight from the socket into the
//! caller's (aligned) buffers (issue 19).
//!
//! ureq reads a body into its own 128 KiB input buffer and copies it from
//! there into ours (ureq-proto `body.rs` `read_limit`): one memcpy of every
//! image byte, ~0.1 CPU-s per GiB, on the thread that sets a deploy's pace
//! on two cores (benches/RESULTS.md). No setting of ureq's avoids it, so for
//! the one case that carries whole images -- `http://`, no proxy, no
//! userinfo -- this module sends the GET itself and `recv`s the body into
//! the buffer it is given. HTTPS and proxies stay with ureq, and so do
//! redirects: for a 3xx answer [`get`] says `Ok(None)` and the caller asks
//! ureq, which follows it. Error answers are read here and worded by the
//! caller as the ureq path words them (IPA's text).
//!
//! Bodies are framed by Content-Length, chunked coding or the connection's
//! end. The chunked decoder here is not the API front's
//! (`api::guard::Chunked`, a layer above, push-based over bytes already
//! read): this one peeks at each chunk-size line and reads a chunk's data
//! straight into the caller's buffer, so chunked bodies also go uncopied.
//!
//! The request is HTTP/1.1 with `Connection: close` (the connection is not
//! pooled: one per image or per resume). Timeouts are the caller's: one for
//! the connect, the request, the head and each read of the body (as ureq's
//! `timeout_per_read`); a timeout reads "timeout: ..." as ureq's does, which
//! the download's retry logic turns into IPA's stall message.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// A parsed response head.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, CR LF CR LF included.
    pub len: usize,
}

/// The value of header field `name` (lower-case) in `fields`.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    /// How the body is delimited (RFC 9112 §6.3): no body for 204 and
    /// 304; chunked when Transfer-Encoding ends in chunked (another coding
    /// alone: to the connection's end); else Content-Length (several equal
    /// values allowed, as by the RFC; differing ones refused); else to the
    /// connection's end.
    pub fn framing(&self) -> io::Result<Framing> {
        if self.status == 204 || self.status == 304 {
            return Ok(Framing::Length(0));
        }
        if let Some(te) = self.header("transfer-encoding") {
            let last = te.rsplit(',').next().unwrap_or("").trim();
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                Framing::Chunked {
                    left: 0,
                    done: false,
                }
            } else {
                Framing::Close
            });
        }
        let mut len = None;
        for (n, v) in &self.headers {
            if n != "content-length" {
                continue;
            }
            for v in v.split(',').map(str::trim) {
                let l = Some(v)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| bad("an invalid Content-Length"))?;
                if len.is_some_and(|x| x != l) {
                    return Err(bad("differing Content-Length values"));
                }
                len = Some(l);
            }
        }
        Ok(len.map_or(Framing::Close, Framing::Length))
    }
}

/// How a body ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// `left` bytes of the current chunk to read; `done` after the last.
    Chunked { left: u64, done: bool },
    /// When the server closes the connection.
    Close,
}

/// Parse a response head from the start of `buf`: `Ok(None)` while it is
/// incomplete, an error for one that is not HTTP/1.x.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(bad("a response head longer than 64 KiB"))
        } else {
            Ok(None)
        };
    };
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| bad("a response head that is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !(version == "HTTP/1.1" || version == "HTTP/1.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("not an HTTP/1.x status line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            return Err(bad("a malformed header line"));
        };
        if n.is_empty() || n.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("a malformed header name"));
        }
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Some(Head {
        status: code.parse().unwrap_or(0),
        headers,
        len: end + 4,
    }))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Map the socket's timeout (EAGAIN from SO_RCVTIMEO/SO_SNDTIMEO) to
/// ureq's wording.
fn timed(e: io::Error, what: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, what)
        }
        _ => e,
    }
}

/// A body being read: what came with the head, then the socket, never
/// past its framing. Data is read from the socket straight into the
/// caller's buffer; only chunk-size lines are read apart, through a peek.
pub struct Body {
    sock: TcpStream,
    prefix: Vec<u8>,
    at: usize,
    framing: Framing,
}

/// The longest chunk-size or trailer line accepted, and the most trailer
/// lines.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64;

impl Body {
    /// Bytes of the body's wire form: the prefix first, then the socket.
    fn raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.at);
            buf[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.sock
            .read(buf)
            .map_err(|e| timed(e, "timeout: per read"))
    }

    /// One line of the chunked framing, without its CR LF. The socket is
    /// peeked first so that no byte after the line is taken out of it.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        while line.last() != Some(&b'\n') {
            if line.len() > MAX_LINE {
                return Err(bad("a chunked-body line longer than 4 KiB"));
            }
            if self.at < self.prefix.len() {
                line.push(self.prefix[self.at]);
                self.at += 1;
                continue;
            }
            let mut peek = [0u8; 64];
            let n = self
                .sock
                .peek(&mut peek)
                .map_err(|e| timed(e, "timeout: per read"))?;
            if n == 0 {
                return Err(closed(
                    "the server closed the connection inside the chunked framing",
                ));
            }
            let take = peek[..n]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(n, |i| i + 1);
            // the peeked bytes are in the socket's buffer: this takes them
            let mut got = 0;
            while got < take {
                match self.sock.read(&mut peek[got..take]) {
                    Ok(0) => return Err(closed("the server closed the connection mid-line")),
                    Ok(k) => got += k,
                    Err(e) => return Err(timed(e, "timeout: per read")),
                }
            }
            line.extend_from_slice(&peek[..take]);
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }
}

fn closed(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

/// A chunk-size line: hex digits, then optional `;extensions`.
pub fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = std::str::from_utf8(&line[..end])
        .ok()
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    hex.and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| bad("an invalid chunk-size line"))
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            // a short count (0 included: the server closed early) is the
            // caller's to judge against Content-Length
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                let n = self.raw(&mut buf[..want])?;
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::Close => self.raw(buf),
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { mut left, .. } => {
                if left == 0 {
                    left = chunk_size(&self.line()?)?;
                    if left == 0 {
                        // the last chunk: trailers up to an empty line
                        let mut n = 0;
                        while !self.line()?.is_empty() {
                            n += 1;
                            if n > MAX_TRAILERS {
                                return Err(bad("more than 64 trailer lines"));
                            }
                        }
                        self.framing = Framing::Chunked { left, done: true };
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.raw(&mut buf[..want])?;
                if n == 0 {
                    return Err(closed("the server closed the connection inside a chunk"));
                }
                left -= n as u64;
                if left == 0 && !self.line()?.is_empty() {
                    return Err(bad("a chunk longer than its size line"));
                }
                self.framing = Framing::Chunked { left, done: false };
                Ok(n)
            }
        }
    }
}

/// An answer this path reads itself.
pub struct Response {
    pub head: Head,
    /// The body's length when the framing gives it.
    pub length: Option<u64>,
    pub body: Body,
}

/// The parts of an `http://` URL this path serves: host (brackets kept
/// for IPv6, as the Host header wants), port and the request target.
/// `None` for anything else (HTTPS, userinfo, no host).
pub fn plain_target(url: &str) -> Option<(String, u16, String)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    if !uri.scheme_str()?.eq_ignore_ascii_case("http") {
        return None;
    }
    let auth = uri.authority()?;
    if auth.as_str().contains('@') {
        return None;
    }
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    Some((
        auth.host().to_string(),
        auth.port_u16().unwrap_or(80),
        target.to_string(),
    ))
}

/// GET `url` (see [`plain_target`]) with `headers`. `Ok(None)`: the answer
/// is not one this path reads (the connection is dropped; the caller asks
/// ureq). Errors are the connection's; a timed-out connect reads "timeout:
/// connect".
pub fn get(url: &str, headers: &[(&str, String)], limit: Duration) -> io::Result<Option<Response>> {
    let Some((host, port, target)) = plain_target(url) else {
        return Ok(None);
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = None;
    let mut sock = None;
    for addr in (bare, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(timed(e, "timeout: connect")),
        }
    }
    let Some(mut sock) = sock else {
        return Err(last.unwrap_or_else(|| bad("the host resolves to no address")));
    };
    sock.set_read_timeout(Some(limit))?;
    sock.set_write_timeout(Some(limit))?;
    let host_header = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ironic-agent/{}\r\n\
         Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (n, v) in headers {
        if v.contains(['\r', '\n']) {
            return Err(bad("a request header holds a line break"));
        }
        for piece in [n, ": ", v, "\r\n"] {
            req.push_str(piece);
        }
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes())
        .map_err(|e| timed(e, "timeout: send request"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let head = loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = sock
            .read(&mut buf[have..])
            .map_err(|e| timed(e, "timeout: receive response"))?;
        if n == 0 {
            return Err(closed(
                "the server closed the connection before its response head",
            ));
        }
        have += n;
        if let Some(h) = parse_head(&buf[..have])? {
            break h;
        }
    };
    // redirects (ureq follows them) and interim answers
    if (100..200).contains(&head.status) || (300..400).contains(&head.status) && head.status != 304
    {
        return Ok(None);
    }
    let framing = head.framing()?;
    let length = match framing {
        Framing::Length(l) => Some(l),
        _ => None,
    };
    buf.truncate(have);
    buf.drain(..head.len);
    if let Some(l) = length {
        buf.truncate(usize::try_from(l).unwrap_or(usize::MAX));
    }
    Ok(Some(Response {
        head,
        length,
        body: Body {
            sock,
            prefix: buf,
            at: 0,
            framing,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap(), None);
        let h =
            parse_head(b"HTTP/1.1 206 Partial\r\nContent-Length: 10\r\nETag:  \"x\" \r\n\r\nbody")
                .unwrap()
                .unwrap();
        assert_eq!(h.status, 206);
        assert_eq!(h.header("etag"), Some("\"x\""));
        assert_eq!(h.len, 57);
        assert_eq!(h.framing().unwrap(), Framing::Length(10));
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn framings() {
        let f = |head: &str| parse_head(head.as_bytes()).unwrap().unwrap().framing();
        let chunked = Framing::Chunked {
            left: 0,
            done: false,
        };
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 204 No\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Length(0)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap(),
            chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
                .unwrap(),
            chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap(),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.0 200 OK\r\n\r\n").unwrap(), Framing::Close);
        for h in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert!(f(h).is_err(), "{h}");
        }
        assert_eq!(chunk_size(b"1a;name=v").unwrap(), 26);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        for bad in [&b""[..], b"x", b"-1", b"1000000000000000", b"\xff"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            plain_target("http://h:8080/a/b?c=d"),
            Some(("h".into(), 8080, "/a/b?c=d".into()))
        );
        assert_eq!(plain_target("http://h"), Some(("h".into(), 80, "/".into())));
        assert_eq!(
            plain_target("HTTP://[fd00::1]/i"),
            Some(("[fd00::1]".into(), 80, "/i".into()))
        );
        assert_eq!(plain_target("https://h/i"), None);
        assert_eq!(plain_target("http://u:p@h/i"), None);
        assert_eq!(plain_target("ftp://h/i"), None);
    }

    /// A one-connection server on 127.0.0.1 that answers `reply` in
    /// pieces of `step` bytes (so framing lines and heads arrive split),
    /// then closes; returns the URL and the request it received.
    fn serve(reply: Vec<u8>, step: usize) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/img?x=1",
            l.local_addr().unwrap().port()
        );
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = vec![];
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&b[..n]);
            }
            // the client may stop reading early (past Content-Length, at
            // a framing error): then writes fail, which is fine here
            for piece in reply.chunks(step) {
                if s.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            String::from_utf8(req).unwrap()
        });
        (url, t)
    }

    /// Status and length (`None` when the answer was left to ureq), body.
    type Fetched = (Option<(u16, Option<u64>)>, io::Result<Vec<u8>>);

    fn fetch(reply: &[u8], step: usize) -> Fetched {
        let (url, t) = serve(reply.to_vec(), step);
        let r = get(
            &url,
            &[("Range", "bytes=0-".into())],
            Duration::from_secs(5),
        )
        .unwrap();
        let out = r.map(|mut r| {
            let mut v = vec![];
            let got = r.body.read_to_end(&mut v).map(|_| v);
            ((r.head.status, r.length), got)
        });
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /img?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
                && req.contains("\r\nRange: bytes=0-\r\n")
                && req.contains("\r\nAccept-Encoding: identity\r\n"),
            "{req}"
        );
        match out {
            Some((s, b)) => (Some(s), b),
            None => (None, Ok(vec![])),
        }
    }

    #[test]
    fn bodies_by_their_framing() {
        for step in [1, 7, 4096] {
            let (s, b) = fetch(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
                step,
            );
            assert_eq!((s, b.unwrap()), (Some((200, Some(5))), b"hello".to_vec()));
            let (s, b) = fetch(
                b"HTTP/1.1 206 P\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n1\r\n \r\n\
                  6\r\nworld!\r\n0\r\nX-Trailer: y\r\n\r\n",
                step,
            );
            assert_eq!(
                (s, b.unwrap()),
                (Some((206, None)), b"hello world!".to_vec())
            );
            let (s, b) = fetch(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", step);
            assert_eq!(
                (s, b.unwrap()),
                (Some((200, None)), b"until the end".to_vec())
            );
            // cut short: the caller sees fewer bytes than Content-Length
            let (_, b) = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", step);
            assert_eq!(b.unwrap(), b"short".to_vec());
            let (_, b) = fetch(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nshort",
                step,
            );
            assert_eq!(b.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            let (_, b) = fetch(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                step,
            );
            assert_eq!(b.unwrap_err().kind(), io::ErrorKind::InvalidData);
            let (_, b) = fetch(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                step,
            );
            assert_eq!(b.unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
        // an error answer is read here too (its text is the caller's);
        // a redirect is left to ureq
        let (s, b) = fetch(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
            4096,
        );
        assert_eq!((s, b.unwrap()), (Some((404, Some(4))), b"nope".to_vec()));
        let (s, _) = fetch(
            b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
            4096,
        );
        assert_eq!(s, None);
    }

    #[test]
    fn a_silent_server_times_out_as_ureq_says() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        let e = get(&url, &[], Duration::from_millis(200)).err().unwrap();
        assert_eq!(e.to_string(), "timeout: receive response");
        drop(l);
    }
}
