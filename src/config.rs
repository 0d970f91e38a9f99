//! Configuration: command-line flags, IPA's kernel command-line keys and
//! defaults, resolved by one rule: CLI beats kernel cmdline beats default.
//!
//! Every option is one row of [`OPTIONS`]: its name (the CLI flag is
//! `--<name>`, underscores accepted for IPA's oslo spelling), the kernel
//! parameter IPA reads it from (`ipa-...`, see IPA's `config.py`), its type
//! and default. Parsing is pure: [`parse_args`] and [`parse_cmdline`] only
//! collect raw strings, [`resolve`] turns the merged strings into a typed
//! [`Config`]. Only [`load`] touches the filesystem (to read the cmdline).

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Str,
    Bool,
    Uint,
    Float,
    Port,
    Path,
}

struct Opt {
    /// Flag name without dashes, kebab-case.
    name: &'static str,
    /// Kernel parameter IPA reads this from, if any.
    cmdline: Option<&'static str>,
    ty: Ty,
    /// Value placeholder in --help (empty for booleans).
    meta: &'static str,
    help: &'static str,
}

macro_rules! opt {
    ($name:literal, $cmd:expr, $ty:ident, $meta:literal, $help:literal) => {
        Opt {
            name: $name,
            cmdline: $cmd,
            ty: Ty::$ty,
            meta: $meta,
            help: $help,
        }
    };
}

/// Every option the agent implements. Defaults live in [`Config::default`].
const OPTIONS: &[Opt] = &[
    opt!(
        "api-url",
        Some("ipa-api-url"),
        Str,
        "URL[,URL]",
        "Ironic API URL(s); none: no lookup/heartbeat"
    ),
    opt!(
        "inspection-callback-url",
        Some("ipa-inspection-callback-url"),
        Str,
        "URL",
        "POST inspection data here before lookup"
    ),
    opt!(
        "inspection-collectors",
        Some("ipa-inspection-collectors"),
        Str,
        "LIST",
        "inspection collectors [default,logs]"
    ),
    opt!(
        "inspection-dhcp-wait-timeout",
        Some("ipa-inspection-dhcp-wait-timeout"),
        Uint,
        "SECS",
        "wait for DHCP before inspection [60]"
    ),
    opt!(
        "inspection-dhcp-all-interfaces",
        Some("ipa-inspection-dhcp-all-interfaces"),
        Bool,
        "",
        "wait for every NIC, not only BOOTIF"
    ),
    opt!(
        "standalone",
        Some("ipa-standalone"),
        Bool,
        "",
        "serve the API only: no lookup, no heartbeat"
    ),
    opt!("debug", Some("ipa-debug"), Bool, "", "debug logging"),
    opt!(
        "listen-host",
        Some("ipa-listen-host"),
        Str,
        "IP",
        "API bind address [:: or 0.0.0.0]"
    ),
    opt!(
        "listen-port",
        Some("ipa-listen-port"),
        Port,
        "PORT",
        "API port, 0 picks a free one [9999]"
    ),
    opt!(
        "advertise-host",
        Some("ipa-advertise-host"),
        Str,
        "HOST",
        "host in callback_url [auto]"
    ),
    opt!(
        "advertise-port",
        Some("ipa-advertise-port"),
        Port,
        "PORT",
        "port in callback_url [listen port]"
    ),
    opt!(
        "advertise-protocol",
        Some("ipa-advertise-protocol"),
        Str,
        "http|https",
        "scheme in callback_url [auto]"
    ),
    opt!(
        "network-interface",
        Some("ipa-network-interface"),
        Str,
        "NIC",
        "take the advertised IP from this NIC"
    ),
    opt!(
        "ip-lookup-attempts",
        Some("ipa-ip-lookup-attempts"),
        Uint,
        "N",
        "rounds of advertise-IP detection [6]"
    ),
    opt!(
        "ip-lookup-sleep",
        Some("ipa-ip-lookup-timeout"),
        Uint,
        "SECS",
        "sleep between those rounds [10]"
    ),
    opt!(
        "lookup-timeout",
        Some("ipa-lookup-timeout"),
        Uint,
        "SECS",
        "give up lookup after this long [600]"
    ),
    opt!(
        "lookup-interval",
        Some("ipa-lookup-interval"),
        Uint,
        "SECS",
        "first lookup retry interval [1]"
    ),
    opt!(
        "agent-token",
        Some("ipa-agent-token"),
        Str,
        "TOKEN",
        "pre-shared agent token"
    ),
    opt!(
        "insecure",
        Some("ipa-insecure"),
        Bool,
        "",
        "do not verify Ironic's TLS certificate"
    ),
    opt!(
        "cafile",
        Some("ipa-cafile"),
        Path,
        "FILE",
        "CA bundle for Ironic and image servers"
    ),
    opt!(
        "certfile",
        None,
        Path,
        "FILE",
        "client certificate for outbound TLS"
    ),
    opt!("keyfile", None, Path, "FILE", "client key for outbound TLS"),
    opt!(
        "listen-tls",
        None,
        Bool,
        "",
        "serve TLS with --tls-cert-file/--tls-key-file"
    ),
    opt!(
        "tls-cert-file",
        None,
        Path,
        "FILE",
        "static server certificate (PEM)"
    ),
    opt!(
        "tls-key-file",
        None,
        Path,
        "FILE",
        "static server key (PEM)"
    ),
    opt!(
        "enable-auto-tls",
        None,
        Bool,
        "",
        "self-signed TLS when Ironic allows [true]"
    ),
    opt!(
        "auto-tls-allowed-clock-skew",
        None,
        Uint,
        "SECS",
        "backdate the auto-TLS cert [3600]"
    ),
    opt!(
        "tls-min-version",
        Some("ipa-tls-min-version"),
        Str,
        "1.2|1.3",
        "minimum TLS version [1.2]"
    ),
    opt!(
        "tls-certificate-curve",
        Some("ipa-tls-certificate-curve"),
        Str,
        "CURVE",
        "auto-TLS key: p256 or p384 [p384]"
    ),
    opt!(
        "global-request-id",
        Some("ipa-global-request-id"),
        Str,
        "ID",
        "X-OpenStack-Request-ID to send"
    ),
    opt!(
        "ironic-api-version",
        Some("ipa-ironic-api-version"),
        Str,
        "X.Y",
        "force the Ironic API version"
    ),
    opt!(
        "http-request-timeout",
        Some("ipa-http-request-timeout"),
        Uint,
        "SECS",
        "timeout of calls to Ironic [30]"
    ),
    opt!(
        "hardware-initialization-delay",
        Some("ipa-hardware-initialization-delay"),
        Uint,
        "SECS",
        "sleep before start [0]"
    ),
    opt!(
        "disk-wait-attempts",
        Some("ipa-disk-wait-attempts"),
        Uint,
        "N",
        "root-disk wait attempts [10]"
    ),
    opt!(
        "disk-wait-delay",
        Some("ipa-disk-wait-delay"),
        Uint,
        "SECS",
        "delay between them [3]"
    ),
    opt!(
        "collect-lldp",
        Some("ipa-collect-lldp"),
        Bool,
        "",
        "collect LLDP (not implemented: null)"
    ),
    opt!(
        "enable-vlan-interfaces",
        Some("ipa-enable-vlan-interfaces"),
        Str,
        "LIST",
        "VLAN NICs (the ramdisk's /init)"
    ),
    opt!(
        "image-download-connection-timeout",
        Some("ipa-image-download-connection-timeout"),
        Uint,
        "SECS",
        "image stall timeout [60]"
    ),
    opt!(
        "image-download-connection-retries",
        Some("ipa-image-download-connection-retries"),
        Uint,
        "N",
        "image retries [9]"
    ),
    opt!(
        "image-download-connection-retry-interval",
        Some("ipa-image-download-connection-retry-interval"),
        Uint,
        "SECS",
        "between them [10]"
    ),
    opt!(
        "image-download-max-duration",
        Some("ipa-image-download-max-duration"),
        Uint,
        "SECS",
        "cap a download, 0=none [0]"
    ),
    opt!(
        "ntp-server",
        Some("ipa-ntp-server"),
        Str,
        "HOST",
        "NTP server (accepted, not used)"
    ),
    opt!(
        "ignore-bootloader-failure",
        Some("ipa-ignore-bootloader-failure"),
        Bool,
        "",
        "ignore UEFI NVRAM failures"
    ),
    opt!(
        "inject-files-priority",
        Some("ipa-inject-files-priority"),
        Uint,
        "N",
        "priority of inject_files [0]"
    ),
    opt!(
        "efi-system-partition-size",
        None,
        Uint,
        "MIB",
        "ESP of partition images, MiB [550]"
    ),
    opt!(
        "bios-boot-partition-size",
        None,
        Uint,
        "MIB",
        "BIOS boot partition (GPT), MiB [1]"
    ),
    opt!(
        "config-drive-rebuild",
        None,
        Bool,
        "",
        "always write the configdrive as FAT [false]"
    ),
    opt!(
        "guard-special-filesystems",
        Some("ipa-guard-special-filesystems"),
        Bool,
        "",
        "refuse to wipe VMFS/GPFS.. [true]"
    ),
    opt!(
        "driver-name",
        Some("ipa-driver-name"),
        Str,
        "NAME",
        "driver for the old passthru lookup"
    ),
    opt!(
        "md5-enabled",
        None,
        Bool,
        "",
        "accept md5 image checksums [true]"
    ),
    opt!(
        "steps-dir",
        None,
        Path,
        "DIR",
        "script steps [/etc/ironic-agent/steps.d]"
    ),
    opt!(
        "max-request-body",
        None,
        Uint,
        "BYTES",
        "largest API request body [64 MiB]"
    ),
    opt!(
        "root",
        None,
        Path,
        "DIR",
        "read /sys /proc /dev /run /etc under DIR"
    ),
    opt!(
        "cmdline",
        None,
        Path,
        "FILE",
        "kernel command line to read [/proc/cmdline]"
    ),
];

/// Kernel parameters the agent reads that are not in [`OPTIONS`].
const OTHER_CMDLINE_KEYS: &[&str] = &["BOOTIF", "root_device", "boot_method"];

/// IPA kernel parameters the agent knows and deliberately ignores (handled
/// by the ramdisk's /init, or features outside this agent's scope).
const IGNORED_IPA_KEYS: &[&str] = &[
    "ipa-use-mdns",
    "ipa-lldp-timeout",
    "ipa-inspection-benchmarks",
    "ipa-tls-cipher-suites",
    "ipa-emergency-shell",
    "ipa-ssh-key",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// The resolved configuration. Field names follow IPA's option names.
#[derive(Clone, Debug)]
pub struct Config {
    pub api_urls: Vec<String>,
    pub inspection_callback_url: Option<String>,
    /// Empty when not given (IPA's `None`): inspection then runs only with
    /// a callback URL, and uses `default,logs`. Given together with an API
    /// URL, it turns inspection on (`inspector.inspect`).
    pub inspection_collectors: Vec<String>,
    pub inspection_dhcp_wait_timeout: u64,
    pub inspection_dhcp_all_interfaces: bool,
    pub standalone: bool,
    pub debug: bool,
    pub listen_host: Option<IpAddr>,
    pub listen_port: u16,
    pub advertise_host: Option<String>,
    pub advertise_port: Option<u16>,
    pub advertise_protocol: Option<String>,
    pub network_interface: Option<String>,
    pub ip_lookup_attempts: u64,
    pub ip_lookup_sleep: u64,
    pub lookup_timeout: u64,
    pub lookup_interval: u64,
    pub agent_token: Option<String>,
    pub insecure: bool,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub listen_tls: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub enable_auto_tls: bool,
    pub auto_tls_allowed_clock_skew: u64,
    pub tls_min_version: TlsVersion,
    pub tls_certificate_curve: Curve,
    pub global_request_id: Option<String>,
    pub ironic_api_version: Option<(u32, u32)>,
    pub http_request_timeout: u64,
    pub hardware_initialization_delay: u64,
    pub disk_wait_attempts: u64,
    pub disk_wait_delay: u64,
    pub collect_lldp: bool,
    pub enable_vlan_interfaces: Vec<String>,
    pub image_download_connection_timeout: u64,
    pub image_download_connection_retries: u64,
    pub image_download_connection_retry_interval: u64,
    pub image_download_max_duration: u64,
    pub ntp_server: Option<String>,
    pub ignore_bootloader_failure: bool,
    pub inject_files_priority: u64,
    pub guard_special_filesystems: bool,
    /// IPA's `[disk_utils]efi_system_partition_size` and
    /// `bios_boot_partition_size` (MiB), for partition images.
    pub efi_system_partition_size: u64,
    pub bios_boot_partition_size: u64,
    /// IPA's `[DEFAULT]config_drive_rebuild`: rebuild every configdrive as
    /// FAT, not only on disks whose sectors isofs cannot read.
    pub config_drive_rebuild: bool,
    pub driver_name: String,
    pub md5_enabled: bool,
    pub steps_dir: PathBuf,
    pub max_request_body: u64,
    pub root: PathBuf,
    pub cmdline_path: PathBuf,
    /// Raw `BOOTIF` (iPXE `${mac}` or pxelinux `01-aa-bb-...`).
    pub bootif: Option<String>,
    /// Kilo-era `root_device=k=v,k=v` hints from the kernel command line.
    pub root_device_hints: Option<BTreeMap<String, String>>,
    /// `boot_method=vmedia` on the command line.
    pub boot_method: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_urls: vec![],
            inspection_callback_url: None,
            inspection_collectors: vec![],
            inspection_dhcp_wait_timeout: 60,
            inspection_dhcp_all_interfaces: false,
            standalone: false,
            debug: false,
            listen_host: None,
            listen_port: 9999,
            advertise_host: None,
            advertise_port: None,
            advertise_protocol: None,
            network_interface: None,
            ip_lookup_attempts: 6,
            ip_lookup_sleep: 10,
            lookup_timeout: 600,
            lookup_interval: 1,
            agent_token: None,
            insecure: false,
            cafile: None,
            certfile: None,
            keyfile: None,
            listen_tls: false,
            tls_cert_file: None,
            tls_key_file: None,
            enable_auto_tls: true,
            auto_tls_allowed_clock_skew: 3600,
            tls_min_version: TlsVersion::V1_2,
            tls_certificate_curve: Curve::P384,
            global_request_id: None,
            ironic_api_version: None,
            http_request_timeout: 30,
            hardware_initialization_delay: 0,
            disk_wait_attempts: 10,
            disk_wait_delay: 3,
            collect_lldp: false,
            enable_vlan_interfaces: vec![],
            image_download_connection_timeout: 60,
            image_download_connection_retries: 9,
            image_download_connection_retry_interval: 10,
            image_download_max_duration: 0,
            ntp_server: None,
            ignore_bootloader_failure: false,
            inject_files_priority: 0,
            guard_special_filesystems: true,
            config_drive_rebuild: false,
            efi_system_partition_size: ESP_MB,
            bios_boot_partition_size: BIOS_BOOT_MB,
            driver_name: "agent_ipmitool".into(),
            md5_enabled: true,
            steps_dir: PathBuf::from("/etc/ironic-agent/steps.d"),
            max_request_body: 64 * 1024 * 1024,
            root: PathBuf::from("/"),
            cmdline_path: PathBuf::from("/proc/cmdline"),
            bootif: None,
            root_device_hints: None,
            boot_method: None,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(RawArgs),
    Help,
    Version,
}

/// Raw option values keyed by option name (see [`OPTIONS`]).
pub type RawArgs = BTreeMap<&'static str, String>;

/// The kernel command line's values, already mapped to option names, plus
/// the keys outside [`OPTIONS`] and the warnings to log once.
#[derive(Debug, Default, PartialEq)]
pub struct CmdlineParams {
    pub options: RawArgs,
    pub other: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

fn find_opt(flag: &str) -> Option<&'static Opt> {
    let flag = flag.replace('_', "-");
    OPTIONS.iter().find(|o| o.name == flag)
}

/// Parse CLI arguments (without argv\[0\]). Pure: no I/O.
pub fn parse_args<I>(args: I) -> Result<Parsed, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut raw = RawArgs::new();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('d') => {
                raw.insert("debug", "true".into());
            }
            Long(flag) => {
                let flag = flag.to_string();
                let opt = find_opt(&flag).ok_or_else(|| format!("unknown option --{flag}"))?;
                let value = if opt.ty == Ty::Bool {
                    match p.optional_value() {
                        Some(v) => v.string().map_err(|e| e.to_string())?,
                        None => "true".into(),
                    }
                } else {
                    p.value()
                        .map_err(|_| format!("--{} needs a value ({})", opt.name, opt.meta))?
                        .string()
                        .map_err(|e| e.to_string())?
                };
                raw.insert(opt.name, value);
            }
            Value(v) => {
                return Err(format!("unexpected argument {:?}", v.to_string_lossy()));
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Parsed::Run(raw))
}

/// Parse a kernel command line the way IPA does (`utils._read_params_from_file`):
/// split on whitespace, keep `key=value` words, later duplicates win.
/// Pure: no I/O.
pub fn parse_cmdline(text: &str) -> CmdlineParams {
    let mut out = CmdlineParams::default();
    let mut warned = std::collections::BTreeSet::new();
    for word in text.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        if let Some(opt) = OPTIONS.iter().find(|o| o.cmdline == Some(k)) {
            out.options.insert(opt.name, v.to_string());
        } else if OTHER_CMDLINE_KEYS.contains(&k) {
            out.other.insert(k.to_string(), v.to_string());
        } else if k.starts_with("ipa-") && !IGNORED_IPA_KEYS.contains(&k) && warned.insert(k) {
            out.warnings
                .push(format!("ignoring unknown kernel parameter {k}"));
        }
    }
    out
}

/// oslo.config's boolean parsing (`strutils.bool_from_string`, strict).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Parse `root_device=k=v,k=v` (Kilo-era hints; values may not contain ',').
fn parse_root_device(s: &str) -> BTreeMap<String, String> {
    crate::util::collect_map(
        s.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string())),
    )
}

/// Resolve CLI and kernel command line into a [`Config`]: CLI beats cmdline
/// beats default. Pure: no I/O.
pub fn resolve(cli: &RawArgs, cmdline: &CmdlineParams) -> Result<Config, String> {
    let mut merged = cmdline.options.clone();
    for (k, v) in cli {
        merged.insert(k, v.clone());
    }
    let mut c = Config::default();
    for (&name, value) in &merged {
        let opt = OPTIONS
            .iter()
            .find(|o| o.name == name)
            .expect("known option");
        let bad = |why: &str| format!("invalid value {value:?} for {name}: {why}");
        let b = || parse_bool(value).ok_or_else(|| bad("expected true or false"));
        let u = || {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| bad("expected a whole number"))
        };
        let port = || {
            value
                .trim()
                .parse::<u16>()
                .map_err(|_| bad("expected a port number"))
        };
        let path = || PathBuf::from(value);
        debug_assert!(opt.ty != Ty::Float);
        match name {
            "api-url" => {
                c.api_urls = split_list(value);
                for u in &c.api_urls {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(bad("each URL must start with http:// or https://"));
                    }
                }
            }
            "inspection-callback-url" => c.inspection_callback_url = non_empty(value),
            "inspection-collectors" => c.inspection_collectors = split_list(value),
            "inspection-dhcp-wait-timeout" => c.inspection_dhcp_wait_timeout = u()?,
            "inspection-dhcp-all-interfaces" => c.inspection_dhcp_all_interfaces = b()?,
            "standalone" => c.standalone = b()?,
            "debug" => c.debug = b()?,
            "listen-host" => {
                let h = value.trim().trim_start_matches('[').trim_end_matches(']');
                c.listen_host = Some(h.parse().map_err(|_| bad("expected an IP address"))?)
            }
            "listen-port" => c.listen_port = port()?,
            "advertise-host" => c.advertise_host = non_empty(value),
            "advertise-port" => c.advertise_port = Some(port()?),
            "advertise-protocol" => match value.as_str() {
                "http" | "https" => c.advertise_protocol = Some(value.clone()),
                _ => return Err(bad("expected http or https")),
            },
            "network-interface" => c.network_interface = non_empty(value),
            "ip-lookup-attempts" => c.ip_lookup_attempts = u()?,
            "ip-lookup-sleep" => c.ip_lookup_sleep = u()?,
            "lookup-timeout" => c.lookup_timeout = u()?,
            "lookup-interval" => c.lookup_interval = u()?,
            "agent-token" => c.agent_token = non_empty(value),
            "insecure" => c.insecure = b()?,
            "cafile" => c.cafile = Some(path()),
            "certfile" => c.certfile = Some(path()),
            "keyfile" => c.keyfile = Some(path()),
            "listen-tls" => c.listen_tls = b()?,
            "tls-cert-file" => c.tls_cert_file = Some(path()),
            "tls-key-file" => c.tls_key_file = Some(path()),
            "enable-auto-tls" => c.enable_auto_tls = b()?,
            "auto-tls-allowed-clock-skew" => c.auto_tls_allowed_clock_skew = u()?,
            "tls-min-version" => {
                c.tls_min_version = match value.trim() {
                    "1.2" => TlsVersion::V1_2,
                    "1.3" => TlsVersion::V1_3,
                    _ => return Err(bad("expected 1.2 or 1.3")),
                }
            }
            "tls-certificate-curve" => {
                c.tls_certificate_curve = match value.trim().to_ascii_lowercase().as_str() {
                    "p256" | "p-256" | "secp256r1" => Curve::P256,
                    "p384" | "p-384" | "secp384r1" => Curve::P384,
                    _ => return Err(bad("expected p256 or p384")),
                }
            }
            "global-request-id" => c.global_request_id = non_empty(value),
            "ironic-api-version" => {
                let v = value.trim();
                let (ma, mi) = v.split_once('.').ok_or_else(|| bad("expected X.Y"))?;
                c.ironic_api_version = Some((
                    ma.parse().map_err(|_| bad("expected X.Y"))?,
                    mi.parse().map_err(|_| bad("expected X.Y"))?,
                ));
            }
            "http-request-timeout" => c.http_request_timeout = u()?.max(1),
            "hardware-initialization-delay" => c.hardware_initialization_delay = u()?,
            "disk-wait-attempts" => c.disk_wait_attempts = u()?,
            "disk-wait-delay" => c.disk_wait_delay = u()?,
            "collect-lldp" => c.collect_lldp = b()?,
            "enable-vlan-interfaces" => c.enable_vlan_interfaces = split_list(value),
            "image-download-connection-timeout" => {
                c.image_download_connection_timeout = u()?.max(1)
            }
            "image-download-connection-retries" => c.image_download_connection_retries = u()?,
            "image-download-connection-retry-interval" => {
                c.image_download_connection_retry_interval = u()?
            }
            "image-download-max-duration" => c.image_download_max_duration = u()?,
            "ntp-server" => c.ntp_server = non_empty(value),
            "ignore-bootloader-failure" => c.ignore_bootloader_failure = b()?,
            "inject-files-priority" => c.inject_files_priority = u()?,
            "guard-special-filesystems" => c.guard_special_filesystems = b()?,
            "config-drive-rebuild" => c.config_drive_rebuild = b()?,
            "efi-system-partition-size" => {
                c.efi_system_partition_size = u()?;
                if c.efi_system_partition_size == 0 {
                    return Err(bad("an ESP needs at least 1 MiB"));
                }
            }
            "bios-boot-partition-size" => {
                c.bios_boot_partition_size = u()?;
                if c.bios_boot_partition_size == 0 {
                    return Err(bad("a BIOS boot partition needs at least 1 MiB"));
                }
            }
            "driver-name" => c.driver_name = value.trim().to_string(),
            "md5-enabled" => c.md5_enabled = b()?,
            "steps-dir" => c.steps_dir = path(),
            "max-request-body" => c.max_request_body = u()?.max(1024),
            "root" => c.root = path(),
            "cmdline" => c.cmdline_path = path(),
            _ => unreachable!("option {name} has no resolver"),
        }
    }
    c.bootif = cmdline.other.get("BOOTIF").and_then(|s| non_empty(s));
    c.boot_method = cmdline.other.get("boot_method").and_then(|s| non_empty(s));
    c.root_device_hints = cmdline
        .other
        .get("root_device")
        .map(|s| parse_root_device(s))
        .filter(|m| !m.is_empty());
    if c.listen_tls && (c.tls_cert_file.is_none() || c.tls_key_file.is_none()) {
        return Err("--listen-tls needs --tls-cert-file and --tls-key-file".into());
    }
    if c.certfile.is_some() != c.keyfile.is_some() {
        return Err("--certfile and --keyfile go together".into());
    }
    Ok(c)
}

/// Everything `main` needs to start: the config and the warnings to log
/// once logging is up.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Parse the process arguments, read the kernel command line (from
/// `--cmdline FILE`, else `<root>/proc/cmdline`) and resolve.
pub fn load<I>(args: I) -> Result<Result<Loaded, Parsed>, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let cli = match parse_args(args)? {
        Parsed::Run(raw) => raw,
        other => return Ok(Err(other)),
    };
    let cmdline_path = match (cli.get("cmdline"), cli.get("root")) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(root)) => PathBuf::from(root).join("proc/cmdline"),
        (None, None) => PathBuf::from("/proc/cmdline"),
    };
    let (cmdline, mut warnings) = match std::fs::read_to_string(&cmdline_path) {
        Ok(text) => {
            let p = parse_cmdline(&text);
            let w = p.warnings.clone();
            (p, w)
        }
        Err(e) => (
            CmdlineParams::default(),
            vec![format!(
                "reading {}: {e}; using defaults",
                cmdline_path.display()
            )],
        ),
    };
    let mut config = resolve(&cli, &cmdline)?;
    config.cmdline_path = cmdline_path;
    if config.api_urls.is_empty() && config.inspection_callback_url.is_none() && !config.standalone
    {
        // Without an Ironic to talk to there is nothing to look up; serving
        // the API alone is what IPA 13 does too ("Will not heartbeat").
        warnings.push(
            "neither ipa-api-url nor ipa-inspection-callback-url is set: \
             running standalone (API only, no lookup, no heartbeat)"
                .into(),
        );
        config.standalone = true;
    }
    Ok(Ok(Loaded { config, warnings }))
}

/// `--help`, generated from [`OPTIONS`] so it cannot drift. Fits 80 columns.
pub fn help() -> String {
    let mut s = format!(
        "ironic-agent {}\n\
         The OpenStack Ironic Python Agent protocol in one static binary.\n\n\
         Usage: ironic-agent [OPTIONS]\n\n\
         Options also come from the kernel command line (ipa-* keys, BOOTIF,\n\
         root_device=); a flag given here wins. Booleans take an optional\n\
         =true|false. IPA's --api_url spelling is accepted too.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for o in OPTIONS {
        let flag = if o.meta.is_empty() {
            format!("--{}", o.name)
        } else {
            format!("--{} {}", o.name, o.meta)
        };
        if flag.len() <= 30 {
            s += &format!("  {flag:<30} {}\n", o.help);
        } else {
            s += &format!("  {flag}\n  {:<30} {}\n", "", o.help);
        }
        if let Some(k) = o.cmdline {
            let line = format!("  {:<30}   (kernel: {k})", "");
            if line.len() <= 80 {
                s += &format!("{line}\n");
            } else {
                s += &format!("{:>78}\n", format!("(kernel: {k})"));
            }
        }
    }
    s += "  -d                             same as --debug\n";
    s += "  -h, --help                     this text\n";
    s += "  -V, --version                  print the version\n";
    s
}

/// IPA's `[disk_utils]efi_system_partition_size` default
/// (`--efi-system-partition-size`), in MiB.
pub const ESP_MB: u64 = 550;
/// IPA's `[disk_utils]bios_boot_partition_size` default
/// (`--bios-boot-partition-size`), in MiB.
pub const BIOS_BOOT_MB: u64 = 1;

/// Settings Ironic sends in the lookup response's `config` that override
/// local defaults (protocol §2.3).
#[derive(Clone, Debug)]
pub struct LookupSettings {
    pub heartbeat_timeout: u64,
    pub md5_enabled: bool,
    pub permitted_image_formats: Vec<String>,
    pub disable_deep_image_inspection: bool,
    pub agent_skip_bmc_detect: bool,
    pub enable_bios_bootloader_install: bool,
}

impl LookupSettings {
    pub fn from_config(c: &Config) -> Self {
        LookupSettings {
            heartbeat_timeout: 300,
            md5_enabled: c.md5_enabled,
            permitted_image_formats: vec!["raw".into(), "gpt".into(), "qcow2".into()],
            disable_deep_image_inspection: false,
            agent_skip_bmc_detect: false,
            enable_bios_bootloader_install: false,
        }
    }

    /// Apply a lookup response's `config` object; unknown or mistyped keys
    /// are ignored (Ironic adds keys over time).
    pub fn apply(&mut self, cfg: &Map<String, Value>) {
        if let Some(t) = cfg
            .get("heartbeat_timeout")
            .and_then(crate::util::as_u64_lenient)
        {
            if t > 0 {
                self.heartbeat_timeout = t;
            }
        }
        if let Some(b) = cfg
            .get("agent_md5_checksum_enable")
            .and_then(Value::as_bool)
        {
            self.md5_enabled = b;
        }
        if let Some(list) = cfg.get("permitted_image_formats").and_then(Value::as_array) {
            self.permitted_image_formats = list
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
        }
        if let Some(b) = cfg
            .get("disable_deep_image_inspection")
            .and_then(Value::as_bool)
        {
            self.disable_deep_image_inspection = b;
        }
        if let Some(b) = cfg.get("agent_skip_bmc_detect").and_then(Value::as_bool) {
            self.agent_skip_bmc_detect = b;
        }
        if let Some(b) = cfg
            .get("enable_bios_bootloader_install")
            .and_then(Value::as_bool)
        {
            self.enable_bios_bootloader_install = b;
        }
    }
}

/// What the layers below the agent read for a command: the options, the
/// root prefix every /sys, /proc, /dev path goes through, what Ironic's
/// lookup configured and the node it last sent (IPA's `cached_node`).
/// Built by the agent for each call; no lower layer sees the agent itself.
#[derive(Clone)]
pub struct Env<'a> {
    pub config: &'a Config,
    pub root: &'a crate::root::Root,
    pub lookup: LookupSettings,
    pub node: Option<Value>,
}

/// An [`Env`]'s parts, owned: for tests and tools that run a layer without
/// an agent.
pub struct OwnedEnv {
    pub config: Config,
    pub root: crate::root::Root,
    pub lookup: LookupSettings,
    pub node: Option<Value>,
}

impl OwnedEnv {
    pub fn new(config: Config) -> OwnedEnv {
        OwnedEnv {
            root: crate::root::Root::new(&config.root),
            lookup: LookupSettings::from_config(&config),
            node: None,
            config,
        }
    }

    pub fn env(&self) -> Env<'_> {
        Env {
            config: &self.config,
            root: &self.root,
            lookup: self.lookup.clone(),
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_settings_apply() {
        let mut s = LookupSettings::from_config(&Config::default());
        let cfg = serde_json::json!({
            "heartbeat_timeout": "60", "agent_md5_checksum_enable": false,
            "permitted_image_formats": ["raw", "qcow2"], "unknown": 1,
            "agent_skip_bmc_detect": true
        });
        s.apply(cfg.as_object().unwrap());
        assert_eq!(s.heartbeat_timeout, 60);
        assert!(!s.md5_enabled && s.agent_skip_bmc_detect);
        assert_eq!(s.permitted_image_formats, vec!["raw", "qcow2"]);
    }

    fn run(args: &[&str]) -> RawArgs {
        match parse_args(args.iter().copied()).unwrap() {
            Parsed::Run(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cmdline_table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            (
                "quiet ipa-api-url=http://1.2.3.4:6385",
                &[("api-url", "http://1.2.3.4:6385")],
            ),
            ("ipa-debug=1 ipa-debug=0", &[("debug", "0")]),
            ("ipa-ip-lookup-timeout=3", &[("ip-lookup-sleep", "3")]),
            ("ipa-agent-token=abc=def", &[("agent-token", "abc=def")]),
            (
                "ipa-listen-port=1234\nipa-insecure=true",
                &[("listen-port", "1234"), ("insecure", "true")],
            ),
            ("ipa-standalone=1", &[("standalone", "1")]),
        ];
        for (text, want) in cases {
            let p = parse_cmdline(text);
            let want: RawArgs = want
                .iter()
                .map(|(k, v)| (find_opt(k).unwrap().name, v.to_string()))
                .collect();
            assert_eq!(p.options, want, "{text}");
        }
    }

    #[test]
    fn cmdline_other_keys_and_warnings() {
        let p = parse_cmdline(
            "BOOTIF=01-52-54-00-12-34-56 root_device=serial=abc,size=10 ipa-foo=1 ipa-foo=2 ipa-use-mdns=0",
        );
        assert_eq!(p.other["BOOTIF"], "01-52-54-00-12-34-56");
        assert_eq!(
            p.warnings,
            vec!["ignoring unknown kernel parameter ipa-foo"]
        );
        let c = resolve(&RawArgs::new(), &p).unwrap();
        assert_eq!(c.bootif.as_deref(), Some("01-52-54-00-12-34-56"));
        let hints = c.root_device_hints.unwrap();
        assert_eq!(hints["serial"], "abc");
        assert_eq!(hints["size"], "10");
    }

    #[test]
    fn cli_beats_cmdline_beats_default() {
        let cmd = parse_cmdline("ipa-listen-port=1111 ipa-lookup-timeout=5 ipa-api-url=http://a");
        let cli = run(&["--listen-port", "2222", "--api_url=https://b,https://c"]);
        let c = resolve(&cli, &cmd).unwrap();
        assert_eq!(c.listen_port, 2222);
        assert_eq!(c.lookup_timeout, 5);
        assert_eq!(c.lookup_interval, 1);
        assert_eq!(c.api_urls, vec!["https://b", "https://c"]);
    }

    #[test]
    fn booleans() {
        let c = resolve(
            &run(&["--insecure", "--debug=false", "--standalone"]),
            &Default::default(),
        )
        .unwrap();
        assert!(c.insecure && !c.debug && c.standalone);
        for (s, want) in [
            ("yes", Some(true)),
            ("Off", Some(false)),
            ("2", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(s), want, "{s}");
        }
        assert!(resolve(&run(&["--insecure=maybe"]), &Default::default()).is_err());
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(parse_args(["--nope"]).unwrap_err(), "unknown option --nope");
        assert!(parse_args(["--listen-port"])
            .unwrap_err()
            .contains("needs a value"));
        let e = resolve(&run(&["--listen-port", "99999"]), &Default::default()).unwrap_err();
        assert!(e.contains("listen-port"), "{e}");
        let e = resolve(&run(&["--api-url", "ftp://x"]), &Default::default()).unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = resolve(&run(&["--listen-tls"]), &Default::default()).unwrap_err();
        assert!(e.contains("tls-cert-file"), "{e}");
        let e = resolve(
            &run(&["--efi-system-partition-size", "0"]),
            &Default::default(),
        )
        .unwrap_err();
        assert!(e.contains("at least 1 MiB"), "{e}");
    }

    #[test]
    fn typed_values() {
        let cmd = parse_cmdline(
            "ipa-listen-host=[::1] ipa-tls-min-version=1.3 ipa-tls-certificate-curve=p256 \
             ipa-ironic-api-version=1.68 ipa-inspection-collectors=default,logs,pci-devices",
        );
        let c = resolve(&RawArgs::new(), &cmd).unwrap();
        assert_eq!(c.listen_host, Some("::1".parse().unwrap()));
        assert_eq!(c.tls_min_version, TlsVersion::V1_3);
        assert_eq!(c.tls_certificate_curve, Curve::P256);
        assert_eq!(c.ironic_api_version, Some((1, 68)));
        assert_eq!(c.inspection_collectors.len(), 3);
        let c = resolve(
            &run(&[
                "--efi-system-partition-size",
                "1024",
                "--bios-boot-partition-size",
                "2",
                "--config-drive-rebuild",
            ]),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(c.efi_system_partition_size, 1024);
        assert_eq!(c.bios_boot_partition_size, 2);
        assert!(c.config_drive_rebuild);
        let c = resolve(&RawArgs::new(), &Default::default()).unwrap();
        assert_eq!(
            (c.efi_system_partition_size, c.bios_boot_partition_size),
            (550, 1)
        );
        assert!(!c.config_drive_rebuild);
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse_args(["-h"]).unwrap(), Parsed::Help));
        assert!(matches!(
            parse_args(["--version"]).unwrap(),
            Parsed::Version
        ));
        for line in help().lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        // every option is documented and resolvable
        for o in OPTIONS {
            assert!(help().contains(&format!("--{}", o.name)));
        }
    }

    #[test]
    fn every_option_resolves() {
        // A value valid for each type; resolve must know every option.
        for o in OPTIONS {
            let v = match (o.name, o.ty) {
                ("api-url", _) | ("inspection-callback-url", _) => "http://x",
                ("listen-host", _) => "127.0.0.1",
                ("advertise-protocol", _) => "https",
                ("tls-min-version", _) => "1.3",
                ("tls-certificate-curve", _) => "p384",
                ("ironic-api-version", _) => "1.2",
                ("listen-tls", _) => "false",
                (_, Ty::Bool) => "true",
                (_, Ty::Uint) | (_, Ty::Port) | (_, Ty::Float) => "5",
                (_, Ty::Str) | (_, Ty::Path) => "x",
            };
            let mut raw = RawArgs::new();
            raw.insert(o.name, v.to_string());
            if o.name == "certfile" || o.name == "keyfile" {
                raw.insert("certfile", "a".into());
                raw.insert("keyfile", "b".into());
            }
            resolve(&raw, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", o.name));
        }
    }
}
