//! The agent's REST API (protocol §1) on a blocking tiny_http loop.
//!
//! One `match` routes every request (`route`); handlers compute a
//! [`Reply`] from the request and never respond themselves, so a panic in
//! a handler still gets an answer (500), and a request is never dropped
//! without one. `wait=true` on an async command is answered from a short
//! waiter thread so the loop keeps serving `GET /v1/commands/` meanwhile.
//!
//! Memory: a command's body is parsed as it is read, each string held
//! once ([`body`]), and its params are moved, never copied, into the
//! command; answers are serialized from where results are kept, in
//! pieces freed as tiny_http sends them on ([`Pieces`]).

pub mod body;
pub mod front;
pub mod guard;

use crate::agent::results::Entry;
use crate::agent::Agent;
use crate::commands;
use crate::logbuf::redact_url;
use crate::util;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// Werkzeug's texts, which IPA's error bodies carry.
const NOT_FOUND: &str = "404 Not Found: The requested URL was not found on the server. If you \
                         entered the URL manually please check your spelling and try again.";
const METHOD_NOT_ALLOWED: &str =
    "405 Method Not Allowed: The method is not allowed for the requested URL.";
const UNAUTHORIZED: &str = "401 Unauthorized: Token invalid.";
pub(crate) const TOO_LARGE: &str =
    "413 Request Entity Too Large: The data value transmitted exceeds the capacity limit.";

/// Longest a `wait=true` request is held. IPA waits without limit; Ironic
/// reads the answer with `[agent]command_timeout` (60 s by default, raised
/// by operators for slow hardware), so an hour covers any setting while
/// bounding the waiter thread. The front waits for the API as long.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(3600);
/// Concurrent `wait=true` waiters; beyond this the current state is returned.
const MAX_WAITERS: usize = 16;

static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// What to send back.
pub enum Reply {
    Json(u16, Value),
    /// A command result (200), written from where it is kept.
    Entry(Arc<Entry>),
    /// Every command result (200).
    List,
    /// Answer with the entry once it is no longer RUNNING.
    Wait(Arc<Entry>),
    Allow(&'static str),
}

fn fault(status: u16, faultstring: &str) -> Reply {
    let code = if status >= 500 { "Server" } else { "Client" };
    Reply::Json(
        status,
        json!({"faultcode": code, "faultstring": faultstring}),
    )
}

/// A parsed request target.
struct Target {
    path: String,
    query: Vec<(String, String)>,
}

impl Target {
    fn parse(url: &str) -> Target {
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        let query = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (util::percent_decode(k), util::percent_decode(v))
            })
            .collect();
        Target {
            path: util::percent_decode(path),
            query,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn wait(&self) -> bool {
        self.get("wait")
            .is_some_and(|w| w.eq_ignore_ascii_case("true"))
    }
}

/// The routes of IPA's `api/app.py`, versioned and unversioned, with and
/// without the trailing slash (IPA redirects; we answer both directly).
#[derive(Debug, PartialEq)]
enum Route {
    Root,
    V1,
    Status,
    Commands,
    Command(String),
    NotFound,
}

fn route_of(path: &str) -> Route {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segs.as_slice() {
        [] | [""] => Route::Root,
        ["v1"] => Route::V1,
        ["v1", "status"] | ["status"] => Route::Status,
        ["v1", "commands"] | ["commands"] => Route::Commands,
        ["v1", "commands", id] | ["commands", id] if !id.is_empty() => {
            Route::Command(id.to_string())
        }
        _ => Route::NotFound,
    }
}

/// `scheme://host[:port]` as the client addressed us (IPA's `url_root`).
fn url_root(req: &Request, scheme: &str) -> String {
    let host = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

fn version_doc(root: &str) -> Value {
    json!({
        "id": "v1",
        "links": [
            {"href": format!("{root}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org/ironic-python-agent", "rel": "describedby",
             "type": "text/html"}
        ]
    })
}

fn root_doc(root: &str) -> Value {
    json!({
        "name": "OpenStack Ironic Python Agent API",
        "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
        "versions": [version_doc(root)],
        "default_version": version_doc(root),
    })
}

fn v1_doc(root: &str) -> Value {
    let mut v = version_doc(root);
    let extra = json!({
        "commands": [
            {"href": format!("{root}/v1/commands/"), "rel": "self"},
            {"href": format!("{root}/commands/"), "rel": "bookmark"}
        ],
        "status": [
            {"href": format!("{root}/v1/status"), "rel": "self"},
            {"href": format!("{root}/status"), "rel": "bookmark"}
        ],
        "media_types": [
            {"base": "application/json",
             "type": "application/vnd.openstack.ironic-python-agent.v1+json"}
        ]
    });
    v.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    v
}

fn run_command(agent: &Arc<Agent>, req: &mut Request, target: &Target) -> Reply {
    let max = agent.config.max_request_body;
    // (the front already refused bodies over the cap and hands over the
    // whole body with its length)
    let doc = if req.body_length().is_some_and(|l| l as u64 > max) {
        Err(body::BodyError::TooLarge)
    } else {
        body::parse(req.as_reader(), max)
    };
    let doc = match doc {
        Ok(v) => v,
        Err(body::BodyError::TooLarge) => {
            crate::util::log_at!(Warn, "refusing a request body over {max} bytes");
            return fault(413, TOO_LARGE);
        }
        Err(body::BodyError::TooManyValues) => {
            crate::util::log_at!(
                Warn,
                "refusing a request body of more than {} JSON values",
                body::MAX_VALUES
            );
            return fault(413, TOO_LARGE);
        }
        Err(body::BodyError::Read(e)) => {
            return fault(
                400,
                &format!("400 Bad Request: reading the request body: {e}"),
            )
        }
        Err(body::BodyError::Json(e)) => {
            return fault(
                400,
                &format!("400 Bad Request: Failed to decode JSON object: {e}"),
            )
        }
    };
    // the params are moved out of the document, never copied (an inline
    // configdrive is tens of MiB)
    let Value::Object(mut doc) = doc else {
        return fault(400, "400 Bad Request: Missing or invalid name or params");
    };
    let (Some(Value::String(name)), Some(Value::Object(params))) =
        (doc.remove("name"), doc.remove("params"))
    else {
        return fault(400, "400 Bad Request: Missing or invalid name or params");
    };
    crate::util::log_at!(Info, "command {name} requested");
    match commands::execute(agent, &name, params) {
        Ok(entry) if target.wait() => Reply::Wait(entry),
        Ok(entry) => Reply::Entry(entry),
        Err(r) => fault(r.status, &r.faultstring),
    }
}

/// Route one request to a [`Reply`]. May read the body.
fn route(agent: &Arc<Agent>, req: &mut Request, scheme: &str) -> Reply {
    let target = Target::parse(req.url());
    let method = req.method().clone();
    let is_get = matches!(method, Method::Get | Method::Head);
    let r = route_of(&target.path);
    let token_ok = || agent.check_token(target.get("agent_token"));
    match r {
        Route::NotFound => fault(404, NOT_FOUND),
        Route::Root | Route::V1 | Route::Status | Route::Command(_) if !is_get => {
            Reply::Allow("GET, HEAD")
        }
        Route::Commands if !(is_get || method == Method::Post) => Reply::Allow("GET, HEAD, POST"),
        Route::Root => Reply::Json(200, root_doc(&url_root(req, scheme))),
        Route::V1 => Reply::Json(200, v1_doc(&url_root(req, scheme))),
        Route::Status => Reply::Json(
            200,
            json!({"started_at": agent.started_at, "version": env!("CARGO_PKG_VERSION")}),
        ),
        // The token check runs before the body is parsed (IPA).
        Route::Commands | Route::Command(_) if !token_ok() => fault(401, UNAUTHORIZED),
        Route::Commands if is_get => Reply::List,
        Route::Commands => run_command(agent, req, &target),
        Route::Command(id) => match agent.commands.get(&id) {
            None => fault(
                404,
                &format!("Not found: Command Result with id {id} not found."),
            ),
            Some(e) if target.wait() => Reply::Wait(e),
            Some(e) => Reply::Entry(e),
        },
    }
}

/// An answer's bytes in pieces, each freed as soon as tiny_http has sent
/// it on: a large answer (a log bundle) is not held whole on this side
/// while the front reads it whole on its own.
#[derive(Default)]
struct Pieces {
    pieces: std::collections::VecDeque<Vec<u8>>,
    at: usize,
    len: usize,
}

const PIECE: usize = 64 * 1024;

impl std::io::Write for Pieces {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let n = data.len();
        self.len += n;
        while !data.is_empty() {
            match self.pieces.back_mut() {
                Some(p) if p.len() < PIECE => {
                    let k = (PIECE - p.len()).min(data.len());
                    p.extend_from_slice(&data[..k]);
                    data = &data[k..];
                }
                _ => self.pieces.push_back(Vec::with_capacity(PIECE)),
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(p) = self.pieces.front() {
            if self.at < p.len() {
                let n = buf.len().min(p.len() - self.at);
                buf[..n].copy_from_slice(&p[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            self.pieces.pop_front();
            self.at = 0;
        }
        Ok(0)
    }
}

/// A JSON answer of what `write` writes.
fn json_answer(
    status: u16,
    write: impl FnOnce(&mut Pieces) -> std::io::Result<()>,
) -> Response<Pieces> {
    let mut data = Pieces::default();
    if let Err(e) = write(&mut data) {
        crate::util::log_at!(Error, "serializing an answer: {e}");
        data = Pieces::default();
        let _ = std::io::Write::write_all(&mut data, b"{}");
    }
    let len = data.len;
    Response::new(
        status.into(),
        vec![Header::from_bytes("Content-Type", "application/json").expect("header")],
        data,
        Some(len),
        None,
    )
    // always a Content-Length (tiny_http chunks from 32 KiB on): the
    // front frames the answer by it
    .with_chunked_threshold(usize::MAX)
}

fn json_response(status: u16, body: &Value) -> Response<Pieces> {
    json_answer(status, |w| {
        serde_json::to_writer(w, body).map_err(std::io::Error::from)
    })
}

fn respond(req: Request, status: u16, body: &Value) {
    if let Err(e) = req.respond(json_response(status, body)) {
        crate::util::log_at!(Debug, "writing a response: {e}");
    }
}

fn respond_entry(req: Request, entry: &Entry) {
    if let Err(e) = req.respond(json_answer(200, |w| entry.write_json(w))) {
        crate::util::log_at!(Debug, "writing a response: {e}");
    }
}

/// Handle one request completely. (The front logs each request, with the
/// client's address and scheme, before it gets here.)
pub fn handle(agent: &Arc<Agent>, mut req: Request, scheme: &str) {
    // the token, by value, out of every log line from now on, whatever
    // spelling of it a request uses
    if let Some(t) = agent.token() {
        crate::logbuf::add_secret(&t);
    }
    let reply =
        catch_unwind(AssertUnwindSafe(|| route(agent, &mut req, scheme))).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned());
            crate::util::log_at!(
                Error,
                "internal error handling {}: {}",
                redact_url(req.url()),
                what.as_deref().unwrap_or("panic")
            );
            fault(
                500,
                "500 Internal Server Error: the agent hit an internal error; see its log",
            )
        });
    match reply {
        Reply::Json(s, v) => respond(req, s, &v),
        Reply::Entry(e) => respond_entry(req, &e),
        Reply::List => {
            let list = json_answer(200, |w| agent.commands.write_list_json(w));
            if let Err(e) = req.respond(list) {
                crate::util::log_at!(Debug, "writing a response: {e}");
            }
        }
        Reply::Allow(methods) => {
            let body = json!({"faultcode": "Client", "faultstring": METHOD_NOT_ALLOWED});
            let resp = json_response(405, &body)
                .with_header(Header::from_bytes("Allow", methods).expect("header"));
            let _ = req.respond(resp);
        }
        Reply::Wait(entry) => {
            if entry.wait(Duration::ZERO) {
                return respond_entry(req, &entry);
            }
            if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
                WAITERS.fetch_sub(1, Ordering::SeqCst);
                return respond_entry(req, &entry);
            }
            let spawned = std::thread::Builder::new()
                .name("api-wait".into())
                .spawn(move || {
                    entry.wait(WAIT_LIMIT);
                    respond_entry(req, &entry);
                    WAITERS.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                // The request moved into the closure is answered with an
                // empty 500 by tiny_http when the closure is dropped.
                WAITERS.fetch_sub(1, Ordering::SeqCst);
                crate::util::log_at!(Error, "spawning a waiter thread: {e}");
            }
        }
    }
}

/// Serve until an extension stops the API (rescue, lockdown).
pub fn serve(agent: &Arc<Agent>, server: &Server, scheme: &str) {
    while agent.is_serving() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(req)) => handle(agent, req, scheme),
            Ok(None) => {}
            Err(e) => {
                crate::util::log_at!(Error, "accepting a request: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    crate::util::log_at!(Info, "API stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route_of("/"), Route::Root);
        assert_eq!(route_of(""), Route::Root);
        assert_eq!(route_of("/v1"), Route::V1);
        assert_eq!(route_of("/v1/"), Route::V1);
        assert_eq!(route_of("/v1/status"), Route::Status);
        assert_eq!(route_of("/status/"), Route::Status);
        assert_eq!(route_of("/v1/commands"), Route::Commands);
        assert_eq!(route_of("/commands/"), Route::Commands);
        assert_eq!(route_of("/v1/commands/abc"), Route::Command("abc".into()));
        assert_eq!(route_of("/commands/abc/"), Route::Command("abc".into()));
        assert_eq!(route_of("/v2"), Route::NotFound);
        assert_eq!(route_of("/v1/commands/a/b"), Route::NotFound);
    }

    #[test]
    fn query_parsing() {
        let t = Target::parse("/v1/commands/?wait=TRUE&agent_token=a%2Bb&x");
        assert!(t.wait());
        assert_eq!(t.get("agent_token"), Some("a+b"));
        assert_eq!(t.get("x"), Some(""));
        assert_eq!(crate::util::percent_decode("%zz%4"), "%zz%4");
        assert_eq!(crate::util::percent_decode("a%20b"), "a b");
    }
}
