//! ironic-agent: start-up sequence (IPA's `IronicPythonAgent.run`, protocol
//! §2.1) and exit codes.
//!
//! parse config → logging → hardware managers → (inspection) → lookup →
//! TLS → API listening → heartbeat thread → serve until an extension stops
//! the API. Exit codes: 0 after `--help`/`--version` or a clean stop, 1 when
//! lookup gives up or the API cannot start, 2 on a bad command line.

use ironic_agent::agent::Agent;
use ironic_agent::config::{self, Config, Parsed, TlsVersion};
use ironic_agent::ironic::{self, heartbeat::Heartbeater, lookup, Client};
use ironic_agent::{api, logbuf, tls};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    std::process::exit(run());
}

/// Sleep forever: what IPA does after a rescue or lockdown, or when it must
/// not talk to Ironic (masked token), so the ramdisk's respawn loop does not
/// restart it.
fn idle_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The API bind address: `ipa-listen-host`, else `::` when the kernel has
/// IPv6 (dual-stack), else 0.0.0.0.
fn listen_addr(c: &Config) -> SocketAddr {
    let ip = c.listen_host.unwrap_or_else(|| {
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    });
    SocketAddr::new(ip, c.listen_port)
}

/// IPA's `_wait_for_interface`: up to 60 s for any NIC with a MAC.
fn wait_for_interface(agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inv = agent.inventory();
        if inv
            .map(|i| i.interfaces.iter().any(|n| n.mac_address.is_some()))
            .unwrap_or(false)
        {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!("no network interface with a MAC address found; lookup will probably fail");
            return;
        }
        log::debug!("network is not up yet; retrying");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// A private directory (0700) for the API's Unix socket, the certificate
/// and, in standalone mode, the generated token.
fn run_dir() -> std::io::Result<PathBuf> {
    api::front::private_socket_path().map(|p| p.parent().expect("socket in a dir").to_path_buf())
}

fn write_private(path: &std::path::Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(data.as_bytes())
}

/// The lookup's `config.tls_min_version` overrides ours, as IPA's
/// `process_lookup_data` does; the API server starts after lookup, so it
/// serves with it (Ironic 39 sends "1.3": its conductor connects with TLS
/// 1.3 only). `tls_cipher_suites` is an OpenSSL cipher string for TLS 1.2;
/// the agent's fixed list already is IPA's default one (ECDHE with AES-GCM,
/// `tls.rs::provider`), so it is not applied.
fn lookup_tls_settings(c: &Config, found: Option<&lookup::Found>) -> Config {
    let mut out = c.clone();
    let Some(cfg) = found.and_then(|f| f.content.get("config")) else {
        return out;
    };
    match cfg.get("tls_min_version").and_then(|v| v.as_str()) {
        Some("1.3") => out.tls_min_version = TlsVersion::V1_3,
        Some("1.2") => out.tls_min_version = TlsVersion::V1_2,
        Some(other) => log::warn!("ignoring Ironic's unknown tls_min_version {other:?}"),
        None => {}
    }
    if out.tls_min_version != c.tls_min_version {
        log::info!(
            "Ironic sets the minimum TLS version to {:?}",
            out.tls_min_version
        );
    }
    if let Some(suites) = cfg.get("tls_cipher_suites").and_then(|v| v.as_str()) {
        log::warn!(
            "not applying Ironic's tls_cipher_suites {suites:?}: this agent offers only \
             IPA's default TLS 1.2 suites (ECDHE-ECDSA/RSA with AES-256/128-GCM)"
        );
    }
    out
}

fn run() -> i32 {
    let loaded = match config::load(std::env::args_os().skip(1)) {
        Ok(Ok(l)) => l,
        Ok(Err(Parsed::Help)) => {
            print!("{}", config::help());
            return 0;
        }
        Ok(Err(_)) => {
            println!("ironic-agent {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            eprintln!("ironic-agent: {}\nTry 'ironic-agent --help'.", e.details);
            return 2;
        }
    };
    let logs = logbuf::init(loaded.config.debug);
    log::info!("starting ironic-agent {}", env!("CARGO_PKG_VERSION"));
    for f in &loaded.files {
        log::info!("read configuration file {}", f.display());
    }
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    log::debug!("configuration: {}", loaded.config.to_log());
    let _ = tls::provider().install_default();
    let mut config = loaded.config;
    if config.hardware_initialization_delay > 0 {
        log::info!(
            "waiting {} s before proceeding",
            config.hardware_initialization_delay
        );
        std::thread::sleep(Duration::from_secs(config.hardware_initialization_delay));
    }
    let dir = match run_dir() {
        Ok(d) => d,
        Err(e) => {
            log::error!(
                "creating a private run directory under {}: {e}",
                std::env::temp_dir().display()
            );
            return 1;
        }
    };
    if config.standalone && config.agent_token.is_none() {
        // Never accept unauthenticated commands: make a token and tell the
        // operator once, on stderr only (not into the log buffer that
        // collect_system_logs ships).
        let mut b = [0u8; 32];
        if let Err(e) = ironic_agent::sys::getrandom(&mut b) {
            log::error!("generating an agent token: {e}");
            return 1;
        }
        let token = ironic_agent::util::base64_encode(&b).replace(['+', '/', '='], "");
        let file = dir.join("agent-token");
        let _ = write_private(&file, &token);
        // one write(2): stderr is unbuffered, and eprintln! would write the
        // pieces separately, so a reader of the console could see half a token
        let line = format!(
            "ironic-agent: standalone agent token: {token} (also in {})\n",
            file.display()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        config.agent_token = Some(token);
    }
    let agent = Arc::new(Agent::new(config, logs));
    let c = &agent.config;
    let https = c
        .api_urls
        .iter()
        .chain(&c.inspection_callback_url)
        .any(|u| u.starts_with("https://"));
    if https && !c.insecure && c.cafile.is_none() && tls::system_ca_bundle(&c.root).is_none() {
        log::warn!(
            "no CA to verify Ironic's HTTPS certificate: give ipa-cafile, put a CA bundle \
             at /etc/ssl/certs/ca-certificates.crt or set ipa-insecure=1"
        );
    }

    // Inspection, then lookup (unless standalone).
    let mut client: Option<Arc<Client>> = None;
    let mut found: Option<lookup::Found> = None;
    if !c.standalone {
        wait_for_interface(&agent);
        let mut node_uuid = None;
        if ironic::inspect::enabled(&agent) {
            match tls::client_tls(c) {
                Ok(t) => node_uuid = ironic::inspect::inspect(&agent, t),
                Err(e) => log::error!("inspection: {}", e.details),
            }
        }
        if !c.api_urls.is_empty() {
            let cl = match Client::new(c, &c.api_urls) {
                Ok(cl) => Arc::new(cl),
                Err(e) => {
                    log::error!("configuring the Ironic client: {}", e.details);
                    return 1;
                }
            };
            let timeout = Some(Duration::from_secs(c.lookup_timeout));
            match lookup::lookup_node(&agent, &cl, node_uuid.as_deref(), timeout, &|| true) {
                Ok(f) => {
                    if let Err(e) = agent.apply_lookup_data(&f.content) {
                        log::error!("{e}");
                        idle_forever();
                    }
                    found = Some(f);
                }
                Err(e) => {
                    log::error!("{e}");
                    log::error!(
                        "giving up: lookup did not succeed within {} s",
                        c.lookup_timeout
                    );
                    return 1;
                }
            }
            client = Some(cl);
        }
    }
    if agent.root.exists("/etc/.rescued") {
        log::info!("found the rescue marker /etc/.rescued: not serving the API");
        idle_forever();
    }

    // Where we listen and what we advertise.
    let bind = listen_addr(c);
    let listener = match TcpListener::bind(bind) {
        Ok(l) => l,
        Err(e) => {
            log::error!("binding the API to {bind}: {e}");
            return 1;
        }
    };
    let local = listener.local_addr().unwrap_or(bind);
    let advertise_host = if let Some(cl) = &client {
        match ironic::advertise_host(&agent, &cl.hosts()) {
            Ok(h) => h,
            Err(e) => {
                log::error!("{e}");
                return 1;
            }
        }
    } else {
        c.advertise_host.clone().unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                "127.0.0.1".into()
            } else {
                local.ip().to_string()
            }
        })
    };
    let advertise_port = c.advertise_port.unwrap_or(local.port());

    // TLS: static files, else automatic when Ironic can take our
    // certificate (API ≥ 1.68) or there is no Ironic, else plain HTTP.
    let tls_config = lookup_tls_settings(c, found.as_ref());
    let server_tls = if c.listen_tls {
        let (cert, key) = (
            c.tls_cert_file.as_ref().expect("checked"),
            c.tls_key_file.as_ref().expect("checked"),
        );
        match tls::static_tls(cert, key, tls_config.tls_min_version) {
            Ok(t) => Some((t, false)),
            Err(e) => {
                log::error!("{}", e.details);
                return 1;
            }
        }
    } else if c.enable_auto_tls {
        let supported = match &client {
            Some(cl) if !found.as_ref().is_some_and(|f| f.passthru) => {
                cl.api_version() >= ironic::AGENT_VERIFY_CA_IRONIC_VERSION
            }
            Some(_) => false,
            None => true,
        };
        if supported {
            let ip: IpAddr = match advertise_host.parse() {
                Ok(ip) => ip,
                Err(_) => {
                    log::error!(
                        "automatic TLS needs an IP address to certify, not {advertise_host:?}"
                    );
                    return 1;
                }
            };
            let hostname = agent
                .root
                .read("/proc/sys/kernel/hostname")
                .unwrap_or_default();
            match tls::auto_tls(ip, &hostname, &tls_config) {
                Ok(t) => Some((t, true)),
                Err(e) => {
                    log::error!("{}", e.details);
                    return 1;
                }
            }
        } else {
            log::warn!("Ironic does not support automated TLS (API < 1.68): serving plain HTTP");
            None
        }
    } else {
        log::warn!("automatic TLS disabled: serving plain HTTP");
        None
    };
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let protocol = match (&server_tls, &c.advertise_protocol) {
        (Some(_), _) => "https".to_string(),
        (None, Some(p)) => p.clone(),
        (None, None) => "http".into(),
    };
    let callback_url = format!(
        "{protocol}://{}:{advertise_port}",
        ironic::wrap_ipv6(&advertise_host)
    );

    // Plain or TLS, clients reach tiny_http only through the front
    // (src/api/front.rs), over a private Unix socket.
    let sock = dir.join("api.sock");
    let unix = match std::os::unix::net::UnixListener::bind(&sock) {
        Ok(u) => u,
        Err(e) => {
            log::error!("binding the internal API socket {}: {e}", sock.display());
            return 1;
        }
    };
    if server_tls.is_none() {
        if let Err(e) = ironic_agent::sys::net::set_nodelay(&listener) {
            log::warn!("setting TCP_NODELAY on the API socket: {e}");
        }
    }
    let tls_config = server_tls.as_ref().map(|(t, _)| t.config.clone());
    if let Err(e) = api::front::start(listener, tls_config, sock, agent.clone()) {
        log::error!("starting the API front: {e}");
        return 1;
    }
    let server = tiny_http::Server::from_listener(unix, None);
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            log::error!("starting the API server: {e}");
            return 1;
        }
    };
    let mut verify_ca = None;
    if let Some((t, auto)) = &server_tls {
        let cert = dir.join("agent.crt");
        if let Err(e) = write_private(&cert, &t.cert_pem) {
            log::warn!("writing {}: {e}", cert.display());
        }
        log::info!("TLS certificate: {}", cert.display());
        if *auto {
            verify_ca = Some(t.cert_pem.clone());
        }
    }
    log::info!("API listening on {scheme}://{local}; callback URL {callback_url}");

    if let (Some(cl), Some(f)) = (client, found) {
        let hb = Heartbeater {
            agent: agent.clone(),
            client: cl,
            node_uuid: f.content["node"]["uuid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            callback_url,
            verify_ca,
            passthru: f.passthru,
        };
        if let Err(e) = hb.spawn() {
            log::error!("starting the heartbeat thread: {e}");
            return 1;
        }
    }
    api::serve(&agent, &server, scheme);
    log::info!("the API was stopped by a command; idling");
    idle_forever();
}
