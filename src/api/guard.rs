//! The front's request filter: what reaches tiny_http is whole request
//! heads of bounded size, each followed by exactly the body its
//! Content-Length announces, within the agent's body cap.
//!
//! Why in front of tiny_http 0.12 rather than in the handler: tiny_http
//! reads a request line or header of any length into memory, and when a
//! request is dropped with its body unread it drains the rest with
//! `vec![0; remaining]` (`util/equal_reader.rs`), sized by the client's
//! Content-Length: one request claiming 99999999999999 bytes aborts the
//! process on the allocation (tiny-http PR #290, never merged). Both happen
//! before any handler runs, for unauthenticated requests too. Requests the
//! filter refuses are answered by the front itself, with IPA's fault body,
//! and the connection is closed.

/// Longest request head (request line and headers) passed on. cheroot,
/// which IPA serves with, allows 64 KiB by default; Ironic's heads are a
/// few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// A request the front answers itself before closing the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub faultstring: String,
}

impl Refusal {
    fn new(status: &'static str, faultstring: impl Into<String>) -> Refusal {
        Refusal {
            status,
            faultstring: faultstring.into(),
        }
    }

    /// The whole HTTP response, with IPA's `{faultcode, faultstring}` body.
    pub fn response(&self) -> Vec<u8> {
        let body =
            serde_json::json!({"faultcode": "Client", "faultstring": self.faultstring}).to_string();
        format!(
            "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// Bodies up to this size are held with their head and passed on only when
/// complete, so a client that announces a body and never sends it never
/// reaches the API thread at all. Bigger bodies (an inline configdrive)
/// stream, under the front's time limits.
pub const HOLD: u64 = 256 * 1024;

#[derive(Debug)]
pub struct Guard {
    max_body: u64,
    head: Vec<u8>,
    /// A complete head (and the body so far) held until the body is whole.
    held: Vec<u8>,
    /// Body bytes of the current request still to come (held or passed).
    body_left: u64,
}

impl Guard {
    pub fn new(max_body: u64) -> Guard {
        Guard {
            max_body,
            head: Vec::new(),
            held: Vec::new(),
            body_left: 0,
        }
    }

    /// In the middle of a request (a partial head or an unfinished body):
    /// the front then allows only a short stall instead of the idle time.
    pub fn mid_request(&self) -> bool {
        !self.head.is_empty() || self.body_left > 0
    }

    /// A request whose head tiny_http already has and whose body is still
    /// coming: an answer from the API now means the body will not be read.
    pub fn streaming_body(&self) -> bool {
        self.body_left > 0 && self.held.is_empty()
    }

    /// Pass client bytes: what may go to tiny_http is appended to `out`; a
    /// refusal ends the connection (whatever `out` holds is still sent
    /// first: earlier pipelined requests are whole).
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = (self.body_left.min(data.len() as u64)) as usize;
                if self.held.is_empty() {
                    out.extend_from_slice(&data[..n]);
                } else {
                    self.held.extend_from_slice(&data[..n]);
                }
                self.body_left -= n as u64;
                data = &data[n..];
                if self.body_left == 0 {
                    out.append(&mut self.held);
                }
                continue;
            }
            // a head: look for its end in what is held plus the new bytes
            let scan_from = self.head.len().saturating_sub(3);
            let room = MAX_HEAD + 4 - self.head.len();
            let take = data.len().min(room);
            self.head.extend_from_slice(&data[..take]);
            match find(&self.head[scan_from..], b"\r\n\r\n") {
                Some(i) => {
                    let end = scan_from + i + 4;
                    let used = end - (self.head.len() - take);
                    self.head.truncate(end);
                    self.body_left = self.check_head()?;
                    if self.body_left == 0 || self.body_left > HOLD {
                        out.append(&mut self.head);
                    } else {
                        std::mem::swap(&mut self.held, &mut self.head);
                    }
                    data = &data[used..];
                }
                None if self.head.len() > MAX_HEAD => {
                    return Err(Refusal::new(
                        "431 Request Header Fields Too Large",
                        format!(
                            "431 Request Header Fields Too Large: the request line and \
                             headers exceed {MAX_HEAD} bytes"
                        ),
                    ))
                }
                None => data = &data[take..],
            }
        }
        Ok(())
    }

    /// The body length of a complete head, or why it is refused.
    fn check_head(&self) -> Result<u64, Refusal> {
        let text = String::from_utf8_lossy(&self.head);
        let mut length: Option<u64> = None;
        for line in text.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding")
                && !value.eq_ignore_ascii_case("identity")
            {
                // A chunked body has no length to check in advance; every
                // client Ironic uses sends Content-Length.
                return Err(Refusal::new(
                    "411 Length Required",
                    "411 Length Required: send the request body with a Content-Length",
                ));
            }
            if name.eq_ignore_ascii_case("content-length") {
                let n: u64 = value.parse().map_err(|_| {
                    Refusal::new(
                        "400 Bad Request",
                        format!("400 Bad Request: invalid Content-Length {value:?}"),
                    )
                })?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::new(
                        "400 Bad Request",
                        "400 Bad Request: conflicting Content-Length headers",
                    ));
                }
                length = Some(n);
            }
        }
        let n = length.unwrap_or(0);
        if n > self.max_body {
            return Err(Refusal::new(
                "413 Request Entity Too Large",
                super::TOO_LARGE,
            ));
        }
        Ok(n)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(g: &mut Guard, parts: &[&[u8]]) -> Result<Vec<u8>, Refusal> {
        let mut out = vec![];
        for p in parts {
            g.feed(p, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn whole_requests_pass_in_any_split() {
        let req: &[u8] = b"POST /v1/commands HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhelloGET /v1/status HTTP/1.1\r\n\r\n";
        for cut in 0..req.len() {
            let mut g = Guard::new(100);
            let out = pass(&mut g, &[&req[..cut], &req[cut..]]).unwrap();
            assert_eq!(out, req, "cut at {cut}");
            assert!(!g.mid_request());
        }
        // byte by byte
        let mut g = Guard::new(100);
        let parts: Vec<&[u8]> = req.chunks(1).collect();
        assert_eq!(pass(&mut g, &parts).unwrap(), req);
    }

    #[test]
    fn a_partial_head_is_held_and_mid_request() {
        let mut g = Guard::new(100);
        let out = pass(&mut g, &[b"GET /v1/status HTTP/1.1\r\nHo"]).unwrap();
        assert!(out.is_empty());
        assert!(g.mid_request());
        // a small body is held with its head until complete
        let mut g = Guard::new(100);
        let out = pass(
            &mut g,
            &[b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"],
        )
        .unwrap();
        assert!(out.is_empty());
        assert!(g.mid_request(), "body unfinished");
        assert!(!g.streaming_body());
        let out = pass(&mut g, &[b"defghi"]).unwrap();
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabcdefghi"
        );
        // a big one streams behind its head
        let mut g = Guard::new(1 << 30);
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", HOLD + 1);
        let out = pass(&mut g, &[head.as_bytes(), b"abc"]).unwrap();
        assert_eq!(out, [head.as_bytes(), b"abc"].concat());
        assert!(g.streaming_body());
    }

    #[test]
    fn hostile_heads_are_refused() {
        let mut g = Guard::new(1 << 20);
        let e = pass(
            &mut g,
            &[b"GET /v1/status HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n"],
        )
        .unwrap_err();
        assert!(e.status.starts_with("413"));
        let r = String::from_utf8(e.response()).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
            "{r}"
        );
        assert!(r.contains("Connection: close"));
        assert!(r.ends_with(&format!(
            "{{\"faultcode\":\"Client\",\"faultstring\":\"{}\"}}",
            super::super::TOO_LARGE
        )));

        let long = vec![b'A'; MAX_HEAD + 10];
        let e = pass(&mut Guard::new(10), &[&long]).unwrap_err();
        assert!(e.status.starts_with("431"));
        let e = pass(
            &mut Guard::new(10),
            &[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"],
        )
        .unwrap_err();
        assert!(e.status.starts_with("411"));
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let e = pass(&mut Guard::new(10), &[bad]).unwrap_err();
            assert!(e.status.starts_with("400"), "{e:?}");
        }
        // a head of exactly the limit passes
        let mut ok = b"GET / HTTP/1.1\r\nX: ".to_vec();
        ok.resize(MAX_HEAD - 4, b'a');
        ok.extend_from_slice(b"\r\n\r\n");
        assert_eq!(pass(&mut Guard::new(10), &[&ok]).unwrap(), ok);
    }

    #[test]
    fn requests_before_a_refused_one_still_pass() {
        let mut g = Guard::new(10);
        let mut out = vec![];
        let e = g.feed(
            b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 11\r\n\r\n",
            &mut out,
        );
        assert!(e.is_err());
        assert_eq!(out, b"GET /a HTTP/1.1\r\n\r\n");
    }
}
