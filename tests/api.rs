//! The agent's REST API over HTTP, against the real binary (protocol §1):
//! every route, result object, error body and status code, IPA's own
//! functional checks (§8), and hostile requests that must not stop it.

mod common;

use common::servers::stalling_server;
use common::tools::need;
use common::{get, http, post, test_dir, Agent, Opts};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn agent(name: &str) -> (std::path::PathBuf, Agent) {
    let dir = test_dir(name);
    let a = Agent::start(&dir, Opts::default());
    (dir, a)
}

fn fault(v: &Value) -> (&str, &str) {
    (
        v["faultcode"].as_str().unwrap_or(""),
        v["faultstring"].as_str().unwrap_or(""),
    )
}

#[test]
fn documents_and_status() {
    let (_d, a) = agent("docs");
    let (s, v) = get(&format!("{}/", a.base));
    assert_eq!(s, 200);
    assert_eq!(v["name"], "OpenStack Ironic Python Agent API");
    assert_eq!(v["default_version"]["id"], "v1");
    assert!(v["versions"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    for p in ["/v1", "/v1/"] {
        let (s, v) = get(&format!("{}{p}", a.base));
        assert_eq!(s, 200, "{p}");
        assert_eq!(v["id"], "v1");
        assert_eq!(
            v["media_types"][0]["type"],
            "application/vnd.openstack.ironic-python-agent.v1+json"
        );
        assert!(v["commands"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/v1/commands/"));
    }
    for p in ["/v1/status", "/status", "/v1/status/", "/status/"] {
        let (s, v) = get(&format!("{}{p}", a.base));
        assert_eq!(s, 200, "{p}");
        assert!(v["started_at"].is_f64(), "{v}");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    }
    // HEAD is allowed wherever GET is, without a body
    let r = http()
        .head(&format!("{}/v1/status", a.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn not_found_and_method_not_allowed() {
    let (_d, a) = agent("404-405");
    for p in ["/v2", "/v1/nope", "/v1/commands/a/b", "/favicon.ico"] {
        let (s, v) = get(&format!("{}{p}", a.base));
        assert_eq!(s, 404, "{p}");
        assert_eq!(fault(&v).0, "Client");
        assert!(fault(&v).1.starts_with("404 Not Found"), "{v}");
    }
    let r = http()
        .post(&format!("{}/v1/status", a.base))
        .send("")
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("allow").unwrap(), "GET, HEAD");
    let r = http()
        .put(&a.url_with_token("/v1/commands/"))
        .send("{}")
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("allow").unwrap(), "GET, HEAD, POST");
    let r = http()
        .delete(&a.url_with_token("/v1/commands/x"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // every error body is JSON
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
}

#[test]
fn token_is_required_on_every_command_route() {
    let (_d, a) = agent("token");
    let paths = [
        "/v1/commands",
        "/v1/commands/",
        "/commands",
        "/commands/",
        "/v1/commands/some-id",
    ];
    for p in paths {
        for q in [
            "",
            "?agent_token=",
            "?agent_token=wrong",
            "?agent_tokenx=678123-test-token",
        ] {
            let (s, v) = get(&format!("{}{p}{q}", a.base));
            assert_eq!(s, 401, "{p}{q}");
            assert_eq!(fault(&v), ("Client", "401 Unauthorized: Token invalid."));
        }
        if !p.contains("some-id") {
            let (s, _) = post(&format!("{}{p}?agent_token=wrong", a.base), "not even json");
            assert_eq!(s, 401, "token checked before the body is parsed: {p}");
        }
    }
    let (s, v) = get(&a.url_with_token("/v1/commands"));
    assert_eq!((s, v), (200, json!({"commands": []})));
}

#[test]
fn ipa_functional_test_commands() {
    // IPA's tests/functional/test_commands.py, step by step.
    let (_d, a) = agent("ipa-functional");
    let (s, _) = get(&format!("{}/v1/commands", a.base));
    assert_eq!(s, 401);
    let (s, v) = get(&a.url_with_token("/v1/commands"));
    assert_eq!((s, &v), (200, &json!({"commands": []})));
    let params = json!({"node": {"uuid": "1", "properties": {}, "instance_info": {}}, "ports": {}});
    let body = json!({"name": "clean.get_clean_steps", "params": params}).to_string();
    let (s, v) = post(&a.url_with_token("/v1/commands"), &body);
    assert_eq!(s, 200);
    assert_eq!(v["command_error"], Value::Null, "{v}");
    assert_eq!(v["command_status"], "SUCCEEDED");
    let steps = &v["command_result"]["clean_steps"]["GenericHardwareManager"];
    let names: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"erase_devices") && names.contains(&"erase_devices_metadata"));
    for s in steps.as_array().unwrap() {
        for k in [
            "step",
            "priority",
            "interface",
            "reboot_requested",
            "abortable",
        ] {
            assert!(s.get(k).is_some(), "{k} missing in {s}");
        }
    }
    assert_eq!(
        v["command_result"]["hardware_manager_version"]["generic_hardware_manager"],
        "1.2"
    );
    let (_, list) = get(&a.url_with_token("/v1/commands"));
    let list = list["commands"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["command_name"], "get_clean_steps");
    let id = list[0]["id"].as_str().unwrap();
    let (s, one) = get(&a.url_with_token(&format!("/v1/commands/{id}")));
    assert_eq!(s, 200);
    assert_eq!(one, list[0]);
    let body = json!({"name": "bad_extension.fake_command", "params": {}}).to_string();
    let (s, v) = post(&a.url_with_token("/v1/commands"), &body);
    assert_eq!(s, 404);
    assert_eq!(
        fault(&v),
        (
            "Client",
            "Not found: Extension with id bad_extension not found."
        )
    );
}

#[test]
fn result_objects_have_ipa_fields() {
    let (_d, a) = agent("result-fields");
    let (s, v) = a.command("deploy.get_deploy_steps", json!({"node": {}, "ports": []}));
    assert_eq!(s, 200);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "command_error",
            "command_name",
            "command_result",
            "command_status",
            "id"
        ]
    );
    assert_eq!(v["command_name"], "get_deploy_steps");
    assert_eq!(v["id"].as_str().unwrap().len(), 36);
    let steps = v["command_result"]["deploy_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    assert!(steps.iter().any(|s| s["step"] == "write_image"));
    assert!(
        steps.iter().all(|s| s.get("abortable").is_none()),
        "deploy steps carry no abortable"
    );
    // service steps exist too
    let (_, v) = a.command(
        "service.get_service_steps",
        json!({"node": {}, "ports": []}),
    );
    assert!(v["command_result"]["service_steps"].is_object(), "{v}");
}

#[test]
fn bad_requests_name_the_problem() {
    let (_d, a) = agent("bad-requests");
    let url = a.url_with_token("/v1/commands/");
    let cases: &[(&str, u16, &str)] = &[
        (
            "{not json",
            400,
            "400 Bad Request: Failed to decode JSON object",
        ),
        ("", 400, "400 Bad Request: Failed to decode JSON object"),
        (
            "[1,2]",
            400,
            "400 Bad Request: Missing or invalid name or params",
        ),
        (
            r#"{"name": "poll.get_hardware_info"}"#,
            400,
            "400 Bad Request: Missing or invalid name or params",
        ),
        (
            r#"{"params": {}}"#,
            400,
            "400 Bad Request: Missing or invalid name or params",
        ),
        (
            r#"{"name": "poll.get_hardware_info", "params": []}"#,
            400,
            "400 Bad Request: Missing or invalid name or params",
        ),
        (
            r#"{"name": 7, "params": {}}"#,
            400,
            "400 Bad Request: Missing or invalid name or params",
        ),
        (
            r#"{"name": "nodot", "params": {}}"#,
            400,
            "Invalid command: Command name must be of the form <extension>.<name>",
        ),
        (
            r#"{"name": "clean.nope", "params": {}}"#,
            400,
            "Invalid command: Unknown command: nope",
        ),
        (
            r#"{"name": "nope.nope", "params": {}}"#,
            404,
            "Not found: Extension with id nope not found.",
        ),
        (
            r#"{"name": "standby.prepare_image", "params": {}}"#,
            400,
            "Invalid command parameters: ",
        ),
        (
            r#"{"name": "flow.start_flow", "params": {"flow": 3}}"#,
            400,
            "Invalid command parameters: ",
        ),
    ];
    for (body, status, text) in cases {
        let (s, v) = post(&url, body);
        assert_eq!(s, *status, "{body}: {v}");
        assert!(fault(&v).1.starts_with(text), "{body}: {v}");
        assert_eq!(fault(&v).0, "Client");
    }
    // Nothing above was recorded as a command.
    let (_, v) = get(&a.url_with_token("/v1/commands"));
    assert_eq!(v["commands"], json!([]));
    // unknown params are ignored, as IPA's **kwargs do
    let (s, v) = a.command("poll.get_hardware_info", json!({"surprise": true}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
}

#[test]
fn unknown_command_id_is_404() {
    let (_d, a) = agent("unknown-id");
    let (s, v) = get(&a.url_with_token("/v1/commands/0000"));
    assert_eq!(s, 404);
    assert_eq!(
        fault(&v).1,
        "Not found: Command Result with id 0000 not found."
    );
}

#[test]
fn async_failures_are_failed_results_not_http_errors() {
    let (_d, a) = agent("async-fail");
    // execute_clean_step without a step: IPA records a FAILED result (200)
    let (s, v) = a.command("clean.execute_clean_step", json!({"node": {}, "ports": []}));
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(v["command_error"]["type"], "CommandExecutionError");
    assert_eq!(v["command_error"]["code"], 500);
    assert!(v["command_error"]["message"].is_string() && v["command_error"]["details"].is_string());
    // an unknown step → HardwareManagerMethodNotFound
    let (_, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": "no_such_step", "interface": "deploy"}, "node": {}, "ports": []}),
    );
    assert_eq!(
        v["command_error"]["type"], "HardwareManagerMethodNotFound",
        "{v}"
    );
    assert_eq!(
        v["command_error"]["details"],
        "Could not find method: no_such_step"
    );
    // a version mismatch → CLEAN_VERSION_MISMATCH, for deploy steps too
    let (_, v) = a.command(
        "deploy.execute_deploy_step",
        json!({"step": {"step": "write_image", "interface": "deploy"}, "node": {}, "ports": [],
               "deploy_version": {"generic_hardware_manager": "0.1"}}),
    );
    assert_eq!(v["command_status"], "CLEAN_VERSION_MISMATCH", "{v}");
    assert_eq!(v["command_error"]["type"], "VersionMismatch");
    assert_eq!(v["command_error"]["code"], 409);
}

#[test]
fn step_args_reach_the_step_and_the_step_is_echoed() {
    let (_d, a) = agent("step-echo");
    let step = json!({"step": "create_configuration", "interface": "raid", "priority": 0,
                      "reboot_requested": false, "abortable": true, "requires_ramdisk": true,
                      "args": {"extra": 1}});
    let (_, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": step, "node": {}, "ports": [],
                                                             "clean_version": null}),
    );
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(
        v["command_result"]["clean_step"], step,
        "the step is echoed unchanged"
    );
    assert!(v["command_result"].get("clean_result").is_some());
}

#[test]
fn results_are_kept_in_order_and_bounded() {
    let (_d, a) = agent("bounded");
    for _ in 0..1005 {
        let (s, _) = a.command("standby.get_partition_uuids", json!({}));
        assert_eq!(s, 200);
    }
    let (_, v) = a.command("poll.get_hardware_info", json!({}));
    let id = v["id"].clone();
    let (_, list) = get(&a.url_with_token("/v1/commands/"));
    let list = list["commands"].as_array().unwrap();
    assert_eq!(list.len(), 1000);
    assert_eq!(
        list.last().unwrap()["id"],
        id,
        "newest last: Ironic reads commands[-1]"
    );
}

#[test]
fn body_cap_gives_413_and_the_api_keeps_answering() {
    let dir = test_dir("body-cap");
    let a = Agent::start(
        &dir,
        Opts {
            args: vec!["--max-request-body".into(), "2048".into()],
            ..Default::default()
        },
    );
    let big =
        json!({"name": "poll.get_hardware_info", "params": {"x": "y".repeat(5000)}}).to_string();
    let (s, v) = post(&a.url_with_token("/v1/commands/"), &big);
    assert_eq!(s, 413);
    assert!(
        fault(&v).1.starts_with("413 Request Entity Too Large"),
        "{v}"
    );
    // chunked (no Content-Length to check in advance): the front decodes
    // it and refuses it with 413 once it passes the cap, before the API
    // sees any of it
    let mut t = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let chunk = "z".repeat(4000);
    let req = format!(
        "POST /v1/commands/?agent_token={} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        a.token,
        chunk.len()
    );
    // The front may answer after the chunk size alone; it then drains the
    // rest before closing (a lingering close), so neither this write nor
    // the read of the answer meets a reset.
    t.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = t.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // within the cap, a chunked body is decoded and the command runs
    let body = json!({"name": "clean.get_clean_steps",
                      "params": {"node": {"uuid": "1", "properties": {}, "instance_info": {}},
                                 "ports": []}})
    .to_string();
    let r = raw(
        a.port,
        format!(
            "POST /v1/commands/?agent_token={} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            a.token,
            body.len()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let (s, _) = get(&format!("{}/v1/status", a.base));
    assert_eq!(s, 200);
}

/// Send raw bytes, return what comes back until the agent closes (or 5 s).
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = t.write_all(bytes);
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut resp = Vec::new();
    let _ = t.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).into_owned()
}

/// The front (src/api/front.rs) stands between tiny_http and clients that
/// lie about their bodies or send them slowly. Regressions found in review:
/// one request claiming a 99999999999999-byte body aborted the agent
/// (tiny_http drained it into a buffer of that size), and a body announced
/// but not sent froze the single API thread for as long as the client held
/// the connection.
#[test]
fn lying_and_slow_clients_never_stop_the_api() {
    let (_d, a) = agent("lying");
    let status = || {
        let t0 = std::time::Instant::now();
        let (s, _) = get(&format!("{}/v1/status", a.base));
        assert_eq!(s, 200);
        t0.elapsed()
    };
    let r = raw(
        a.port,
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("\"faultcode\":\"Client\""), "{r}");
    status();
    // a small body announced, three bytes sent, the socket held open
    let mut held = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    held.write_all(b"GET /v1/status HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // bounds well under what the failures take (STALL, 10 s, or the held
    // client's whole life) but far above a loaded CI machine's latency
    assert!(
        status() < Duration::from_secs(8),
        "the API waited for the held body"
    );
    // a big body announced to a route that refuses it (no token): the 401
    // comes back and the connection closes, the body is not waited for
    let mut big = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    big.write_all(b"POST /v1/commands/ HTTP/1.1\r\nContent-Length: 300000\r\n\r\n{\"na")
        .unwrap();
    big.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let t0 = std::time::Instant::now();
    let mut resp = Vec::new();
    let _ = big.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "closed only after {:?}",
        t0.elapsed()
    );
    assert!(status() < Duration::from_secs(8));
    // an endless request line
    let r = raw(a.port, &[b'A'; 20_000]);
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    status();
    drop(held);
    let (s, v) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
}

#[test]
fn hostile_connections_never_stop_the_api() {
    let (_d, a) = agent("hostile");
    // garbage request line
    let mut t = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    t.write_all(b"\x00\x01\x02 garbage\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = t.read(&mut buf);
    // a body shorter than its Content-Length, then the client goes away
    let mut t = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        t,
        "POST /v1/commands/?agent_token={} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{\"na",
        a.token
    )
    .unwrap();
    drop(t);
    // a connection that never sends anything stays open in the background
    let _idle = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    // a huge header
    let mut t = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let _ = write!(
        t,
        "GET /v1/status HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    drop(t);
    for _ in 0..3 {
        let (s, _) = get(&format!("{}/v1/status", a.base));
        assert_eq!(s, 200);
    }
    let (s, v) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
}

#[test]
fn tls_by_default_and_the_token_is_never_logged() {
    need(&["curl"]);
    let dir = test_dir("tls-default");
    let a = Agent::start(
        &dir,
        Opts {
            tls: true,
            token: "secret-token-0123456789abcdef0123",
            args: vec!["--debug".into()],
            ..Default::default()
        },
    );
    assert!(a.base.starts_with("https://"), "{}", a.base);
    let cert = a.cert.clone().expect("certificate path logged");
    // curl verifies the self-signed certificate the way Ironic's requests does
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert)
        .arg(a.url_with_token("/v1/commands/"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"commands":[]}"#,
        "{out:?}\n{}",
        a.log_text()
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert)
        .arg(format!("{}/v1/commands/?agent_token=wrong-token", a.base))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("401 Unauthorized"));
    std::thread::sleep(Duration::from_millis(200));
    let log = a.log_text();
    assert!(
        log.contains("GET /v1/commands/?agent_token=***"),
        "requests are logged, redacted:\n{log}"
    );
    assert!(
        !log.contains("secret-token-0123456789abcdef0123"),
        "token leaked into the log:\n{log}"
    );
    assert!(
        !log.contains("wrong-token"),
        "even a wrong token stays out of the log:\n{log}"
    );
}

#[test]
fn standalone_without_a_token_generates_one() {
    let dir = test_dir("gen-token");
    let log = dir.join("agent.log");
    let mut child = common::agent_command()
        .args([
            "--standalone",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--enable-auto-tls=false",
        ])
        .arg("--cmdline")
        .arg("/dev/null")
        .env("TMPDIR", &dir)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = common::wait_for(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("API listening on").then_some(t)
    })
    .expect("agent listening");
    let token = text
        .split("standalone agent token: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(text.matches(token).count(), 1, "logged exactly once");
    let port = text
        .split("http://127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let (s, _) = get(&format!("http://127.0.0.1:{port}/v1/commands/"));
    assert_eq!(s, 401, "no unauthenticated commands, ever");
    let (s, _) = get(&format!(
        "http://127.0.0.1:{port}/v1/commands/?agent_token={token}"
    ));
    assert_eq!(s, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cli_help_version_and_errors() {
    let out = common::agent_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.lines().all(|l| l.chars().count() <= 80),
        "--help fits 80 columns"
    );
    assert!(help.contains("--standalone") && help.contains("ipa-api-url"));
    let out = common::agent_command().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ironic-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let out = common::agent_command()
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --no-such-flag"));
    let out = common::agent_command()
        .args(["--listen-port", "http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_ipa_kernel_parameters_warn_once() {
    let dir = test_dir("cmdline-warn");
    let cmdline = dir.join("cmdline");
    std::fs::write(
        &cmdline,
        "quiet ipa-frobnicate=1 ipa-frobnicate=2 ipa-debug=1 BOOTIF=01-52-54-00-12-34-56\n",
    )
    .unwrap();
    let a = Agent::start(
        &dir,
        Opts {
            args: vec!["--cmdline".into(), cmdline.display().to_string()],
            ..Default::default()
        },
    );
    let log = a.log_text();
    assert_eq!(
        log.matches("ignoring unknown kernel parameter ipa-frobnicate")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("DEBUG"),
        "ipa-debug=1 from the cmdline turns on debug logging"
    );
    let (_, v) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!(
        v["command_result"]["boot"]["pxe_interface"], "01-52-54-00-12-34-56",
        "{v}"
    );
}

#[test]
fn busy_agent_answers_409_and_keeps_serving_while_waiting() {
    let dir = test_dir("busy");
    let root = common::fixture_root("vm-virtio", &dir);
    // captured from a VM whose root fs is on vda: boot it as a ramdisk
    std::fs::write(root.join("proc/mounts"), "rootfs / rootfs rw 0 0\n").unwrap();
    let _ = std::fs::remove_file(root.join("proc/self/mountinfo"));
    let a = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let (port, release) = stalling_server();
    let info = json!({"id": "img", "urls": [format!("http://127.0.0.1:{port}/img")],
                      "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64),
                      "disk_format": "raw"});
    let body = json!({"name": "standby.prepare_image", "params": {"image_info": info}}).to_string();
    let (s, v) = post(&a.url_with_token("/v1/commands/?wait=false"), &body);
    assert_eq!(
        (s, v["command_status"].as_str()),
        (200, Some("RUNNING")),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    // the last command is RUNNING: any submission gets IPA's 409
    let (s, v) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!(s, 409);
    assert_eq!(
        fault(&v),
        ("Client", "Agent is busy: executing command prepare_image")
    );
    // a waiter blocks, the API does not
    let url = a.url_with_token(&format!("/v1/commands/{id}?wait=true"));
    let waiter = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let (s, _) = get(&format!("{}/v1/status", a.base));
    assert_eq!(s, 200);
    let (_, list) = get(&a.url_with_token("/v1/commands/"));
    assert_eq!(
        list["commands"].as_array().unwrap().last().unwrap()["command_status"],
        "RUNNING"
    );
    // the failure is an API blocked until the command ends (never, here)
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the API answered while a waiter waits"
    );
    assert!(!waiter.is_finished());
    release.send(()).unwrap();
    let (s, v) = waiter.join().unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(
        v["command_error"]["type"], "ImageDownloadFatalError",
        "a 404 is final: {v}"
    );
    // no longer busy
    let (s, v) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
}
