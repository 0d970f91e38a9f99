//! The agent's TLS server (protocol §1.1, §2.4), the real binary: the
//! automatic certificate (critical IP SAN = advertised IP, P-384, valid
//! now − 1 h .. now + 30 d), TLS 1.2/1.3 only with AEAD suites,
//! `--tls-min-version 1.3`, and IPA's functional checks over TLS (§8,
//! `test_tls.py`). Handshakes are probed with `openssl s_client`, which
//! can offer what rustls never would. Outbound TLS (verifying Ironic) and
//! static certificates are in tests/ironic.rs.

mod common;

use common::ironic::*;
use common::test_dir;
use common::Opts;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "678123-tls-test-token";

/// A standalone agent (no Ironic) serving auto-TLS on 127.0.0.1:0.
struct Standalone {
    agent: common::Agent,
    port: u16,
    cert: PathBuf,
}

impl Standalone {
    fn assert_clean_log(&self) {
        assert_clean_log(&self.agent.log_text(), &[TOKEN]);
    }
}

fn standalone(name: &str, extra: &[&str]) -> Standalone {
    let dir = test_dir(name);
    let agent = common::Agent::start(
        &dir,
        Opts {
            token: TOKEN,
            tls: true,
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Opts::default()
        },
    );
    let cert = agent
        .cert
        .clone()
        .expect("auto-TLS certificate path in the log");
    Standalone {
        port: agent.port,
        agent,
        cert,
    }
}

/// "Nov 25 07:00:00 2026 GMT" -> seconds since the epoch.
fn parse_openssl_date(s: &str) -> i64 {
    let f: Vec<&str> = s.split_whitespace().collect();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == f[0])
    .unwrap() as i64
        + 1;
    let day: i64 = f[1].parse().unwrap();
    let hms: Vec<i64> = f[2].split(':').map(|x| x.parse().unwrap()).collect();
    let year: i64 = f[3].parse().unwrap();
    // days from civil (Howard Hinnant)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn auto_tls_certificate_is_ipas() {
    let s = standalone("autocert", &[]);
    let cert = s.cert.to_str().unwrap();
    let (ok, text) = openssl(&["x509", "-in", cert, "-noout", "-text"], None);
    assert!(ok, "{text}");
    // the subjectAltName is critical and holds the advertised IP
    let san = text
        .split("X509v3 Subject Alternative Name:")
        .nth(1)
        .unwrap_or_else(|| panic!("no SAN:\n{text}"));
    assert!(
        san.trim_start().starts_with("critical"),
        "SAN not critical:\n{text}"
    );
    assert_eq!(
        san.lines().nth(1).unwrap().trim(),
        "IP Address:127.0.0.1",
        "{text}"
    );
    assert!(text.contains("NIST CURVE: P-384"), "{text}");
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA384"),
        "{text}"
    );
    // validity: now - 1 h .. now + 30 d
    let (_, dates) = openssl(
        &["x509", "-in", cert, "-noout", "-startdate", "-enddate"],
        None,
    );
    let get = |k: &str| {
        parse_openssl_date(
            dates
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {dates}")),
        )
    };
    let (nb, na) = (get("notBefore="), get("notAfter="));
    assert!(
        (nb - (now() - 3600)).abs() <= 60,
        "notBefore {nb} vs now {}",
        now()
    );
    assert!((na - (now() + 30 * 86400)).abs() <= 60, "notAfter {na}");
    // the file is what the server presents
    let addr = format!("127.0.0.1:{}", s.port);
    let (_, served) = openssl(&["s_client", "-connect", &addr, "-showcerts"], Some(""));
    let pem = std::fs::read_to_string(&s.cert).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let served: String = served.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(
        served.contains(&body),
        "served certificate differs from {cert}"
    );
    s.assert_clean_log();
}

#[test]
fn auto_tls_certifies_an_ipv6_advertise_address() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !common::tools::precondition(ipv6, "an IPv6 loopback (::1)") {
        return;
    }
    let s = standalone(
        "autocert6",
        &["--listen-host", "::1", "--advertise-host", "::1"],
    );
    let (_, text) = openssl(
        &["x509", "-in", s.cert.to_str().unwrap(), "-noout", "-text"],
        None,
    );
    assert!(text.contains("IP Address:0:0:0:0:0:0:0:1"), "{text}");
    assert!(s.agent.log_text().contains("callback URL https://[::1]:"));
}

#[test]
fn only_tls_1_2_and_1_3_with_ipas_aes_gcm_suites() {
    let s = standalone("versions", &[]);
    for v in ["-tls1", "-tls1_1"] {
        let (ok, text) = handshake(s.port, &[v], "DEFAULT");
        assert!(!ok, "{v} accepted:\n{text}");
        assert!(
            text.contains("alert"),
            "{v}: refused by the client, not the agent:\n{text}"
        );
    }
    for v in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = handshake(s.port, &[v], "DEFAULT");
        assert!(ok, "{v} refused:\n{text}");
    }
    // TLS 1.2: AEAD only (no CBC, no SHA-1 MACs)
    for c in [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
    ] {
        let (ok, text) = handshake(s.port, &["-tls1_2"], c);
        assert!(!ok, "{c} accepted:\n{text}");
    }
    for c in [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ] {
        let (ok, text) = handshake(s.port, &["-tls1_2"], c);
        assert!(ok, "{c} refused:\n{text}");
    }
    // IPA's default `tls_cipher_suites` is ECDHE + AES-GCM only; so is ours
    let (ok, text) = handshake(s.port, &["-tls1_2"], "ECDHE-ECDSA-CHACHA20-POLY1305");
    assert!(!ok, "ChaCha20 accepted:\n{text}");
    // the API still answers after all those failed handshakes
    let client = client_trusting(&std::fs::read_to_string(&s.cert).unwrap());
    let (st, _) = get_json(&client, &format!("https://127.0.0.1:{}/v1/status", s.port));
    assert_eq!(st, 200);
}

#[test]
fn tls_min_version_1_3_refuses_1_2() {
    let s = standalone("tls13", &["--tls-min-version", "1.3"]);
    let (ok, text) = handshake(s.port, &["-tls1_2"], "DEFAULT");
    assert!(!ok, "TLS 1.2 accepted:\n{text}");
    let (ok, text) = handshake(s.port, &["-tls1_3"], "DEFAULT");
    assert!(ok, "{text}");
}

/// A client's first request often rides in the same segment as its TLS
/// Finished (rustls does this; Ironic's requests did it under load). The
/// TLS front must serve it at once. Regression: it waited for more bytes
/// from the socket, and Ironic's POST hung until its 30 s read timeout.
#[test]
fn request_sent_with_the_handshake_is_answered() {
    let s = standalone("early", &[]);
    let pem = std::fs::read_to_string(&s.cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    for round in 0..5 {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg.clone()), name).unwrap();
        // written before the handshake: rustls sends it right behind Finished
        let req = format!(
            "GET /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Connection: close\r\n\r\n"
        );
        conn.writer().write_all(req.as_bytes()).unwrap();
        let mut tcp = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut answer = Vec::new();
        let r = tls.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("{\"commands\":"),
            "round {round}: {r:?} {text:?}"
        );
    }
}

/// IPA's functional tests (§8: `test_commands.py` and `test_tls.py`) over
/// the automatic TLS, with the URLs they use (no trailing slash).
#[test]
fn ipa_functional_checks_over_tls() {
    let s = standalone("functional", &[]);
    let client = client_trusting(&std::fs::read_to_string(&s.cert).unwrap());
    let base = format!("https://127.0.0.1:{}", s.port);
    let (st, v) = get_json(&client, &format!("{base}/v1/commands"));
    assert_eq!(st, 401, "{v}");
    let (st, v) = get_json(&client, &format!("{base}/v1/commands?agent_token={TOKEN}"));
    assert_eq!((st, v), (200, json!({"commands": []})));
    let (st, v) = post_json(
        &client,
        &format!("{base}/v1/commands?agent_token={TOKEN}"),
        &json!({"name": "clean.get_clean_steps",
                "params": {"node": {"uuid": "1", "properties": {}, "instance_info": {}},
                           "ports": {}}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["command_error"], json!(null), "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, list) = get_json(&client, &format!("{base}/v1/commands?agent_token={TOKEN}"));
    let cmds = list["commands"].as_array().unwrap();
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0]["command_name"], "get_clean_steps");
    let (st, one) = get_json(
        &client,
        &format!("{base}/v1/commands/{id}?agent_token={TOKEN}"),
    );
    assert_eq!(st, 200);
    assert_eq!(one["id"], id.as_str());
    let (st, _) = post_json(
        &client,
        &format!("{base}/v1/commands?agent_token={TOKEN}"),
        &json!({"name": "bad_extension.fake_command", "params": {}}),
    );
    assert_eq!(st, 404);
    s.assert_clean_log();
}

/// A peer that drips a TLS record one byte at a time cannot hold a
/// connection past the 10 s handshake deadline. Regression found in review:
/// rustls' `complete_io` kept reading inside one call, so the deadline
/// checked between calls never fired, and 64 such peers locked Ironic out.
#[test]
fn a_dripping_handshake_is_cut_at_the_deadline() {
    let s = standalone("drip", &[]);
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    // a handshake record header announcing 16 KiB that never comes
    t.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
    t.set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut closed = false;
    while t0.elapsed() < Duration::from_secs(16) {
        let mut b = [0u8; 64];
        match t.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        if t.write_all(&[0x01]).is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(13),
        "closed only after {:?}",
        t0.elapsed()
    );
    // and the API still answers over TLS
    let client = client_trusting(&std::fs::read_to_string(&s.cert).unwrap());
    let (st, _) = get_json(&client, &format!("https://127.0.0.1:{}/v1/status", s.port));
    assert_eq!(st, 200);
}
