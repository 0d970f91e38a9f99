//! The API front's request parsing (`api::guard`), as the front runs it on
//! a client's bytes: the head scanner over a growing buffer, `parse_head`,
//! the canonical head handed to tiny_http, the chunked body decoder; then
//! the request target as the API and the log see it; and the same bytes
//! as an image server's answer (`image::http`: response head, framing,
//! chunk-size lines). Checks, besides
//! "never panics": the scanner and the decoder give the same answer
//! however the bytes are split, a canonical head parses back to itself,
//! and an agent token in the query never reaches the logged target.
#![no_main]

use ironic_agent::api::guard::{parse_head, parse_response_head, Chunked, Framing, HeadScanner};
use ironic_agent::image::download::parse_content_range;
use ironic_agent::logbuf::redact_url;
use ironic_agent::util::percent_decode;
use libfuzzer_sys::fuzz_target;

/// The body cap the front enforces (the agent's default request limit).
const MAX_BODY: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // the same bytes as an image server's answer, as image::http reads it
    if let Ok(Some(h)) = ironic_agent::image::http::parse_head(data) {
        let _ = h.framing();
    }
    for line in data.split(|&b| b == b'\n').take(64) {
        let _ = ironic_agent::image::http::chunk_size(line);
    }
    // the head scanner, all at once and one byte at a time
    let whole = HeadScanner::new().scan(data);
    let mut s = HeadScanner::new();
    let mut bytewise = Ok(None);
    for n in 1..=data.len() {
        bytewise = s.scan(&data[..n]);
        if !matches!(bytewise, Ok(None)) {
            break;
        }
    }
    assert_eq!(
        whole, bytewise,
        "the head scanner depends on how reads split"
    );
    let Ok(Some((start, end))) = whole else {
        return;
    };
    let _ = parse_response_head(&data[start..end], false);
    let head = match parse_head(&data[start..end]) {
        Ok(h) => h,
        Err(r) => {
            let _ = r.response();
            return;
        }
    };
    let body = &data[end..];
    // the canonical head tiny_http gets parses back to the same request
    let body_len = match head.framing {
        Framing::None => 0,
        Framing::Length(n) => n.min(body.len() as u64),
        Framing::Chunked => 0,
    };
    let canon = head.canonical(body_len);
    // (a head at the size or field limit may outgrow it: "Name:v" becomes
    // "Name: v", a Content-Length line is added)
    match parse_head(&canon) {
        Ok(again) => {
            assert_eq!(
                (&again.method, &again.target, &again.fields),
                (&head.method, &head.target, &head.fields)
            );
            assert_eq!(again.minor, 1);
        }
        Err(r) => assert!(
            r.status.starts_with("431"),
            "a canonical head is refused: {r:?}"
        ),
    }
    let _ = head.is_head();

    if head.framing == Framing::Chunked {
        let mut a = Vec::new();
        let mut c = Chunked::new();
        let ra = c.feed(body, MAX_BODY, &mut |d| a.extend_from_slice(d));
        let done_a = c.done();
        let mut b = Vec::new();
        let mut c = Chunked::new();
        let mut rb = Ok(0);
        for i in 0..body.len() {
            match c.feed(&body[i..i + 1], MAX_BODY, &mut |d| b.extend_from_slice(d)) {
                Ok(n) => {
                    rb = rb.map(|u| u + n);
                    if c.done() {
                        break;
                    }
                }
                Err(e) => {
                    rb = Err(e);
                    break;
                }
            }
        }
        assert_eq!(ra, rb, "the chunked decoder depends on how reads split");
        assert_eq!(done_a, c.done());
        if ra.is_ok() {
            assert_eq!(a, b);
            assert!(a.len() as u64 <= MAX_BODY);
        }
    }

    // the target as the API reads it and as the log shows it
    let target = head.target.as_str();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let logged = redact_url(target);
    let path = percent_decode(path);
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if percent_decode(k) != "agent_token" {
            continue;
        }
        let token = percent_decode(v);
        if token.len() >= 9
            && token.chars().all(|c| c.is_ascii_alphanumeric())
            && !path.contains(&token)
        {
            assert!(
                !logged.contains(&token),
                "the token {token:?} is in the logged target {logged:?}"
            );
        }
    }
    // a Content-Range value, as an image server's answer carries one
    for line in head.fields.split(|&b| b == b'\n') {
        if let Ok(l) = std::str::from_utf8(line) {
            if let Some((_, v)) = l.split_once(':') {
                let _ = parse_content_range(v);
            }
        }
    }
});
