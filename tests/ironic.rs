//! The agent's conversation with Ironic (protocol §2, §6), the real binary
//! against a fake Ironic (tests/common/ironic.rs): what the real Ironic
//! cannot be made to do on demand (409/5xx heartbeats, broken lookup
//! answers, an old API, a token wiped at a chosen moment, going away), and
//! TLS toward Ironic: verified by default, `--cafile`, `--insecure`
//! (certificates made with the `openssl` command, independent of the agent's
//! own certificate encoder), plus static server certificates. The same conversation
//! with the real Ironic 39 runs in tests/e2e/run.sh.

mod common;

use common::ironic::*;
use common::test_dir;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A current Ironic announcing `version`: lookup hands out `tok`.
fn modern(version: &'static str, tok: String, hb_timeout: u64) -> impl FnMut(&Req) -> Answer {
    move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc(version)),
        ("GET", "/v1/lookup") => (200, lookup_doc(UUID, &tok, hb_timeout)),
        ("POST", p) if p == format!("/v1/heartbeat/{UUID}") => (202, String::new()),
        _ => (404, ironic_error("Resource could not be found.")),
    }
}

fn version_header(r: &Req) -> &str {
    r.header("X-OpenStack-Ironic-API-Version").unwrap_or("")
}

#[test]
fn lookup_and_heartbeat_with_a_current_ironic() {
    let tok = token('a');
    let ironic = FakeIronic::start(modern("1.115", tok.clone(), 300));
    let dir = test_dir("current");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20));

    // version detection first, then lookup at min(detected, 1.62)
    let reqs = ironic.requests();
    assert!(reqs[0].is("GET", "/"), "{reqs:?}");
    let lookup = &ironic.matching("GET", "/v1/lookup")[0];
    assert_eq!(version_header(lookup), "1.62");
    assert_eq!(lookup.header("Accept"), Some("application/json"));
    assert!(lookup.query("addresses").is_some(), "{lookup:?}");
    assert_eq!(lookup.query("node_uuid"), None);

    // the heartbeat at min(detected, 1.68), with every field of §2.5
    let hb = &beats[0];
    assert_eq!(hb.path, format!("/v1/heartbeat/{UUID}"));
    assert_eq!(version_header(hb), "1.68");
    assert_eq!(hb.header("Content-Type"), Some("application/json"));
    let body = hb.json();
    let cb = body["callback_url"].as_str().unwrap();
    assert!(cb.starts_with("https://127.0.0.1:"), "{body}");
    assert!(!cb.ends_with('/'));
    assert_eq!(body["agent_token"], tok.as_str());
    assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
    let ca = body["agent_verify_ca"].as_str().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");

    // Ironic's side: the callback URL answers over TLS verified against
    // agent_verify_ca, and takes the token from the lookup
    let client = client_trusting(ca);
    let (s, v) = get_json(&client, &format!("{cb}/v1/commands/?agent_token={tok}"));
    assert_eq!((s, v), (200, json!({"commands": []})));
    let (s, _) = get_json(&client, &format!("{cb}/v1/commands/?agent_token=wrong"));
    assert_eq!(s, 401);
    // no inspection without a callback URL or explicit collectors
    assert!(ironic
        .matching("POST", "/v1/continue_inspection")
        .is_empty());
    // the lookup's config.tls_min_version "1.3" applies to the server
    let port: u16 = cb.rsplit(':').next().unwrap().parse().unwrap();
    assert!(!handshake(port, &["-tls1_2"], "DEFAULT").0);
    assert!(handshake(port, &["-tls1_3"], "DEFAULT").0);
    agent.assert_clean_log(&[&tok]);
}

/// Without `tls_min_version` in the lookup's config the agent keeps its
/// own minimum (1.2).
#[test]
fn tls_1_2_when_ironic_does_not_ask_for_1_3() {
    let tok = token('o');
    let t = tok.clone();
    let ironic = FakeIronic::start(move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc("1.115")),
        ("GET", "/v1/lookup") => (
            200,
            json!({"node": {"uuid": UUID}, "config": {"heartbeat_timeout": 300, "agent_token": t}})
                .to_string(),
        ),
        ("POST", _) => (202, String::new()),
        _ => (404, String::new()),
    });
    let dir = test_dir("tls12");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let hb = &ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0];
    let cb = hb.json()["callback_url"].as_str().unwrap().to_string();
    let port: u16 = cb.rsplit(':').next().unwrap().parse().unwrap();
    assert!(handshake(port, &["-tls1_2"], "DEFAULT").0);
    agent.assert_clean_log(&[&tok]);
}

/// Fields and version headers follow the detected API version (IPA's
/// `ironic_api_client.py`): agent_version ≥ 1.36, agent_token ≥ 1.62,
/// agent_verify_ca ≥ 1.68; auto-TLS only when Ironic can take the
/// certificate (≥ 1.68).
#[test]
fn heartbeat_fields_follow_the_api_version() {
    let cases: [(&str, &str, &str, &[&str], &str); 5] = [
        ("1.31", "1.31", "1.31", &["callback_url"], "http"),
        (
            "1.36",
            "1.36",
            "1.36",
            &["callback_url", "agent_version"],
            "http",
        ),
        (
            "1.62",
            "1.62",
            "1.62",
            &["callback_url", "agent_token", "agent_version"],
            "http",
        ),
        (
            "1.68",
            "1.62",
            "1.68",
            &[
                "callback_url",
                "agent_token",
                "agent_version",
                "agent_verify_ca",
            ],
            "https",
        ),
        (
            "1.99",
            "1.62",
            "1.68",
            &[
                "callback_url",
                "agent_token",
                "agent_version",
                "agent_verify_ca",
            ],
            "https",
        ),
    ];
    // all five agents at once: each case is independent
    let runs: Vec<_> = cases
        .iter()
        .map(|&(detected, lookup_v, hb_v, fields, scheme)| {
            let tok = token('b');
            let ironic = FakeIronic::start(modern(detected, tok.clone(), 300));
            let dir = test_dir(&format!("version-{detected}"));
            let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
            (detected, lookup_v, hb_v, fields, scheme, ironic, agent, tok)
        })
        .collect();
    for (detected, lookup_v, hb_v, fields, scheme, ironic, agent, tok) in runs {
        let hb = &ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0];
        let lookup = &ironic.matching("GET", "/v1/lookup")[0];
        assert_eq!(version_header(lookup), lookup_v, "lookup at {detected}");
        assert_eq!(version_header(hb), hb_v, "heartbeat at {detected}");
        let body = hb.json();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let mut want = fields.to_vec();
        want.sort();
        assert_eq!(keys, want, "heartbeat body at {detected}: {body}");
        assert!(
            body["callback_url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{scheme}://127.0.0.1:")),
            "{detected}: {body}"
        );
        agent.assert_clean_log(&[&tok]);
    }
}

/// `--ironic-api-version` replaces detection: no `GET /` at all.
#[test]
fn forced_api_version_skips_detection() {
    let tok = token('c');
    let ironic = FakeIronic::start(modern("1.115", tok, 300));
    let dir = test_dir("forced-version");
    let _agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &ironic.url(), &["--ironic-api-version", "1.64"]),
    );
    let hb = &ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0];
    assert!(ironic.matching("GET", "/").iter().all(|r| r.path != "/"));
    assert_eq!(version_header(hb), "1.64");
    assert!(hb.json().get("agent_verify_ca").is_none());
}

/// After a 202 the next beat is due after heartbeat_timeout × U(0.3, 0.6).
#[test]
fn heartbeat_interval_is_jittered_within_bounds() {
    let ironic = FakeIronic::start(modern("1.115", token('d'), 4));
    let dir = test_dir("jitter");
    let _agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 7, SECS(30));
    let gaps: Vec<f64> = beats
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect();
    for g in &gaps {
        // 4 × [0.3, 0.6] = [1.2, 2.4] s, plus the loop's 0.1 s and HTTP time
        // (the upper slack is for a loaded CI machine; never earlier)
        assert!(
            (1.2..=2.4 + 2.5).contains(g),
            "gap {g:.2} s out of bounds: {gaps:?}"
        );
    }
    let spread = gaps.iter().cloned().fold(f64::MIN, f64::max)
        - gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.05, "no jitter: {gaps:?}");
}

/// A heartbeat answered 409 or 5xx (or not at all) is retried after
/// 5 s × U(1, 2), not after the long interval (§2.5).
#[test]
fn failed_heartbeats_back_off_5_to_10_seconds() {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let tok = token('e');
    let mut normal = modern("1.115", tok.clone(), 300);
    let ironic = FakeIronic::start(move |r: &Req| {
        if r.is("POST", "/v1/heartbeat/") {
            return match seen.fetch_add(1, Ordering::SeqCst) {
                0 => (
                    409,
                    ironic_error("Node is locked by host e2e, please retry after the current operation is completed."),
                ),
                1 => (503, "<html>Service Unavailable</html>".into()),
                2 => (500, ironic_error("Internal error")),
                _ => (202, String::new()),
            };
        }
        normal(r)
    });
    let dir = test_dir("backoff");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 4, SECS(45));
    for w in beats.windows(2) {
        let g = (w[1].at - w[0].at).as_secs_f64();
        assert!((5.0..=14.0).contains(&g), "gap after a failure {g:.2} s");
    }
    // after the 202: 300 × [0.3, 0.6] s, so no fifth beat soon
    std::thread::sleep(SECS(3));
    assert_eq!(ironic.matching("POST", "/v1/heartbeat/").len(), 4);
    let text = agent.log_text();
    assert!(text.contains("heartbeat conflict"), "{text}");
    assert!(text.contains("Error 503"), "{text}");
    assert!(text.contains("Error 500: Internal error"), "{text}");
    agent.assert_clean_log(&[&tok]);
}

/// An async command that finishes forces a heartbeat, no sooner than 5 s
/// after the previous one (§2.5), so Ironic learns of it without waiting
/// for the long interval.
#[test]
fn finished_async_command_forces_a_heartbeat() {
    let tok = token('f');
    let ironic = FakeIronic::start(modern("1.115", tok.clone(), 300));
    let dir = test_dir("forced");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let first = ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0].clone();
    let body = first.json();
    let cb = body["callback_url"].as_str().unwrap().to_string();
    let client = client_trusting(body["agent_verify_ca"].as_str().unwrap());
    // an async command that fails at once (unknown step): it still "finishes"
    let cmd = json!({"name": "clean.execute_clean_step",
                     "params": {"step": {"step": "no_such_step", "interface": "deploy",
                                         "priority": 1},
                                "node": {"uuid": UUID}, "ports": []}});
    let url = format!("{cb}/v1/commands/?wait=false&agent_token={tok}");
    let (s, v) = post_json(&client, &url, &cmd);
    assert_eq!(s, 200, "{v}");
    // right after the first beat: held back until 5 s have passed
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 2, SECS(15));
    let gap = (beats[1].at - beats[0].at).as_secs_f64();
    assert!(
        (5.0..=9.0).contains(&gap),
        "forced beat {gap:.2} s after the first"
    );
    // more than 5 s later: sent at once
    std::thread::sleep(SECS(6));
    let before = ironic.started_elapsed();
    let (s, v) = post_json(&client, &url, &cmd);
    assert_eq!(s, 200, "{v}");
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 3, SECS(8));
    let delay = (beats[2].at - before).as_secs_f64();
    assert!(delay < 4.0, "forced beat {delay:.2} s after the command");
    // the token went through the API (query string) and is never logged
    assert!(agent.log_text().contains("agent_token=***"));
    agent.assert_clean_log(&[&tok]);
}

/// Ironic wipes the token at the end of a clean or deploy: the next
/// heartbeat gets 400 "Invalid or missing agent token received." The agent
/// looks the node up again (with its UUID), takes the new token, and the
/// old one stops working on its API. The new session starts with no
/// command results, as after a reboot: Ironic's `_freshly_booted` would
/// otherwise never start the deploy steps (seen with Ironic 39).
#[test]
fn wiped_token_leads_to_a_new_lookup() {
    let (t1, t2) = (token('g'), token('h'));
    let lookups = Arc::new(AtomicUsize::new(0));
    let beats = Arc::new(AtomicUsize::new(0));
    // the next beat is refused once the test has used t1 (refusing a
    // fixed beat raced the test's own requests: beats come 1.2-2.4 s apart)
    let armed = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(usize::MAX));
    let (l, b, t1c, t2c) = (lookups.clone(), beats.clone(), t1.clone(), t2.clone());
    let (arm, refd) = (armed.clone(), refused.clone());
    let ironic = FakeIronic::start(move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc("1.115")),
        ("GET", "/v1/lookup") => {
            let t = if l.fetch_add(1, Ordering::SeqCst) == 0 {
                &t1c
            } else {
                &t2c
            };
            (200, lookup_doc(UUID, t, 4))
        }
        ("POST", _) if r.path.starts_with("/v1/heartbeat/") => {
            let n = b.fetch_add(1, Ordering::SeqCst);
            if arm.swap(false, Ordering::SeqCst) {
                refd.store(n, Ordering::SeqCst);
                (
                    400,
                    ironic_error("Invalid or missing agent token received."),
                )
            } else {
                (202, String::new())
            }
        }
        _ => (404, ironic_error("Resource could not be found.")),
    });
    let dir = test_dir("wiped");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    // a command of the first session, before the token is wiped
    let first = ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0].json();
    let cb = first["callback_url"].as_str().unwrap();
    let client = client_trusting(first["agent_verify_ca"].as_str().unwrap());
    let cmd = json!({"name": "standby.get_partition_uuids", "params": {}});
    post_json(
        &client,
        &format!("{cb}/v1/commands/?wait=true&agent_token={t1}"),
        &cmd,
    );
    let (s, v) = get_json(&client, &format!("{cb}/v1/commands/?agent_token={t1}"));
    assert_eq!(
        (s, v["commands"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    armed.store(true, Ordering::SeqCst);
    let r = common::wait_for(SECS(30), || {
        let r = refused.load(Ordering::SeqCst);
        (r != usize::MAX).then_some(r)
    })
    .expect("a heartbeat after arming");
    let hbs = ironic.wait_for("POST", "/v1/heartbeat/", r + 2, SECS(30));
    let lk = ironic.matching("GET", "/v1/lookup");
    assert_eq!(lk.len(), 2, "{lk:?}");
    assert_eq!(lk[1].query("node_uuid"), Some(UUID));
    assert_eq!(hbs[0].json()["agent_token"], t1.as_str());
    assert_eq!(hbs[r].json()["agent_token"], t1.as_str());
    assert_eq!(hbs[r + 1].json()["agent_token"], t2.as_str());
    // the same callback URL and certificate for the life of the process
    assert_eq!(
        hbs[0].json()["callback_url"],
        hbs[r + 1].json()["callback_url"]
    );
    assert_eq!(
        hbs[0].json()["agent_verify_ca"],
        hbs[r + 1].json()["agent_verify_ca"]
    );
    // the re-lookup came right away, not after the failure back-off
    assert!((lk[1].at - hbs[r].at) < SECS(2));
    let body = hbs[r + 1].json();
    let cb = body["callback_url"].as_str().unwrap();
    let client = client_trusting(body["agent_verify_ca"].as_str().unwrap());
    assert_eq!(
        get_json(&client, &format!("{cb}/v1/commands/?agent_token={t1}")).0,
        401
    );
    let (s, v) = get_json(&client, &format!("{cb}/v1/commands/?agent_token={t2}"));
    assert_eq!((s, &v["commands"]), (200, &json!([])), "{v}");
    agent.assert_clean_log(&[&t1, &t2]);
}

/// The token is refused and the re-lookup only yields the mask (Ironic
/// gave the token to another process): the agent backs off 5–10 s between
/// rounds instead of hammering Ironic with heartbeat + lookup pairs.
#[test]
fn refused_token_with_a_masked_relookup_backs_off() {
    let tok = token('w');
    let lookups = Arc::new(AtomicUsize::new(0));
    let l = lookups.clone();
    let t = tok.clone();
    let ironic = FakeIronic::start(move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc("1.115")),
        ("GET", "/v1/lookup") => {
            let first = l.fetch_add(1, Ordering::SeqCst) == 0;
            (
                200,
                lookup_doc(UUID, if first { &t } else { "******" }, 300),
            )
        }
        ("POST", _) => (
            400,
            ironic_error("Invalid or missing agent token received."),
        ),
        _ => (404, String::new()),
    });
    let dir = test_dir("masked-relookup");
    let agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    ironic.wait_for("POST", "/v1/heartbeat/", 2, SECS(20));
    std::thread::sleep(SECS(6));
    let (beats, lks) = (
        ironic.matching("POST", "/v1/heartbeat/"),
        ironic.matching("GET", "/v1/lookup"),
    );
    assert!(
        beats.len() <= 3 && lks.len() <= 4,
        "{} beats, {} lookups",
        beats.len(),
        lks.len()
    );
    for w in beats.windows(2) {
        assert!(w[1].at - w[0].at >= SECS(5), "{:?}", w[1].at - w[0].at);
    }
    assert!(agent
        .log_text()
        .contains("did not hand out a new agent token"));
    agent.assert_clean_log(&[&tok]);
}

/// "******": Ironic already handed the token out. Without a token of its
/// own the agent cannot be trusted by Ironic: it says so and idles (IPA),
/// never heartbeating or serving.
#[test]
fn masked_token_without_a_cmdline_token_is_fatal() {
    let ironic = FakeIronic::start(modern("1.115", "******".into(), 300));
    let dir = test_dir("masked");
    let mut agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    agent.wait_log("masked agent token", SECS(20));
    std::thread::sleep(SECS(2));
    assert!(
        agent.alive(),
        "IPA idles rather than exiting (no respawn loop)"
    );
    assert!(ironic.matching("POST", "/v1/heartbeat/").is_empty());
    assert!(!agent.log_text().contains("API listening"));
    agent.assert_clean_log(&[]);
}

/// "******" with `ipa-agent-token` (virtual media boots): the agent keeps
/// the pre-shared token and heartbeats with it.
#[test]
fn masked_token_with_a_cmdline_token_uses_it() {
    let pre = token('i');
    let ironic = FakeIronic::start(modern("1.115", "******".into(), 300));
    let dir = test_dir("masked-pre");
    let agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &ironic.url(), &["--agent-token", &pre]),
    );
    let hb = &ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20))[0];
    assert_eq!(hb.json()["agent_token"], pre.as_str());
    agent.assert_clean_log(&[&pre]);
}

/// Lookup answers that are not usable are retried, never a panic: not
/// JSON, no node, no node.uuid, no heartbeat_timeout; then a 409 adds the
/// extra 5 s pause (§2.3).
#[test]
fn broken_lookup_answers_are_retried() {
    let tok = token('j');
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(vec![
        (200, "this is not JSON".into()),
        (200, "{}".into()),
        (200, json!({"node": {}}).to_string()),
        (
            200,
            json!({"node": {"uuid": UUID}, "config": {}}).to_string(),
        ),
        (200, json!([1, 2]).to_string()),
        (409, ironic_error("Node is locked by host e2e")),
        (200, lookup_doc(UUID, &tok, 300)),
    ]));
    let a = answers.clone();
    let ironic = FakeIronic::start(move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc("1.115")),
        ("GET", "/v1/lookup") => a.lock().unwrap().remove(0),
        ("POST", _) => (202, String::new()),
        _ => (404, String::new()),
    });
    let dir = test_dir("broken-lookup");
    // six retries back off 1, 1-2, 1-4, ... 1-32 s, plus the 409's 5 s:
    // up to 68 s (the default --lookup-timeout of the helper is 60)
    let agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &ironic.url(), &["--lookup-timeout", "150"]),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(120));
    let lk = ironic.matching("GET", "/v1/lookup");
    assert_eq!(lk.len(), 7);
    let after_409 = (lk[6].at - lk[5].at).as_secs_f64();
    assert!(after_409 >= 5.0, "409 pause only {after_409:.2} s");
    let text = agent.log_text();
    for why in [
        "not JSON",
        "no node.uuid",
        "no heartbeat_timeout",
        "node locked",
    ] {
        assert!(text.contains(why), "{why:?} not logged:\n{text}");
    }
    agent.assert_clean_log(&[&tok]);
}

/// Ironic unreachable at boot: lookup retries until --lookup-timeout, then
/// the agent exits non-zero naming the URL and the error.
#[test]
fn unreachable_ironic_at_boot_exits_after_the_lookup_timeout() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    let dir = test_dir("unreachable");
    let t0 = std::time::Instant::now();
    let mut agent = AgentProc::start(&dir, &agent_args(&dir, &url, &["--lookup-timeout", "4"]));
    let status = agent
        .wait_exit(SECS(20))
        .expect("the agent did not give up");
    assert_eq!(status.code(), Some(1));
    // it used the whole timeout, with a last attempt at the deadline
    assert!(
        (4.0..8.0).contains(&t0.elapsed().as_secs_f64()),
        "{:?}",
        t0.elapsed()
    );
    let text = agent.log_text();
    assert!(
        text.contains(&format!("Could not look up node info at {url} after 4 s")),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
    assert!(text.contains("giving up"), "{text}");
    assert!(text.matches("lookup: ").count() >= 2, "no retries:\n{text}");
    agent.assert_clean_log(&[]);
}

/// `ipa-api-url` as a list whose first URL is dead: every call falls over
/// to the next, and the one that answered moves to the front, so the dead
/// one is not tried again and again.
#[test]
fn dead_first_api_url_is_skipped() {
    let tok = token('k');
    let ironic = FakeIronic::start(modern("1.115", tok.clone(), 4));
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = test_dir("urls");
    let agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &format!("{dead},{}", ironic.url()), &[]),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 3, SECS(30));
    let text = agent.log_text();
    let tries = text.matches("trying the next URL").count();
    assert_eq!(tries, 1, "the dead URL was retried:\n{text}");
    agent.assert_clean_log(&[&tok]);
}

/// Ironic goes away while the agent heartbeats, and comes back on the same
/// address: the agent keeps beating (5–10 s apart) and carries on with the
/// same token and callback URL.
#[test]
fn ironic_restart_while_heartbeating() {
    let tok = token('l');
    let mut ironic = FakeIronic::start(modern("1.115", tok.clone(), 4));
    let dir = test_dir("restart");
    let mut agent = AgentProc::start(&dir, &agent_args(&dir, &ironic.url(), &[]));
    let first = ironic.wait_for("POST", "/v1/heartbeat/", 2, SECS(20));
    ironic.stop();
    std::thread::sleep(SECS(7));
    assert!(agent.alive());
    ironic.restart();
    let beats = ironic.wait_for("POST", "/v1/heartbeat/", 4, SECS(25));
    assert_eq!(beats[3].json()["agent_token"], tok.as_str());
    assert_eq!(
        beats[3].json()["callback_url"],
        first[0].json()["callback_url"]
    );
    assert!(agent.log_text().contains("error sending heartbeat"));
    // no second lookup: the token was never wiped
    assert_eq!(ironic.matching("GET", "/v1/lookup").len(), 1);
    agent.assert_clean_log(&[&tok]);
}

/// The vendor_passthru protocol of Kilo–Mitaka Ironic (§2.7): GET / says
/// an API version < 1.22 and /v1/lookup is 404, so the agent POSTs the
/// version-2 inventory to the driver's passthru lookup and heartbeats with
/// `agent_url` to the node's passthru heartbeat. Plain HTTP: such an Ironic
/// cannot take a certificate.
#[test]
fn vendor_passthru_fallback_for_an_old_ironic() {
    let ironic = FakeIronic::start(|r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/") => (200, root_doc("1.11")),
        ("POST", "/v1/drivers/pxe_ipmitool/vendor_passthru/lookup") => (
            200,
            json!({"heartbeat_timeout": 300,
                   "node": {"uuid": UUID, "driver": "pxe_ipmitool", "properties": {},
                            "instance_info": {}, "driver_info": {}}})
            .to_string(),
        ),
        ("POST", p) if p == format!("/v1/nodes/{UUID}/vendor_passthru/heartbeat") => {
            (202, String::new())
        }
        _ => (404, ironic_error("Resource could not be found.")),
    });
    let dir = test_dir("passthru");
    let agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &ironic.url(), &["--driver-name", "pxe_ipmitool"]),
    );
    let hb = &ironic.wait_for("POST", "/v1/nodes/", 1, SECS(20))[0];
    let lookups = ironic.matching("POST", "/v1/drivers/");
    assert_eq!(lookups.len(), 1);
    assert_eq!(ironic.matching("GET", "/v1/lookup").len(), 1);
    let body = lookups[0].json();
    assert_eq!(body["version"], "2");
    assert_eq!(
        body["inventory"]["interfaces"][0]["mac_address"], MAC,
        "{body}"
    );
    assert!(body["inventory"]["disks"].is_array(), "{body}");
    let hbody = hb.json();
    assert_eq!(
        hbody.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["agent_url"]
    );
    assert!(hbody["agent_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert!(ironic.matching("POST", "/v1/heartbeat/").is_empty());
    agent.assert_clean_log(&[]);
}

/// Inspection (§6) against a fake `/v1/continue_inspection`: the
/// collectors' JSON is POSTed without a version header, a 5xx is retried
/// (5 s later), and the UUID in the answer is used for the lookup.
#[test]
fn inspection_posts_data_then_looks_up_by_uuid() {
    let tok = token('m');
    let posts = Arc::new(AtomicUsize::new(0));
    let p = posts.clone();
    let mut normal = modern("1.115", tok.clone(), 300);
    let ironic = FakeIronic::start(move |r: &Req| {
        if r.is("POST", "/v1/continue_inspection") {
            return if p.fetch_add(1, Ordering::SeqCst) == 0 {
                (503, "busy".into())
            } else {
                (202, json!({"uuid": UUID}).to_string())
            };
        }
        normal(r)
    });
    let dir = test_dir("inspect");
    let cb = format!("{}/v1/continue_inspection", ironic.url());
    let agent = AgentProc::start(
        &dir,
        &agent_args(
            &dir,
            &ironic.url(),
            &[
                "--inspection-callback-url",
                &cb,
                "--inspection-dhcp-wait-timeout",
                "0",
            ],
        ),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(40));
    let ins = ironic.matching("POST", "/v1/continue_inspection");
    assert_eq!(ins.len(), 2);
    let gap = (ins[1].at - ins[0].at).as_secs_f64();
    assert!((5.0..10.0).contains(&gap), "retry after {gap:.2} s");
    assert_eq!(ins[1].header("X-OpenStack-Ironic-API-Version"), None);
    let data: Value = ins[1].json();
    // no disk in this root: IPA leaves root_disk out
    assert!(data.get("root_disk").is_none());
    for k in [
        "inventory",
        "boot_interface",
        "configuration",
        "logs",
        "error",
    ] {
        assert!(
            data.get(k).is_some(),
            "{k} missing from {:?}",
            data.as_object().map(|o| o.keys().collect::<Vec<_>>())
        );
    }
    assert_eq!(
        data["configuration"]["collectors"],
        json!(["default", "logs"])
    );
    assert_eq!(data["inventory"]["interfaces"][0]["mac_address"], MAC);
    let lookup = &ironic.matching("GET", "/v1/lookup")[0];
    assert_eq!(lookup.query("node_uuid"), Some(UUID));
    agent.assert_clean_log(&[&tok]);
}

/// Collectors given explicitly plus an API URL turn inspection on without
/// a callback URL (IPA's `inspector.inspect`): the data goes to
/// `<api>/v1/continue_inspection`. Neither given: no inspection.
#[test]
fn inspection_from_collectors_and_the_api_url() {
    let tok = token('n');
    let mut normal = modern("1.115", tok.clone(), 300);
    let ironic = FakeIronic::start(move |r: &Req| {
        if r.is("POST", "/v1/continue_inspection") {
            return (202, json!({"uuid": UUID}).to_string());
        }
        normal(r)
    });
    let dir = test_dir("inspect-collectors");
    let agent = AgentProc::start(
        &dir,
        &agent_args(
            &dir,
            &ironic.url(),
            &[
                "--inspection-collectors",
                "default",
                "--inspection-dhcp-wait-timeout",
                "0",
            ],
        ),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(20));
    let ins = ironic.matching("POST", "/v1/continue_inspection");
    assert_eq!(ins.len(), 1);
    let data = ins[0].json();
    assert_eq!(data["configuration"]["collectors"], json!(["default"]));
    assert!(data.get("logs").is_none());
    agent.assert_clean_log(&[&tok]);
}

/// Every collector of IPA but `lldp` (tests/lldp.rs listens on live NICs)
/// on the server fixture: each adds its key with IPA's shape, in the
/// order given, and nothing fails.
#[test]
fn inspection_with_every_collector() {
    let tok = token('e');
    let mut normal = modern("1.115", tok.clone(), 300);
    let ironic = FakeIronic::start(move |r: &Req| {
        if r.is("POST", "/v1/continue_inspection") {
            return (202, json!({"uuid": UUID}).to_string());
        }
        normal(r)
    });
    let dir = test_dir("inspect-all");
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/server");
    let collectors = "dmi-decode,default,extra-hardware,pci-devices,numa-topology,usb-devices,logs";
    let agent = AgentProc::start(
        &dir,
        &agent_args(
            &dir,
            &ironic.url(),
            &[
                "--root",
                server,
                "--inspection-collectors",
                collectors,
                "--inspection-dhcp-wait-timeout",
                "0",
            ],
        ),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(30));
    let ins = ironic.matching("POST", "/v1/continue_inspection");
    let data = ins[0].json();
    assert_eq!(data["error"], Value::Null, "{}", agent.log_text());
    assert_eq!(
        data["configuration"]["collectors"],
        json!(collectors.split(',').collect::<Vec<_>>())
    );
    for k in [
        "inventory",
        "root_disk",
        "boot_interface",
        "dmi",
        "data",
        "pci_devices",
        "numa_topology",
        "usb_devices",
        "logs",
    ] {
        assert!(data.get(k).is_some(), "{k} missing");
    }
    // extra-hardware: [category, item, key, value] rows Ironic's hook reads
    let rows = data["data"].as_array().unwrap();
    assert!(rows
        .iter()
        .all(|r| r.as_array().is_some_and(|r| r.len() == 4)));
    let find = |c: &str, i: &str, k: &str| {
        rows.iter()
            .find(|r| r[0] == c && r[1] == i && r[2] == k)
            .map(|r| r[3].clone())
    };
    assert_eq!(
        find("system", "product", "name"),
        Some(json!("PowerEdge R640 (SKU=0716;ModelName=PowerEdge R640)"))
    );
    assert_eq!(find("cpu", "physical", "number"), Some(json!(2)));
    assert_eq!(find("disk", "sda", "rotational"), Some(json!("0")));
    assert_eq!(
        find("memory", "total", "size"),
        Some(json!((64u64 << 30).to_string()))
    );
    assert_eq!(
        find("network", "eno1", "serial"),
        Some(json!("3c:ec:ef:10:00:01"))
    );
    // the lookup used the UUID (no collector failed)
    let lookup = &ironic.matching("GET", "/v1/lookup")[0];
    assert_eq!(lookup.query("node_uuid"), Some(UUID));
    agent.assert_clean_log(&[&tok]);
}

/// A name that is not a collector (IPA: stevedore cannot load it): no
/// collector runs, only IPA's error is posted, Ironic refuses it (no
/// inventory), and the agent looks up without a node UUID.
#[test]
fn unknown_collector_posts_ipas_error_only() {
    let tok = token('u');
    let mut normal = modern("1.115", tok.clone(), 300);
    let ironic = FakeIronic::start(move |r: &Req| {
        if r.is("POST", "/v1/continue_inspection") {
            return (400, ironic_error("'inventory' is a required property"));
        }
        normal(r)
    });
    let dir = test_dir("inspect-unknown");
    let agent = AgentProc::start(
        &dir,
        &agent_args(
            &dir,
            &ironic.url(),
            &[
                "--inspection-collectors",
                "default,hardware-lshw,logs",
                "--inspection-dhcp-wait-timeout",
                "0",
            ],
        ),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, SECS(30));
    let ins = ironic.matching("POST", "/v1/continue_inspection");
    assert_eq!(ins.len(), 1, "a 400 is not retried");
    assert_eq!(
        ins[0].json(),
        json!({"error": "The following errors were encountered:\n\
                         * Failed to load collector {'hardware-lshw'}"})
    );
    let lookup = &ironic.matching("GET", "/v1/lookup")[0];
    assert_eq!(lookup.query("node_uuid"), None);
    let log = agent.log_text();
    assert!(
        log.contains("Failed to perform inspection: The following errors"),
        "{log}"
    );
    agent.assert_clean_log(&[&tok]);
}

/// Static TLS (`--listen-tls` with cert/key files): served as given, the
/// callback URL is https, and no agent_verify_ca is sent (IPA sends the
/// certificate only for automatic TLS; operators distribute their own CA).
#[test]
fn static_tls_certificate() {
    static_tls_with("static-tls", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
}

/// An RSA server key works too (the agent's key provider takes RSA and
/// ECDSA keys, src/tls.rs `RingKeys`).
#[test]
fn static_tls_certificate_with_an_rsa_key() {
    static_tls_with("static-tls-rsa", &["rsa:2048"]);
}

fn static_tls_with(name: &str, server_key: &[&str]) {
    let dir = test_dir(name);
    let pki = Pki::with_server_key(&dir, server_key);
    let tok = token('s');
    let ironic = FakeIronic::start({
        let tok = tok.clone();
        move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/") => (200, root_doc("1.115")),
            ("GET", "/v1/lookup") => (200, lookup_doc("u-1", &tok, 300)),
            ("POST", _) => (202, String::new()),
            _ => (404, String::new()),
        }
    });
    let agent = AgentProc::start(
        &dir,
        &agent_args(
            &dir,
            &ironic.url(),
            &[
                "--listen-tls",
                "--tls-cert-file",
                pki.server_cert.to_str().unwrap(),
                "--tls-key-file",
                pki.server_key.to_str().unwrap(),
            ],
        ),
    );
    let hb = &ironic.wait_for("POST", "/v1/heartbeat/", 1, Duration::from_secs(20))[0];
    let body = hb.json();
    assert!(body.get("agent_verify_ca").is_none(), "{body}");
    let cb = body["callback_url"].as_str().unwrap();
    assert!(cb.starts_with("https://127.0.0.1:"), "{body}");
    let client = client_trusting(&std::fs::read_to_string(&pki.ca_cert).unwrap());
    let (st, _) = get_json(&client, &format!("{cb}/v1/commands/?agent_token={tok}"));
    assert_eq!(st, 200);
    agent.assert_clean_log(&[&tok]);
}

/// A CA and a server certificate for IP 127.0.0.1, made with openssl.
struct Pki {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        Pki::with_server_key(dir, &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    /// `server_key`: openssl's `-newkey` argument and options.
    fn with_server_key(dir: &Path, server_key: &[&str]) -> Pki {
        let p = |n: &str| dir.join(n);
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let (ca_key, ca_cert, key, csr, cert, ext) = (
            p("ca.key"),
            p("ca.pem"),
            p("server.key"),
            p("server.csr"),
            p("server.pem"),
            p("ext.cnf"),
        );
        let run = |args: &[&str]| {
            let (ok, text) = openssl(args, None);
            assert!(ok, "openssl {args:?}: {text}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca_cert),
            "-days",
            "2",
            "-subj",
            "/CN=ironic-agent test CA",
        ]);
        let key_s = s(&key);
        let csr_s = s(&csr);
        let mut args = vec!["req", "-newkey"];
        args.extend_from_slice(server_key);
        args.extend_from_slice(&["-nodes", "-keyout", &key_s, "-out", &csr_s]);
        args.extend_from_slice(&["-subj", "/CN=127.0.0.1"]);
        run(&args);
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca_cert),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(&cert),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ]);
        Pki {
            ca_cert,
            server_cert: cert,
            server_key: key,
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.server_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }
}

/// An https Ironic whose certificate comes from the operator's own CA.
fn tls_ironic(pki: &Pki, tok: &str) -> FakeIronic {
    let tok = tok.to_string();
    FakeIronic::start_tls(
        move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/") => (200, root_doc("1.115")),
            ("GET", "/v1/lookup") => (200, lookup_doc("u-2", &tok, 300)),
            ("POST", _) => (202, String::new()),
            _ => (404, String::new()),
        },
        pki.server_config(),
    )
}

#[test]
fn outbound_tls_is_verified_by_default() {
    let dir = test_dir("verify-default");
    let pki = Pki::new(&dir);
    let ironic = tls_ironic(&pki, &token('t'));
    let url = format!("https://127.0.0.1:{}", ironic.port);
    let mut agent = AgentProc::start(&dir, &agent_args(&dir, &url, &["--lookup-timeout", "3"]));
    let status = agent
        .wait_exit(Duration::from_secs(20))
        .expect("still running");
    assert_eq!(status.code(), Some(1));
    let text = agent.log_text();
    assert!(
        text.contains("UnknownIssuer"),
        "no clear certificate error:\n{text}"
    );
    assert!(ironic.matching("GET", "/v1/lookup").is_empty());
}

#[test]
fn outbound_tls_with_the_operators_ca_file() {
    let dir = test_dir("verify-cafile");
    let pki = Pki::new(&dir);
    let tok = token('u');
    let ironic = tls_ironic(&pki, &tok);
    let url = format!("https://127.0.0.1:{}", ironic.port);
    let agent = AgentProc::start(
        &dir,
        &agent_args(&dir, &url, &["--cafile", pki.ca_cert.to_str().unwrap()]),
    );
    ironic.wait_for("POST", "/v1/heartbeat/", 1, Duration::from_secs(20));
    agent.assert_clean_log(&[&tok]);

    // a CA file that did not sign Ironic's certificate: refused
    let other = test_dir("verify-othercafile");
    let other_pki = Pki::new(&other);
    let mut agent = AgentProc::start(
        &other,
        &agent_args(
            &other,
            &url,
            &[
                "--cafile",
                other_pki.ca_cert.to_str().unwrap(),
                "--lookup-timeout",
                "3",
            ],
        ),
    );
    assert_eq!(
        agent.wait_exit(Duration::from_secs(20)).unwrap().code(),
        Some(1)
    );
    let text = agent.log_text();
    assert!(text.contains("certificate"), "{text}");

    // a CA file that is not one: a clear start-up error
    let bad = test_dir("verify-badcafile");
    std::fs::write(bad.join("junk.pem"), "not a certificate\n").unwrap();
    let mut agent = AgentProc::start(
        &bad,
        &agent_args(
            &bad,
            &url,
            &["--cafile", bad.join("junk.pem").to_str().unwrap()],
        ),
    );
    assert_eq!(
        agent.wait_exit(Duration::from_secs(20)).unwrap().code(),
        Some(1)
    );
    assert!(
        agent.log_text().contains("holds no certificate"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn outbound_tls_insecure() {
    let dir = test_dir("verify-insecure");
    let pki = Pki::new(&dir);
    let tok = token('v');
    let ironic = tls_ironic(&pki, &tok);
    let url = format!("https://127.0.0.1:{}", ironic.port);
    let agent = AgentProc::start(&dir, &agent_args(&dir, &url, &["--insecure"]));
    ironic.wait_for("POST", "/v1/heartbeat/", 1, Duration::from_secs(20));
    agent.assert_clean_log(&[&tok]);
}
