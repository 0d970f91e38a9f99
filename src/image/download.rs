//! Image downloads over HTTP(S) (IPA's `standby._download_with_proxy` and
//! `ImageDownload`), with what IPA lacks: a dropped connection resumes
//! with `Range: bytes=N-` from the last byte delivered (the caller's
//! running hash keeps its state), and Range requests fetch qcow2 metadata
//! that sits after the data.
//!
//! * One [`Client`] per image write: TLS from `crate::tls::client_tls`
//!   (verified unless `ipa-insecure`, the operator's CA file when given),
//!   the `Authorization` header from `image_request_authorization` (base64
//!   of the full header value) or HTTP basic auth
//!   (`image_server_auth_strategy: http_basic`), `proxies` by URL scheme
//!   with `no_proxy` matched here (requests' `should_bypass_proxies`
//!   rules, with a dot boundary: `example.com` does not cover
//!   `badexample.com`), falling back to the `*_proxy` environment as
//!   requests does.
//! * `Accept-Encoding: identity`: the bytes hashed and written must be the
//!   image's own bytes, and byte offsets must mean the same thing on a
//!   resumed request.
//! * Timeouts: `ipa-image-download-connection-timeout` for connecting, for
//!   the response headers and for each read (a stall), retries
//!   `ipa-image-download-connection-retries` times (consecutive failures
//!   without progress) every `..._retry_interval` seconds, the whole
//!   download capped by `ipa-image-download-max-duration`
//!   (`ImageDownloadTimeoutError`, 408, never retried).
//! * A 4xx answer is final for that URL (IPA: `ImageDownloadFatalError`),
//!   5xx answers and connection errors are retried.

use crate::config::Env;
use crate::error::{AgentError, Kind, Result};

use super::http::field;
use super::info::ImageInfo;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a request or read failed, before it becomes an `AgentError`.
#[derive(Debug)]
pub enum Fail {
    /// Connection problems and 5xx: worth retrying.
    Retry(String),
    /// 4xx and other answers retrying cannot change.
    Fatal(String),
    /// `image_download_max_duration` exceeded.
    Timeout(String),
    /// The server cannot continue a download from an offset.
    NoResume(String),
}

impl Fail {
    pub fn message(&self) -> &str {
        match self {
            Fail::Retry(m) | Fail::Fatal(m) | Fail::Timeout(m) | Fail::NoResume(m) => m,
        }
    }

    /// The IPA error class for a download of `id`.
    pub fn into_error(self, id: &str) -> AgentError {
        let kind = match &self {
            Fail::Fatal(_) => Kind::ImageDownloadFatalError,
            Fail::Timeout(_) => Kind::ImageDownloadTimeoutError,
            Fail::Retry(_) | Fail::NoResume(_) => Kind::ImageDownloadError,
        };
        AgentError::new(
            kind,
            format!("Download of image {id} failed: {}", self.message()),
        )
    }
}

/// `no_proxy` matching (requests' `should_bypass_proxies`): `*` matches
/// everything; IP hosts match an equal address or a CIDR entry; names match
/// an equal entry or a parent domain (`.example.com`, `*.example.com` and
/// `example.com` all cover `a.example.com`); `host:port` entries also
/// require the port.
pub fn bypass_proxy(no_proxy: &str, host: &str, port: Option<u16>) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let entry = entry.to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        if let Some(ip) = ip {
            if let Some((net, bits)) = entry.split_once('/') {
                if let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    if in_network(ip, net, bits) {
                        return true;
                    }
                }
            } else if entry
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                == Ok(ip)
            {
                return true;
            }
            continue;
        }
        let (name, eport) = match entry.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, p.parse::<u16>().ok()),
            _ => (entry.as_str(), None),
        };
        if eport.is_some() && eport != port {
            continue;
        }
        let name = name.trim_start_matches('*').trim_start_matches('.');
        if !name.is_empty() && (host == name || host.ends_with(&format!(".{name}"))) {
            return true;
        }
    }
    false
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Scheme, host and port of a URL.
fn url_parts(url: &str) -> Result<(String, String, Option<u16>)> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| AgentError::msg(format!("invalid URL {url}: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(AgentError::msg(format!(
            "unsupported URL scheme in {url}: only http and https are supported"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| AgentError::msg(format!("invalid URL {url}: no host")))?
        .to_string();
    Ok((scheme, host, uri.port_u16()))
}

/// A validator for conditional requests: a strong ETag or Last-Modified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator(pub String);

impl Validator {
    /// From a response's header fields (names lower-case).
    fn from_fields(h: &[(String, String)]) -> Option<Validator> {
        field(h, "etag")
            .filter(|e| !e.starts_with("W/"))
            .or_else(|| field(h, "last-modified"))
            .map(|v| Validator(v.to_string()))
    }
}

/// ureq's header map as the fields `super::http` gives.
fn ureq_fields(h: &ureq::http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect()
}

/// An image body: straight from the socket (plain HTTP, `super::http`) or
/// through ureq.
enum Body {
    Direct(super::http::Body),
    Ureq(ureq::BodyReader<'static>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Direct(b) => b.read(buf),
            Body::Ureq(b) => b.read(buf),
        }
    }
}

/// What the image stream needs of a 200 or 206 answer.
struct Answer {
    status: u16,
    length: Option<u64>,
    content_range: Option<(u64, u64, Option<u64>)>,
    accepts_ranges: bool,
    validator: Option<Validator>,
    body: Body,
}

impl Answer {
    fn new(status: u16, length: Option<u64>, h: &[(String, String)], body: Body) -> Answer {
        Answer {
            status,
            length,
            content_range: field(h, "content-range").and_then(parse_content_range),
            accepts_ranges: field(h, "accept-ranges")
                .is_some_and(|v| v.eq_ignore_ascii_case("bytes")),
            validator: Validator::from_fields(h),
            body,
        }
    }

    fn from_ureq(resp: ureq::http::Response<ureq::Body>) -> Answer {
        let (parts, body) = resp.into_parts();
        let length = body.content_length();
        let h = ureq_fields(&parts.headers);
        Answer::new(
            parts.status.as_u16(),
            length,
            &h,
            Body::Ureq(body.into_reader()),
        )
    }

    fn from_direct(r: super::http::Response) -> Answer {
        Answer::new(
            r.head.status,
            r.length,
            &r.head.headers,
            Body::Direct(r.body),
        )
    }
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

/// An answer other than 200 or 206, in IPA's words (`ImageDownload`):
/// 4xx is final (416 aside), the rest is retried.
fn status_failure(
    url: &str,
    status: u16,
    body: &mut dyn Read,
    headers: &[(String, String)],
) -> Fail {
    // the first KiB of the body, as text (requests' `resp.text` replaces
    // what is not UTF-8 too)
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        match body.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    let headers: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("'{k}': '{v}'"))
        .collect();
    let msg = format!(
        "Received status code {status} from {url}, expected 200. Response body: {} \
         Response headers: {{{}}}",
        text.trim(),
        headers.join(", ")
    );
    if status < 500 && status != 416 {
        Fail::Fatal(msg)
    } else {
        Fail::Retry(msg)
    }
}

pub struct Client {
    tls: ureq::tls::TlsConfig,
    auth: Option<String>,
    proxies: BTreeMap<String, String>,
    no_proxy: Option<String>,
    timeout: Duration,
    pub retries: u64,
    pub retry_interval: Duration,
    max_duration: Option<Duration>,
    started: Instant,
    agents: Mutex<HashMap<Option<String>, ureq::Agent>>,
}

impl Client {
    /// The download settings of `image_info` and the agent's configuration.
    pub fn new(env: &Env, info: &ImageInfo, id: &str) -> Result<Client> {
        let dl = |msg: String| AgentError::download(id, msg);
        let tls = crate::tls::client_tls(env.config).map_err(|e| dl(e.into_details()))?;
        // IPA: image_request_authorization wins over basic auth
        let auth = if let Some(b64) = info.auth.request_authorization.as_deref() {
            let raw = crate::util::base64_decode(b64)
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| dl("image_request_authorization is not valid base64".into()))?;
            Some(raw)
        } else if info.auth.strategy.as_deref() == Some("http_basic") {
            let user = info.auth.user.as_deref();
            let pass = info.auth.password.as_deref();
            let missing: Vec<&str> = [("user", user), ("password", pass)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
                return Err(dl(format!(
                    "Missing [{}] fields from HTTP(S) basic auth config",
                    list.join(", ")
                )));
            }
            let pair = format!("{}:{}", user.unwrap_or(""), pass.unwrap_or(""));
            Some(format!(
                "Basic {}",
                crate::util::base64_encode(pair.as_bytes())
            ))
        } else {
            None
        };
        let c = &env.config;
        Ok(Client {
            tls,
            auth,
            proxies: info.proxies.clone(),
            no_proxy: info.no_proxy.clone(),
            timeout: Duration::from_secs(c.image_download_connection_timeout.max(1)),
            retries: c.image_download_connection_retries,
            retry_interval: Duration::from_secs(c.image_download_connection_retry_interval),
            max_duration: (c.image_download_max_duration > 0)
                .then(|| Duration::from_secs(c.image_download_max_duration)),
            started: Instant::now(),
            agents: Mutex::new(HashMap::new()),
        })
    }

    /// For unit tests: a client without TLS roots, auth or proxies.
    #[cfg(test)]
    pub fn plain(retries: u64, timeout: Duration) -> Client {
        Client {
            tls: ureq::tls::TlsConfig::builder().build(),
            auth: None,
            proxies: BTreeMap::new(),
            no_proxy: None,
            timeout,
            retries,
            retry_interval: Duration::from_millis(10),
            max_duration: None,
            started: Instant::now(),
            agents: Mutex::new(HashMap::new()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Fail once `image_download_max_duration` has passed (checked before
    /// each request and each read, as IPA checks between chunks).
    pub fn check_deadline(&self) -> Result<(), Fail> {
        match self.max_duration {
            Some(max) if self.started.elapsed() > max => {
                crate::util::log_at!(
                    Error,
                    "Total download timeout ({} seconds) exceeded",
                    max.as_secs()
                );
                Err(Fail::Timeout(format!(
                    "Download exceeded max allowed time ({} seconds)",
                    max.as_secs()
                )))
            }
            _ => Ok(()),
        }
    }

    /// The proxy for `url`, if any: image_info's `proxies` by scheme (or
    /// `all`), else the environment, unless `no_proxy` says to bypass.
    fn proxy_for(&self, url: &str) -> Result<Option<String>> {
        let (scheme, host, port) = url_parts(url)?;
        let env = |n: &str| {
            std::env::var(n)
                .ok()
                .or_else(|| std::env::var(n.to_ascii_uppercase()).ok())
                .filter(|v| !v.is_empty())
        };
        let no_proxy = self.no_proxy.clone().or_else(|| env("no_proxy"));
        if no_proxy
            .as_deref()
            .is_some_and(|np| bypass_proxy(np, &host, port))
        {
            return Ok(None);
        }
        let from_info = self
            .proxies
            .get(&scheme)
            .or_else(|| self.proxies.get("all"))
            .filter(|s| !s.is_empty())
            .cloned();
        if !self.proxies.is_empty() {
            return Ok(from_info);
        }
        Ok(env(&format!("{scheme}_proxy")).or_else(|| env("all_proxy")))
    }

    fn agent_for(&self, url: &str) -> Result<ureq::Agent> {
        let proxy = self.proxy_for(url)?;
        let mut agents = crate::util::lock(&self.agents);
        if let Some(a) = agents.get(&proxy) {
            return Ok(a.clone());
        }
        let p = match &proxy {
            Some(p) => Some(
                ureq::Proxy::new(p)
                    .map_err(|e| AgentError::msg(format!("invalid proxy {p}: {e}")))?,
            ),
            None => None,
        };
        let t = Some(self.timeout);
        let cfg = ureq::Agent::config_builder()
            .tls_config(self.tls.clone())
            .proxy(p)
            .http_status_as_error(false)
            .accept_encoding("identity")
            .user_agent(concat!("ironic-agent/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(t)
            .timeout_send_request(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .max_redirects(10)
            .build();
        let a = ureq::Agent::new_with_config(cfg);
        agents.insert(proxy, a.clone());
        Ok(a)
    }

    /// One GET; `range` = (start, optional inclusive end). Status codes
    /// other than 200/206 become failures with IPA's text.
    pub fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&Validator>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Fail> {
        self.check_deadline()?;
        let agent = self
            .agent_for(url)
            .map_err(|e| Fail::Fatal(e.into_details()))?;
        let mut req = agent.get(url);
        for (n, v) in self.request_fields(range, if_range) {
            req = req.header(n, v);
        }
        let mut resp = req.call().map_err(|e| Fail::Retry(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 200 || status == 206 {
            return Ok(resp);
        }
        let h = ureq_fields(resp.headers());
        Err(status_failure(
            url,
            status,
            &mut resp.body_mut().as_reader(),
            &h,
        ))
    }

    /// The request's own header fields: authorization, and for a range
    /// `Range` (with `If-Range` when a validator is known).
    fn request_fields(
        &self,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&Validator>,
    ) -> Vec<(&'static str, String)> {
        let mut f = vec![];
        if let Some(a) = &self.auth {
            f.push(("Authorization", a.clone()));
        }
        if let Some((start, end)) = range {
            let end = end.map(|e| e.to_string()).unwrap_or_default();
            f.push(("Range", format!("bytes={start}-{end}")));
            if let Some(v) = if_range {
                f.push(("If-Range", v.0.clone()));
            }
        }
        f
    }

    /// `get` with IPA's connection retries: 4xx fails at once, other
    /// failures are retried `retries` times, `retry_interval` apart.
    pub fn get_retrying(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&Validator>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Fail> {
        self.retrying(url, || self.get(url, range, if_range))
    }

    fn retrying<T>(
        &self,
        url: &str,
        get: impl Fn() -> std::result::Result<T, Fail>,
    ) -> std::result::Result<T, Fail> {
        let mut attempt = 0;
        loop {
            match get() {
                Err(Fail::Retry(m)) if attempt < self.retries => {
                    attempt += 1;
                    crate::util::log_at!(Warn, "Unable to connect to {url}, retrying. Error: {m}");
                    std::thread::sleep(self.retry_interval);
                }
                r => return r,
            }
        }
    }

    /// A GET for the image body itself: over plain HTTP without a proxy
    /// through `super::http` (the body read straight from the socket; an
    /// error answer worded as [`Client::get`] words it), otherwise, and for
    /// a redirect or a connection that failed other than by a timeout,
    /// through ureq as [`Client::get`].
    fn get_image(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&Validator>,
    ) -> std::result::Result<Answer, Fail> {
        self.check_deadline()?;
        if super::http::plain_target(url).is_some() && matches!(self.proxy_for(url), Ok(None)) {
            let headers = self.request_fields(range, if_range);
            match super::http::get(url, &headers, self.timeout) {
                Ok(Some(mut r)) if r.head.status != 200 && r.head.status != 206 => {
                    let s = r.head.status;
                    return Err(status_failure(url, s, &mut r.body, &r.head.headers));
                }
                Ok(Some(r)) => {
                    crate::util::log_at!(
                        Debug,
                        "reading the body of {url} straight from the socket"
                    );
                    return Ok(Answer::from_direct(r));
                }
                Ok(None) => {}
                // waiting twice for a server that does not answer helps
                // nobody; anything else is asked again through ureq, whose
                // error texts the retries and logs carry
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Fail::Retry(e.to_string()))
                }
                Err(e) => {
                    crate::util::log_at!(Debug, "{url} over plain HTTP: {e}; asking through ureq")
                }
            }
        }
        self.get(url, range, if_range).map(Answer::from_ureq)
    }

    /// A small text document (a checksum file), IPA's
    /// `_download_with_proxy(...).text`; errors as an `ImageDownloadError`
    /// of the URL.
    pub fn fetch_text(&self, url: &str) -> Result<String> {
        let mut resp = self
            .get_retrying(url, None, None)
            .map_err(|f| f.into_error(url))?;
        let mut text = String::new();
        resp.body_mut()
            .with_config()
            .limit(16 << 20)
            .reader()
            .read_to_string(&mut text)
            .map_err(|e| AgentError::download(url, format!("reading the body: {e}")))?;
        Ok(text)
    }

    /// Bytes `[start, start+len)` of `url` as a reader; the server must
    /// answer 206 for exactly that range (and, with `validator`, for the
    /// same file the image stream reads).
    pub fn range(
        &self,
        url: &str,
        start: u64,
        len: u64,
        validator: Option<&Validator>,
    ) -> std::result::Result<ureq::BodyReader<'static>, Fail> {
        let end = start + len.max(1) - 1;
        let resp = self.get_retrying(url, Some((start, Some(end))), validator)?;
        if resp.status().as_u16() != 206 {
            return Err(Fail::NoResume(format!(
                "{url} does not answer HTTP Range requests (status {} to Range: bytes={start}-{end}{})",
                resp.status().as_u16(),
                if validator.is_some() {
                    ", or the image changed on the server"
                } else {
                    ""
                }
            )));
        }
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        match cr {
            Some((s, e, _)) if s == start && e <= end => {}
            other => {
                return Err(Fail::Fatal(format!(
                    "{url} answered Range: bytes={start}-{end} with Content-Range {other:?}"
                )))
            }
        }
        Ok(resp.into_body().into_reader())
    }
}

/// The image body, read front to back; a dropped connection or a stall is
/// resumed with a Range request from the last byte delivered.
pub struct ImageStream {
    client: std::sync::Arc<Client>,
    pub url: String,
    reader: Option<Body>,
    /// Bytes delivered so far.
    pub pos: u64,
    /// The image size, when the server said (Content-Length).
    pub total: Option<u64>,
    pub validator: Option<Validator>,
    /// The server announced `Accept-Ranges: bytes`.
    pub accepts_ranges: bool,
    /// Consecutive failures without progress.
    failures: u64,
    /// Resumes done, for the final log line.
    pub resumes: u64,
}

impl ImageStream {
    /// GET `url` with IPA's connection retries.
    pub fn open(client: std::sync::Arc<Client>, url: &str) -> std::result::Result<Self, Fail> {
        let a = client.retrying(url, || client.get_image(url, None, None))?;
        Ok(ImageStream {
            client,
            url: url.to_string(),
            reader: Some(a.body),
            pos: 0,
            total: a.length,
            validator: a.validator,
            accepts_ranges: a.accepts_ranges,
            failures: 0,
            resumes: 0,
        })
    }

    /// Continue from `self.pos` after a failure.
    fn resume(&mut self) -> std::result::Result<(), Fail> {
        self.reader = None;
        let a =
            self.client
                .get_image(&self.url, Some((self.pos, None)), self.validator.as_ref())?;
        match a.status {
            206 => match a.content_range {
                Some((start, _, total))
                    if start == self.pos
                        && (total.is_none() || self.total.is_none() || total == self.total) => {}
                other => {
                    return Err(Fail::NoResume(format!(
                        "{} answered Range: bytes={}- with Content-Range {other:?}; cannot \
                         resume",
                        self.url, self.pos
                    )))
                }
            },
            // the server ignored the range (or the file changed): only a
            // download that has delivered nothing yet may start over
            _ if self.pos == 0 => {
                self.total = a.length;
                self.validator = a.validator;
            }
            s => {
                return Err(Fail::NoResume(format!(
                    "{} answered status {s} instead of 206 to Range: bytes={}-{} (no Range \
                     support, or the image changed on the server); cannot resume after {} bytes",
                    self.url,
                    self.pos,
                    if self.validator.is_some() {
                        " with If-Range"
                    } else {
                        ""
                    },
                    self.pos
                )))
            }
        }
        self.resumes += 1;
        crate::util::log_at!(
            Info,
            "resumed the download of {} at byte {}",
            self.url,
            self.pos
        );
        self.reader = Some(a.body);
        Ok(())
    }

    /// Read into `buf`; 0 at the end of the image.
    pub fn read(&mut self, buf: &mut [u8]) -> std::result::Result<usize, Fail> {
        loop {
            self.client.check_deadline()?;
            let r = match self.reader.as_mut() {
                Some(rd) => rd.read(buf),
                None => Err(std::io::Error::other("not connected")),
            };
            let err = match r {
                Ok(0) if self.total.is_some_and(|t| self.pos < t) => {
                    format!(
                        "the connection closed at byte {} of {:?}",
                        self.pos, self.total
                    )
                }
                Ok(n) => {
                    self.pos += n as u64;
                    if n > 0 {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) => e.to_string(),
            };
            // IPA's stall message when the per-read timeout fired
            let err = if err.to_ascii_lowercase().contains("timeout")
                || err.to_ascii_lowercase().contains("timed out")
            {
                format!("Timed out reading next chunk from webserver ({err})")
            } else {
                err
            };
            loop {
                self.failures += 1;
                if self.failures > self.client.retries {
                    return Err(Fail::Retry(format!(
                        "Unable to read the image from {} at byte {}: {err} (after {} attempts)",
                        self.url, self.pos, self.failures
                    )));
                }
                crate::util::log_at!(
                    Warn,
                    "reading {} failed at byte {}: {err}; resuming in {} s (attempt {} of {})",
                    self.url,
                    self.pos,
                    self.client.retry_interval.as_secs(),
                    self.failures,
                    self.client.retries
                );
                std::thread::sleep(self.client.retry_interval);
                match self.resume() {
                    Ok(()) => break,
                    Err(Fail::Retry(m)) => crate::util::log_at!(Warn, "resuming failed: {m}"),
                    Err(f) => return Err(f),
                }
            }
        }
    }

    /// Fill `buf` completely unless the image ends first.
    pub fn read_full(&mut self, buf: &mut [u8]) -> std::result::Result<usize, Fail> {
        let mut n = 0;
        while n < buf.len() {
            match self.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Open the first of `urls` that answers (IPA's `ImageDownload.__init__`).
/// A 4xx answer is final for its URL; the next URL is still tried (IPA
/// stops at the first 4xx, which defeats the point of a URL list).
pub fn open_first(
    client: &std::sync::Arc<Client>,
    urls: &[String],
    id: &str,
) -> Result<ImageStream> {
    let mut details = vec![];
    let mut fatal = None;
    for url in urls {
        crate::util::log_at!(Info, "Attempting to download image from {url}");
        match ImageStream::open(client.clone(), url) {
            Ok(s) => return Ok(s),
            Err(Fail::Timeout(m)) => return Err(Fail::Timeout(m).into_error(id)),
            Err(f) => {
                let msg = format!(
                    "URL: {url}; time: {:.3} seconds. Error: {}",
                    client.elapsed().as_secs_f64(),
                    f.message()
                );
                crate::util::log_at!(Warn, "{msg}");
                details.push(msg);
                if let Fail::Fatal(_) = f {
                    fatal = Some(());
                }
            }
        }
    }
    let kind = if fatal.is_some() && details.len() == 1 {
        Kind::ImageDownloadFatalError
    } else {
        Kind::ImageDownloadError
    };
    Err(AgentError::new(
        kind,
        format!("Download of image {id} failed: {}", details.join("\n ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_rules() {
        assert!(bypass_proxy("*", "anything", None));
        assert!(bypass_proxy("example.com", "example.com", None));
        assert!(bypass_proxy("example.com", "a.b.example.com", None));
        assert!(bypass_proxy(".example.com", "a.example.com", None));
        assert!(bypass_proxy("*.example.com", "a.example.com", None));
        assert!(!bypass_proxy("example.com", "badexample.com", None));
        assert!(bypass_proxy(" foo , Example.COM ", "EXAMPLE.com", None));
        assert!(bypass_proxy("example.com:8080", "example.com", Some(8080)));
        assert!(!bypass_proxy("example.com:8080", "example.com", Some(80)));
        assert!(bypass_proxy("10.0.0.0/8", "10.1.2.3", None));
        assert!(!bypass_proxy("10.0.0.0/8", "11.1.2.3", None));
        assert!(bypass_proxy("192.168.1.5", "192.168.1.5", None));
        assert!(bypass_proxy("fd00::/8", "[fd00::1]", None));
        assert!(bypass_proxy("[::1]", "[::1]", None));
        assert!(!bypass_proxy("", "x", None));
        assert!(!bypass_proxy("10.0.0.0/33", "10.0.0.1", None));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, 199, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }

    #[test]
    fn url_checks() {
        assert!(url_parts("ftp://h/x")
            .unwrap_err()
            .details
            .contains("scheme"));
        assert_eq!(
            url_parts("https://[::1]:8443/x").unwrap(),
            ("https".into(), "[::1]".into(), Some(8443))
        );
    }
}
