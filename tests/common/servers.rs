//! HTTP servers the tests point the agent at, all on 127.0.0.1:0 in the
//! test process:
//!
//! - [`ImageServer`]: an image server that serves Range requests and
//!   misbehaves on demand (answers 4xx/5xx, drops the connection
//!   mid-body, stalls, ignores Range, wants an Authorization header): a
//!   plain TCP listener, one request per connection, so a dropped
//!   connection is a real one (tiny_http keeps the socket open when a
//!   response body fails, which looks like a stall to the client);
//! - [`keep_alive_server`]: a keep-alive image server (tiny_http) that
//!   records which connection served each request;
//! - [`stalling_server`]: holds its one request until told to answer;
//! - [`connect_proxy`]: an HTTP CONNECT proxy that records its tunnels;
//! - [`read_request`]: the request parser these and the fake Ironic
//!   (tests/common/ironic.rs) share.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------- requests

/// A request as read off the wire.
pub struct Request {
    pub method: String,
    /// The request target, query string included.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one HTTP/1.1 request: request line, headers, Content-Length body.
/// `None` when the peer closes or sends garbage first.
pub fn read_request(s: &mut dyn Read) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

// ---------------------------------------------------------------- image server

/// What the image server does with the next request for a path.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    /// Send this many body bytes, then drop the connection.
    DropAfter(usize),
    /// Send this many body bytes, then go silent for the duration.
    StallAfter(usize, Duration),
}

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// (path, Range header, Authorization header)
    log: Vec<(String, Option<String>, Option<String>)>,
    /// Answer Range requests with the whole file (200).
    no_range: bool,
    /// Require this Authorization header.
    auth: Option<String>,
}

/// An image server with faults on demand (see the module's doc).
pub struct ImageServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<State>>,
}

/// One request per connection (`Connection: close`), so that a fault can
/// really drop the connection mid-body.
fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let Some(req) = read_request(&mut sock) else {
        return;
    };
    let path = req.path().to_string();
    let range = req.header("range").map(str::to_string);
    let auth = req.header("authorization").map(str::to_string);
    let (file, fault, no_range, want_auth) = {
        let mut s = state.lock().unwrap();
        s.log.push((path.clone(), range.clone(), auth.clone()));
        let fault = s.faults.get_mut(&path).and_then(|q| q.pop_front());
        (
            s.files.get(&path).cloned(),
            fault,
            s.no_range,
            s.auth.clone(),
        )
    };
    let reply = |sock: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            sock,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if want_auth.is_some() && want_auth != auth {
        return reply(&mut sock, "401 Unauthorized", "who are you");
    }
    let Some(data) = file else {
        return reply(&mut sock, "404 Not Found", "no such image");
    };
    if let Some(Fault::Status(code)) = fault {
        return reply(&mut sock, &format!("{code} Oops"), "try later");
    }
    let len = data.len();
    let mut status = "200 OK";
    let (mut start, mut end) = (0, len);
    let mut headers = String::from("ETag: \"v1\"\r\n");
    if !no_range {
        headers.push_str("Accept-Ranges: bytes\r\n");
        if let Some(r) = range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            let (a, b) = r.split_once('-').unwrap();
            start = a.parse().unwrap();
            end = if b.is_empty() {
                len
            } else {
                (b.parse::<usize>().unwrap() + 1).min(len)
            };
            status = "206 Partial Content";
            headers.push_str(&format!(
                "Content-Range: bytes {start}-{}/{len}\r\n",
                end - 1
            ));
        }
    }
    let _ = write!(
        sock,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        end - start
    );
    let (cut, stall) = match fault {
        Some(Fault::DropAfter(n)) => (start + n, None),
        Some(Fault::StallAfter(n, d)) => (start + n, Some(d)),
        _ => (end, None),
    };
    let cut = cut.min(end);
    if sock.write_all(&data[start..cut]).is_err() {
        return;
    }
    match stall {
        Some(d) => {
            std::thread::sleep(d);
            let _ = sock.write_all(&data[cut..end]);
        }
        None if cut < end => {
            let _ = sock.flush();
            let _ = sock.shutdown(Shutdown::Both);
        }
        None => {}
    }
}

impl ImageServer {
    pub fn start() -> ImageServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for sock in l.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(sock, st));
            }
        });
        ImageServer { base, state }
    }

    /// Serve `data` at `path`; its URL.
    pub fn put(&self, path: &str, data: Vec<u8>) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.into(), Arc::new(data));
        format!("{}{path}", self.base)
    }

    /// Queue a fault for the next request for `path` not yet faulted.
    pub fn fault(&self, path: &str, f: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .entry(path.into())
            .or_default()
            .push_back(f);
    }

    /// From now on, answer Range requests with the whole file (200).
    pub fn ignore_range(&self) {
        self.state.lock().unwrap().no_range = true;
    }

    /// From now on, answer 401 unless the request's Authorization header
    /// is `header`.
    pub fn require_auth(&self, header: &str) {
        self.state.lock().unwrap().auth = Some(header.into());
    }

    /// (Range header, Authorization header) of every request for `path`.
    pub fn log(&self, path: &str) -> Vec<(Option<String>, Option<String>)> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, r, a)| (r.clone(), a.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------- keep-alive

/// (client port, was a Range request) of each request.
pub type Seen = Arc<Mutex<Vec<(u16, bool)>>>;

/// A keep-alive image server (tiny_http) that answers Range requests and
/// records the client port of every request: which connection served it.
/// Returns the image's URL.
pub fn keep_alive_server(data: Arc<Vec<u8>>) -> (String, Seen) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let client = req.remote_addr().map(|a| a.port()).unwrap_or(0);
            let range = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Range"))
                .and_then(|h| {
                    let v = h.value.as_str().strip_prefix("bytes=")?.to_string();
                    let (s, e) = v.split_once('-')?;
                    Some((s.parse::<usize>().ok()?, e.parse::<usize>().ok()?))
                });
            log.lock().unwrap().push((client, range.is_some()));
            let ranges = tiny_http::Header::from_bytes("Accept-Ranges", "bytes").unwrap();
            let resp = match range {
                Some((s, e)) => {
                    let e = e.min(data.len() - 1);
                    let cr = format!("bytes {s}-{e}/{}", data.len());
                    tiny_http::Response::from_data(data[s..=e].to_vec())
                        .with_status_code(206)
                        .with_header(tiny_http::Header::from_bytes("Content-Range", cr).unwrap())
                }
                None => tiny_http::Response::from_data(data.to_vec()),
            };
            let _ = req.respond(resp.with_header(ranges));
        }
    });
    (format!("http://127.0.0.1:{port}/img.qcow2"), seen)
}

// ---------------------------------------------------------------- stalling

/// A one-request HTTP server that holds the request until told to answer
/// (then 404): a stand-in image server for a long-running async command.
/// (A fake: the point is a command that stays RUNNING on demand, not the
/// download.) Returns its port and the sender that releases the request.
pub fn stalling_server() -> (u16, std::sync::mpsc::Sender<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let _ = rx.recv_timeout(Duration::from_secs(60));
            let _ = req.respond(tiny_http::Response::empty(404));
        }
    });
    (port, tx)
}

// ---------------------------------------------------------------- proxy

/// A minimal HTTP CONNECT proxy: its URL, and the request line of every
/// tunnel it was asked for ("CONNECT 127.0.0.1:PORT").
pub fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(vec![]));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = s2.clone();
            std::thread::spawn(move || {
                let mut c = c;
                let Some(req) = read_request(&mut c) else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method, req.target));
                let Ok(up) = TcpStream::connect(&req.target) else {
                    let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut a, mut b2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
                let (mut c2, mut up2) = (c, up);
                std::thread::spawn(move || {
                    let _ = io_copy(&mut a, &mut up2);
                });
                let _ = io_copy(&mut b2, &mut c2);
            });
        }
    });
    (url, seen)
}

fn io_copy(from: &mut TcpStream, to: &mut TcpStream) -> std::io::Result<u64> {
    let n = std::io::copy(from, to);
    let _ = to.shutdown(Shutdown::Write);
    n
}
