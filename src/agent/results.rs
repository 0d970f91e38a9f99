//! Command results and the one worker thread that runs asynchronous
//! commands (IPA's `extensions/base.py`: `BaseCommandResult`,
//! `AsyncCommandResult`). The command table and the submission rules are
//! in `commands`; this is the state they share with the API and the
//! heartbeat thread.

use crate::error::{AgentError, Kind, Result};
use crate::util::chan as mpsc;
use crate::util::lock;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    /// IPA keeps this historical text for every step kind (base.py).
    VersionMismatch,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::VersionMismatch => "CLEAN_VERSION_MISMATCH",
        }
    }
}

#[derive(Clone, Debug)]
struct Outcome {
    status: Status,
    error: Option<Value>,
    result: Option<Value>,
}

/// One command result, shared by the store, the worker and waiters.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    /// The short name ("execute_clean_step"), as Ironic compares it.
    pub name: String,
    outcome: Mutex<Outcome>,
    done: Condvar,
}

impl Entry {
    pub fn new(name: &str) -> Entry {
        Entry {
            id: crate::util::new_uuid(),
            name: name.to_string(),
            outcome: Mutex::new(Outcome {
                status: Status::Running,
                error: None,
                result: None,
            }),
            done: Condvar::new(),
        }
    }

    pub fn status(&self) -> Status {
        lock(&self.outcome).status
    }

    /// `{id, command_name, command_status, command_error, command_result}`.
    pub fn to_json(&self) -> Value {
        let o = lock(&self.outcome);
        json!({
            "id": self.id,
            "command_name": self.name,
            "command_status": o.status.as_str(),
            "command_error": o.error,
            "command_result": o.result,
        })
    }

    /// What [`Entry::to_json`] gives, serialized straight from where the
    /// result is kept (a result can be tens of MiB: a log bundle).
    pub fn write_json(&self, w: &mut impl Write) -> std::io::Result<()> {
        /// `to_json`'s keys, in the order it writes them.
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            command_error: &'a Option<Value>,
            command_name: &'a str,
            command_result: &'a Option<Value>,
            command_status: &'a str,
            id: &'a str,
        }
        let o = lock(&self.outcome);
        let shown = Shown {
            command_error: &o.error,
            command_name: &self.name,
            command_result: &o.result,
            command_status: o.status.as_str(),
            id: &self.id,
        };
        serde_json::to_writer(w, &shown).map_err(std::io::Error::from)
    }

    /// Block until the command is no longer RUNNING, or `timeout` passes.
    /// True when it is done.
    pub fn wait(&self, timeout: Duration) -> bool {
        let g = lock(&self.outcome);
        let (g, _) = self
            .done
            .wait_timeout_while(g, timeout, |o| o.status == Status::Running)
            .unwrap_or_else(|e| e.into_inner());
        g.status != Status::Running
    }

    /// Record the outcome. `asynchronous` selects IPA's string wrapping:
    /// `{"result": "<name>: <s>"}` for async, `{"result": "<s>"}` for sync.
    pub fn finish(&self, r: Result<Value>, asynchronous: bool) {
        let mut o = lock(&self.outcome);
        match r {
            Ok(Value::String(s)) if asynchronous => {
                o.result = Some(json!({"result": format!("{}: {s}", self.name)}));
                o.status = Status::Succeeded;
            }
            Ok(Value::String(s)) => {
                o.result = Some(json!({"result": s}));
                o.status = Status::Succeeded;
            }
            Ok(Value::Null) => {
                o.result = None;
                o.status = Status::Succeeded;
            }
            Ok(v) => {
                o.result = Some(v);
                o.status = Status::Succeeded;
            }
            Err(e) => {
                o.error = Some(e.to_json());
                o.result = None;
                o.status = if e.is(Kind::VersionMismatch) {
                    Status::VersionMismatch
                } else {
                    Status::Failed
                };
            }
        }
        drop(o);
        self.done.notify_all();
    }
}

/// Results in submission order; the oldest are dropped past `cap` (IPA
/// never prunes; Ironic only reads the last few).
pub struct Store {
    entries: Mutex<VecDeque<Arc<Entry>>>,
    cap: usize,
}

impl Store {
    pub fn new(cap: usize) -> Store {
        Store {
            entries: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    pub fn push(&self, e: Arc<Entry>) {
        let mut v = lock(&self.entries);
        if v.len() >= self.cap {
            v.pop_front();
        }
        v.push_back(e);
    }

    pub fn list_json(&self) -> Value {
        let v = lock(&self.entries);
        Value::Array(v.iter().map(|e| e.to_json()).collect())
    }

    /// `{"commands": [...]}` (each entry's [`Entry::write_json`]).
    pub fn write_list_json(&self, w: &mut impl Write) -> std::io::Result<()> {
        let entries: Vec<Arc<Entry>> = lock(&self.entries).iter().cloned().collect();
        w.write_all(b"{\"commands\":[")?;
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            e.write_json(w)?;
        }
        w.write_all(b"]}")
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).iter().find(|e| e.id == id).cloned()
    }

    pub fn last(&self) -> Option<Arc<Entry>> {
        lock(&self.entries).back().cloned()
    }

    /// Drop every finished result; a running command stays (it still
    /// holds the agent busy).
    pub fn forget_finished(&self) {
        lock(&self.entries).retain(|e| e.status() == Status::Running);
    }
}

/// A unit of work for the [`Worker`].
pub type Job = Box<dyn FnOnce() + Send>;

/// The one thread that runs asynchronous commands.
pub struct Worker {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Worker {
    pub fn start() -> Worker {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("command-worker".into())
            .spawn(move || {
                for job in rx {
                    // The job catches its own panics; this is a last line.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .expect("spawning the command worker thread");
        Worker { tx: Mutex::new(tx) }
    }

    pub fn submit(&self, job: Job) -> Result<()> {
        lock(&self.tx)
            .send(job)
            .map_err(|_| AgentError::execution("the command worker thread is gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_wrapping() {
        let e = Entry::new("prepare_image");
        e.finish(Ok(json!("done")), true);
        assert_eq!(
            e.to_json()["command_result"],
            json!({"result": "prepare_image: done"})
        );
        let e = Entry::new("sync");
        e.finish(Ok(Value::Null), false);
        assert_eq!(e.to_json()["command_result"], Value::Null);
        assert_eq!(e.to_json()["command_status"], "SUCCEEDED");
        let e = Entry::new("execute_clean_step");
        e.finish(Err(AgentError::new(Kind::VersionMismatch, "x")), true);
        assert_eq!(e.to_json()["command_status"], "CLEAN_VERSION_MISMATCH");
        assert_eq!(e.to_json()["command_error"]["type"], "VersionMismatch");
    }

    #[test]
    fn written_json_is_to_json() {
        let s = Store::new(5);
        for (name, r) in [
            ("a", Ok(json!({"x": [1, "two"], "logs": "ab\"c"}))),
            ("b", Err(AgentError::execution("failed \u{e9}"))),
            ("c", Ok(json!("text"))),
        ] {
            let e = Arc::new(Entry::new(name));
            e.finish(r, true);
            let mut w = Vec::new();
            e.write_json(&mut w).unwrap();
            assert_eq!(w, serde_json::to_vec(&e.to_json()).unwrap());
            s.push(e);
        }
        s.push(Arc::new(Entry::new("running")));
        let mut w = Vec::new();
        s.write_list_json(&mut w).unwrap();
        let want = serde_json::to_vec(&json!({"commands": s.list_json()})).unwrap();
        assert_eq!(w, want);
    }

    #[test]
    fn store_is_bounded_and_ordered() {
        let s = Store::new(3);
        for i in 0..5 {
            s.push(Arc::new(Entry::new(&format!("c{i}"))));
        }
        let names: Vec<String> = s
            .list_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["command_name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["c2", "c3", "c4"]);
    }

    #[test]
    fn forget_finished_keeps_the_running_command() {
        let s = Store::new(10);
        let done = Arc::new(Entry::new("done"));
        done.finish(Ok(Value::Null), false);
        let failed = Arc::new(Entry::new("failed"));
        failed.finish(Err(AgentError::execution("x")), true);
        s.push(done);
        s.push(Arc::new(Entry::new("running")));
        s.push(failed);
        s.forget_finished();
        let v = s.list_json();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["command_name"], "running");
        assert_eq!(v[0]["command_status"], "RUNNING");
    }
}
