//! Configuration: IPA's options from the kernel command line, IPA's config
//! files, the environment and flags, merged in IPA's order.
//!
//! Every option is one row of [`OPTIONS`]: its flag (`--<flag>`; IPA's
//! spelling with underscores is accepted too), the kernel parameter IPA
//! reads it from (`ipa-...`, IPA's `config.py`), the config-file section
//! IPA registers it in (its key there is the flag with underscores, IPA's
//! option name), its default as text, its help line, and the [`Config`]
//! field it sets. [`Config::default`], [`resolve`] and [`help`] all read
//! the table, so a default shown by `--help` is the default in force
//! (tests/config.rs checks it against the binary).
//!
//! Precedence, lowest first, as IPA's (`config.py` evaluates every `ipa-*`
//! key as the option's *default*; oslo.config `cfg.py:ConfigOpts._do_get`,
//! `_Namespace._parse_cli_opts_from_config_file`,
//! `ConfigOpts._parse_config_files`; `cmd/agent.py:run`):
//!
//! 1. the table's default;
//! 2. the kernel command line;
//! 3. config files and flags, in the order oslo.config reads them, the
//!    last one winning: `/etc/ironic-python-agent.conf` (unless a
//!    `--config-file` is given), `/etc/ironic-python-agent.d/*.conf` (unless
//!    a `--config-dir` is given; the directory IPA's ramdisk passes with
//!    `--config-dir`), then the arguments left to right, each
//!    `--config-file FILE` and `--config-dir DIR` read where it stands;
//! 4. `OS_<SECTION>__<KEY>` environment variables: they beat values from
//!    files, and a flag only when the option is also set in some file
//!    (oslo's location rule);
//! 5. [`KERNEL_OVERRIDES`] (`ipa-debug`), which IPA applies with
//!    `CONF.set_override` after parsing: they beat everything.
//!
//! Parsing is pure: [`parse_args`], [`parse_cmdline`], [`file_settings`]
//! and [`resolve`] take text and return values; only [`load`] reads the
//! kernel command line, the files (under `--root`) and the environment.

mod ini;

use crate::error::{AgentError, Result};
use crate::root::Root;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use ini::{parse as parse_ini, Entry as IniEntry};

/// IPA's default config file (oslo.config's `find_config_files` for the
/// program `ironic-python-agent`), read under `--root` when present and no
/// `--config-file` is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/ironic-python-agent.conf";
/// The directory IPA's ramdisk names with `--config-dir`
/// (ironic-python-agent-builder's `ironic-python-agent.service`), read
/// under `--root` when present and no `--config-dir` is given.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/ironic-python-agent.d";

/// Kernel parameters that IPA applies with `CONF.set_override` and that
/// therefore beat config files and flags (`cmd/agent.py:run`: "Debug option
/// comes from oslo.log, allow overriding it via kernel cmdline").
pub const KERNEL_OVERRIDES: &[&str] = &["ipa-debug"];

/// Where an option's value goes, and how its text is parsed. Booleans take
/// an optional value on the command line (`--insecure`, `--insecure=no`).
#[derive(Clone, Copy)]
enum Field {
    Bool(fn(&mut Config) -> &mut bool),
    /// A whole number of seconds, attempts, MiB...
    Uint(fn(&mut Config) -> &mut u64),
    Port(fn(&mut Config) -> &mut u16),
    /// Text; empty is unset.
    Text(fn(&mut Config) -> &mut Option<String>),
    /// Comma-separated; empty items dropped.
    List(fn(&mut Config) -> &mut Vec<String>),
    File(fn(&mut Config) -> &mut Option<PathBuf>),
    /// Anything else: a parser of its own, failing with the reason.
    Parse(fn(&mut Config, &str) -> std::result::Result<(), &'static str>),
    /// `--config-file` and `--config-dir`: read where they stand in argv.
    ConfigFile,
    ConfigDir,
}

/// One option. See the module documentation.
pub struct Opt {
    /// The flag without dashes, kebab-case. In config files the key is
    /// this with underscores (IPA's option name).
    pub flag: &'static str,
    /// The kernel parameter IPA reads it from; "" for none.
    pub kernel: &'static str,
    /// IPA's config-file section (`DEFAULT`, `disk_utils`); "" when config
    /// files and the environment cannot set it.
    pub section: &'static str,
    /// The value's placeholder in `--help` (unused for booleans).
    pub meta: &'static str,
    /// The default, as a user would write it; "" for unset.
    pub default: &'static str,
    pub help: &'static str,
    field: Field,
}

impl std::fmt::Debug for Opt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.flag)
    }
}

impl PartialEq for Opt {
    fn eq(&self, other: &Opt) -> bool {
        self.flag == other.flag
    }
}

const D: &str = "DEFAULT";

/// Every option the agent reads, in `--help` order.
pub static OPTIONS: &[Opt] = &[
    Opt {
        flag: "api-url",
        kernel: "ipa-api-url",
        section: D,
        meta: "URL[,URL]",
        default: "",
        help: "Ironic API URL(s); none: no lookup/heartbeat",
        field: Field::Parse(|c, v| {
            c.api_urls = split_list(v);
            let http = |u: &String| u.starts_with("http://") || u.starts_with("https://");
            if !c.api_urls.iter().all(http) {
                return Err("each URL must start with http:// or https://");
            }
            Ok(())
        }),
    },
    Opt {
        flag: "inspection-callback-url",
        kernel: "ipa-inspection-callback-url",
        section: D,
        meta: "URL",
        default: "",
        help: "POST inspection data here before lookup",
        field: Field::Text(|c| &mut c.inspection_callback_url),
    },
    Opt {
        flag: "inspection-collectors",
        kernel: "ipa-inspection-collectors",
        section: D,
        meta: "LIST",
        default: "",
        help: "inspection collectors; unset: default,logs",
        field: Field::List(|c| &mut c.inspection_collectors),
    },
    Opt {
        flag: "inspection-dhcp-wait-timeout",
        kernel: "ipa-inspection-dhcp-wait-timeout",
        section: D,
        meta: "SECS",
        default: "60",
        help: "wait for DHCP before inspection",
        field: Field::Uint(|c| &mut c.inspection_dhcp_wait_timeout),
    },
    Opt {
        flag: "inspection-dhcp-all-interfaces",
        kernel: "ipa-inspection-dhcp-all-interfaces",
        section: D,
        meta: "",
        default: "false",
        help: "wait for every NIC, not only BOOTIF",
        field: Field::Bool(|c| &mut c.inspection_dhcp_all_interfaces),
    },
    Opt {
        // Not from files: IPA removed the option so that a config file
        // cannot turn standalone on (de726d4a).
        flag: "standalone",
        kernel: "ipa-standalone",
        section: "",
        meta: "",
        default: "false",
        help: "API only: no lookup, no heartbeat",
        field: Field::Bool(|c| &mut c.standalone),
    },
    Opt {
        // oslo.log's option; `ipa-debug` overrides (KERNEL_OVERRIDES).
        flag: "debug",
        kernel: "ipa-debug",
        section: D,
        meta: "",
        default: "false",
        help: "debug logging",
        field: Field::Bool(|c| &mut c.debug),
    },
    Opt {
        flag: "listen-host",
        kernel: "ipa-listen-host",
        section: D,
        meta: "IP",
        default: "",
        help: "API bind address; unset: :: or 0.0.0.0",
        field: Field::Parse(|c, v| {
            let h = v.trim().trim_start_matches('[').trim_end_matches(']');
            c.listen_host = Some(h.parse().map_err(|_| "expected an IP address")?);
            Ok(())
        }),
    },
    Opt {
        flag: "listen-port",
        kernel: "ipa-listen-port",
        section: D,
        meta: "PORT",
        default: "9999",
        help: "API port, 0 picks a free one",
        field: Field::Port(|c| &mut c.listen_port),
    },
    Opt {
        flag: "advertise-host",
        kernel: "ipa-advertise-host",
        section: D,
        meta: "HOST",
        default: "",
        help: "host in callback_url; unset: auto",
        field: Field::Text(|c| &mut c.advertise_host),
    },
    Opt {
        flag: "advertise-port",
        kernel: "ipa-advertise-port",
        section: D,
        meta: "PORT",
        default: "",
        help: "port in callback_url; unset: listen port",
        field: Field::Parse(|c, v| {
            c.advertise_port = Some(port(v)?);
            Ok(())
        }),
    },
    Opt {
        flag: "advertise-protocol",
        kernel: "ipa-advertise-protocol",
        section: D,
        meta: "http|https",
        default: "",
        help: "scheme in callback_url; unset: auto",
        field: Field::Parse(|c, v| match v {
            "http" | "https" => {
                c.advertise_protocol = Some(v.to_string());
                Ok(())
            }
            _ => Err("expected http or https"),
        }),
    },
    Opt {
        flag: "network-interface",
        kernel: "ipa-network-interface",
        section: D,
        meta: "NIC",
        default: "",
        help: "take the advertised IP from this NIC",
        field: Field::Text(|c| &mut c.network_interface),
    },
    Opt {
        flag: "ip-lookup-attempts",
        kernel: "ipa-ip-lookup-attempts",
        section: D,
        meta: "N",
        default: "6",
        help: "rounds of advertise-IP detection",
        field: Field::Uint(|c| &mut c.ip_lookup_attempts),
    },
    Opt {
        flag: "ip-lookup-sleep",
        kernel: "ipa-ip-lookup-timeout",
        section: D,
        meta: "SECS",
        default: "10",
        help: "sleep between those rounds",
        field: Field::Uint(|c| &mut c.ip_lookup_sleep),
    },
    Opt {
        flag: "lookup-timeout",
        kernel: "ipa-lookup-timeout",
        section: D,
        meta: "SECS",
        default: "600",
        help: "give up lookup after this long",
        field: Field::Uint(|c| &mut c.lookup_timeout),
    },
    Opt {
        flag: "lookup-interval",
        kernel: "ipa-lookup-interval",
        section: D,
        meta: "SECS",
        default: "1",
        help: "first lookup retry interval",
        field: Field::Uint(|c| &mut c.lookup_interval),
    },
    Opt {
        flag: "agent-token",
        kernel: "ipa-agent-token",
        section: D,
        meta: "TOKEN",
        default: "",
        help: "pre-shared agent token",
        field: Field::Text(|c| &mut c.agent_token),
    },
    Opt {
        flag: "insecure",
        kernel: "ipa-insecure",
        section: D,
        meta: "",
        default: "false",
        help: "do not verify Ironic's TLS certificate",
        field: Field::Bool(|c| &mut c.insecure),
    },
    Opt {
        flag: "cafile",
        kernel: "ipa-cafile",
        section: D,
        meta: "FILE",
        default: "",
        help: "CA bundle for Ironic and image servers",
        field: Field::File(|c| &mut c.cafile),
    },
    Opt {
        flag: "certfile",
        kernel: "",
        section: D,
        meta: "FILE",
        default: "",
        help: "client certificate for outbound TLS",
        field: Field::File(|c| &mut c.certfile),
    },
    Opt {
        flag: "keyfile",
        kernel: "",
        section: D,
        meta: "FILE",
        default: "",
        help: "client key for outbound TLS",
        field: Field::File(|c| &mut c.keyfile),
    },
    Opt {
        flag: "listen-tls",
        kernel: "",
        section: D,
        meta: "",
        default: "false",
        help: "serve static TLS (--tls-cert/key-file)",
        field: Field::Bool(|c| &mut c.listen_tls),
    },
    Opt {
        flag: "tls-cert-file",
        kernel: "",
        section: D,
        meta: "FILE",
        default: "",
        help: "static server certificate (PEM)",
        field: Field::File(|c| &mut c.tls_cert_file),
    },
    Opt {
        flag: "tls-key-file",
        kernel: "",
        section: D,
        meta: "FILE",
        default: "",
        help: "static server key (PEM)",
        field: Field::File(|c| &mut c.tls_key_file),
    },
    Opt {
        flag: "enable-auto-tls",
        kernel: "",
        section: D,
        meta: "",
        default: "true",
        help: "self-signed TLS when Ironic allows",
        field: Field::Bool(|c| &mut c.enable_auto_tls),
    },
    Opt {
        flag: "auto-tls-allowed-clock-skew",
        kernel: "",
        section: D,
        meta: "SECS",
        default: "3600",
        help: "backdate the auto-TLS cert",
        field: Field::Uint(|c| &mut c.auto_tls_allowed_clock_skew),
    },
    Opt {
        flag: "tls-min-version",
        kernel: "ipa-tls-min-version",
        section: D,
        meta: "1.2|1.3",
        default: "1.2",
        help: "minimum TLS version",
        field: Field::Parse(|c, v| {
            c.tls_min_version = match v.trim() {
                "1.2" => TlsVersion::V1_2,
                "1.3" => TlsVersion::V1_3,
                _ => return Err("expected 1.2 or 1.3"),
            };
            Ok(())
        }),
    },
    Opt {
        flag: "tls-certificate-curve",
        kernel: "ipa-tls-certificate-curve",
        section: D,
        meta: "CURVE",
        default: "p384",
        help: "auto-TLS key: p256 or p384",
        field: Field::Parse(|c, v| {
            c.tls_certificate_curve = match v.trim().to_ascii_lowercase().as_str() {
                "p256" | "p-256" | "secp256r1" => Curve::P256,
                "p384" | "p-384" | "secp384r1" => Curve::P384,
                _ => return Err("expected p256 or p384"),
            };
            Ok(())
        }),
    },
    Opt {
        flag: "global-request-id",
        kernel: "ipa-global-request-id",
        section: D,
        meta: "ID",
        default: "",
        help: "X-OpenStack-Request-ID to send",
        field: Field::Text(|c| &mut c.global_request_id),
    },
    Opt {
        flag: "ironic-api-version",
        kernel: "ipa-ironic-api-version",
        section: D,
        meta: "X.Y",
        default: "",
        help: "force the Ironic API version",
        field: Field::Parse(|c, v| {
            let bad = "expected X.Y";
            let (ma, mi) = v.trim().split_once('.').ok_or(bad)?;
            c.ironic_api_version =
                Some((ma.parse().map_err(|_| bad)?, mi.parse().map_err(|_| bad)?));
            Ok(())
        }),
    },
    Opt {
        flag: "http-request-timeout",
        kernel: "ipa-http-request-timeout",
        section: D,
        meta: "SECS",
        default: "30",
        help: "timeout of calls to Ironic",
        field: Field::Parse(|c, v| {
            c.http_request_timeout = uint(v)?.max(1);
            Ok(())
        }),
    },
    Opt {
        flag: "hardware-initialization-delay",
        kernel: "ipa-hardware-initialization-delay",
        section: D,
        meta: "SECS",
        default: "0",
        help: "sleep before start",
        field: Field::Uint(|c| &mut c.hardware_initialization_delay),
    },
    Opt {
        flag: "disk-wait-attempts",
        kernel: "ipa-disk-wait-attempts",
        section: D,
        meta: "N",
        default: "10",
        help: "root-disk wait attempts",
        field: Field::Uint(|c| &mut c.disk_wait_attempts),
    },
    Opt {
        flag: "disk-wait-delay",
        kernel: "ipa-disk-wait-delay",
        section: D,
        meta: "SECS",
        default: "3",
        help: "delay between them",
        field: Field::Uint(|c| &mut c.disk_wait_delay),
    },
    Opt {
        flag: "collect-lldp",
        kernel: "ipa-collect-lldp",
        section: D,
        meta: "",
        default: "false",
        help: "LLDP TLVs in interfaces[].lldp",
        field: Field::Bool(|c| &mut c.collect_lldp),
    },
    Opt {
        flag: "lldp-timeout",
        kernel: "ipa-lldp-timeout",
        section: D,
        meta: "SECS",
        default: "30.0",
        help: "listen this long for LLDP, all NICs",
        field: Field::Parse(|c, v| {
            c.lldp_timeout = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or("expected a number of seconds")?;
            Ok(())
        }),
    },
    Opt {
        flag: "enable-vlan-interfaces",
        kernel: "ipa-enable-vlan-interfaces",
        section: D,
        meta: "LIST",
        default: "",
        help: "VLAN NICs (the ramdisk's /init)",
        field: Field::List(|c| &mut c.enable_vlan_interfaces),
    },
    Opt {
        flag: "image-download-connection-timeout",
        kernel: "ipa-image-download-connection-timeout",
        section: D,
        meta: "SECS",
        default: "60",
        help: "image stall timeout",
        field: Field::Parse(|c, v| {
            c.image_download_connection_timeout = uint(v)?.max(1);
            Ok(())
        }),
    },
    Opt {
        flag: "image-download-connection-retries",
        kernel: "ipa-image-download-connection-retries",
        section: D,
        meta: "N",
        default: "9",
        help: "image retries",
        field: Field::Uint(|c| &mut c.image_download_connection_retries),
    },
    Opt {
        flag: "image-download-connection-retry-interval",
        kernel: "ipa-image-download-connection-retry-interval",
        section: D,
        meta: "SECS",
        default: "10",
        help: "between them",
        field: Field::Uint(|c| &mut c.image_download_connection_retry_interval),
    },
    Opt {
        flag: "image-download-max-duration",
        kernel: "ipa-image-download-max-duration",
        section: D,
        meta: "SECS",
        default: "0",
        help: "cap a download, 0=none",
        field: Field::Uint(|c| &mut c.image_download_max_duration),
    },
    Opt {
        flag: "ntp-server",
        kernel: "ipa-ntp-server",
        section: D,
        meta: "HOST",
        default: "",
        help: "NTP server (accepted, not used)",
        field: Field::Text(|c| &mut c.ntp_server),
    },
    Opt {
        flag: "ignore-bootloader-failure",
        kernel: "ipa-ignore-bootloader-failure",
        section: D,
        meta: "",
        default: "false",
        help: "ignore UEFI NVRAM failures",
        field: Field::Bool(|c| &mut c.ignore_bootloader_failure),
    },
    Opt {
        flag: "inject-files-priority",
        kernel: "ipa-inject-files-priority",
        section: D,
        meta: "N",
        default: "0",
        help: "priority of inject_files",
        field: Field::Uint(|c| &mut c.inject_files_priority),
    },
    Opt {
        flag: "efi-system-partition-size",
        kernel: "",
        section: "disk_utils",
        meta: "MIB",
        default: "550",
        help: "ESP of partition images, MiB",
        field: Field::Parse(|c, v| match uint(v)? {
            0 => Err("an ESP needs at least 1 MiB"),
            n => {
                c.efi_system_partition_size = n;
                Ok(())
            }
        }),
    },
    Opt {
        flag: "bios-boot-partition-size",
        kernel: "",
        section: "disk_utils",
        meta: "MIB",
        default: "1",
        help: "BIOS boot partition (GPT), MiB",
        field: Field::Parse(|c, v| match uint(v)? {
            0 => Err("a BIOS boot partition needs at least 1 MiB"),
            n => {
                c.bios_boot_partition_size = n;
                Ok(())
            }
        }),
    },
    Opt {
        flag: "config-drive-rebuild",
        kernel: "",
        section: D,
        meta: "",
        default: "false",
        help: "always write the configdrive as FAT",
        field: Field::Bool(|c| &mut c.config_drive_rebuild),
    },
    Opt {
        flag: "guard-special-filesystems",
        kernel: "ipa-guard-special-filesystems",
        section: D,
        meta: "",
        default: "true",
        help: "refuse to wipe VMFS/GPFS..",
        field: Field::Bool(|c| &mut c.guard_special_filesystems),
    },
    Opt {
        flag: "md5-enabled",
        kernel: "",
        section: D,
        meta: "",
        default: "true",
        help: "accept md5 image checksums",
        field: Field::Bool(|c| &mut c.md5_enabled),
    },
    Opt {
        flag: "disable-deep-image-inspection",
        kernel: "",
        section: D,
        meta: "",
        default: "false",
        help: "skip image format checks; lookup sets",
        field: Field::Bool(|c| &mut c.disable_deep_image_inspection),
    },
    Opt {
        flag: "permitted-image-formats",
        kernel: "",
        section: D,
        meta: "LIST",
        default: "raw,gpt,qcow2",
        help: "deployable formats; lookup sets",
        field: Field::List(|c| &mut c.permitted_image_formats),
    },
    Opt {
        flag: "enable-bios-bootloader-install",
        kernel: "",
        section: D,
        meta: "",
        default: "false",
        help: "BIOS bootloader installs; lookup sets",
        field: Field::Bool(|c| &mut c.enable_bios_bootloader_install),
    },
    Opt {
        flag: "driver-name",
        kernel: "ipa-driver-name",
        section: "",
        meta: "NAME",
        default: "agent_ipmitool",
        help: "old passthru lookup's driver",
        field: Field::Parse(|c, v| {
            c.driver_name = v.trim().to_string();
            Ok(())
        }),
    },
    Opt {
        flag: "steps-dir",
        kernel: "",
        section: "",
        meta: "DIR",
        default: "/etc/ironic-agent/steps.d",
        help: "script steps",
        field: Field::Parse(|c, v| {
            c.steps_dir = PathBuf::from(v);
            Ok(())
        }),
    },
    Opt {
        flag: "max-request-body",
        kernel: "",
        section: "",
        meta: "BYTES",
        default: "67108864",
        help: "largest API request body",
        field: Field::Parse(|c, v| {
            c.max_request_body = uint(v)?.max(1024);
            Ok(())
        }),
    },
    Opt {
        flag: "root",
        kernel: "",
        section: "",
        meta: "DIR",
        default: "/",
        help: "read /sys /proc /dev /run /etc under DIR",
        field: Field::Parse(|c, v| {
            c.root = PathBuf::from(v);
            Ok(())
        }),
    },
    Opt {
        flag: "cmdline",
        kernel: "",
        section: "",
        meta: "FILE",
        default: "",
        help: "kernel command line; unset: ROOT/proc/cmdline",
        field: Field::Parse(|c, v| {
            c.cmdline_path = PathBuf::from(v);
            Ok(())
        }),
    },
    Opt {
        flag: "config-file",
        kernel: "",
        section: "",
        meta: "FILE",
        default: "",
        help: "read this IPA config file (repeatable)",
        field: Field::ConfigFile,
    },
    Opt {
        flag: "config-dir",
        kernel: "",
        section: "",
        meta: "DIR",
        default: "",
        help: "read DIR/*.conf (repeatable)",
        field: Field::ConfigDir,
    },
];

/// Config-file keys of IPA's that are accepted and have no effect here
/// (the feature is absent, or the ramdisk does it), by section. Anything
/// else that is not in [`OPTIONS`] is logged once as unknown.
pub static NO_EFFECT_FILE_KEYS: &[(&str, &[&str])] = &[
    (
        D,
        &[
            // IPA (config.py)
            "tls_cipher_suites",
            "introspection_daemon",
            "introspection_daemon_post_interval",
            "fail_if_clock_not_set",
            "image_server_user",
            "image_server_password",
            "image_server_auth_strategy",
            "disable_bootc_deploy",
            // oslo.log (_options.py), with its deprecated names
            "log_config_append",
            "log_config",
            "log_date_format",
            "log_file",
            "logfile",
            "log_dir",
            "logdir",
            "use_syslog",
            "use_journal",
            "syslog_log_facility",
            "use_json",
            "use_stderr",
            "log_color",
            "log_rotate_interval",
            "log_rotate_interval_type",
            "max_logfile_count",
            "max_logfile_size_mb",
            "log_rotation_type",
            "logging_context_format_string",
            "logging_default_format_string",
            "logging_debug_format_suffix",
            "logging_exception_prefix",
            "logging_user_identity_format",
            "default_log_levels",
            "publish_errors",
            "instance_format",
            "instance_uuid_format",
            "rate_limit_interval",
            "rate_limit_burst",
            "rate_limit_except_level",
        ],
    ),
    (
        "disk_utils",
        &[
            "dd_block_size",
            "partition_detection_attempts",
            "partprobe_attempts",
            "image_convert_memory_limit",
            "image_convert_attempts",
        ],
    ),
    (
        "disk_partitioner",
        &["check_device_interval", "check_device_max_retries"],
    ),
    (
        "metrics",
        &[
            "backend",
            "prepend_host",
            "prepend_host_reverse",
            "global_prefix",
        ],
    ),
    ("metrics_statsd", &["statsd_host", "statsd_port"]),
    (
        "container",
        &[
            "allow_arbitrary_containers",
            "allowed_containers",
            "container_steps_file",
            "runner",
            "pull_options",
            "run_options",
        ],
    ),
    (
        "mdns",
        &[
            "use_mdns",
            "allowed_overrides",
            "lookup_attempts",
            "params",
            "interfaces",
        ],
    ),
    // written by ironic-python-agent-builder's ironic-python-agent-tls
    // element; IPA itself no longer reads it (oslo.service's old option)
    ("ssl", &["ca_file"]),
];

/// IPA's deprecated names (`config.py`: `deprecated_group='ssl'`):
/// `(section, key, flag of the option it sets)`. A file's current name
/// wins over a deprecated one in the same file, as in oslo.
const DEPRECATED_FILE_KEYS: &[(&str, &str, &str)] = &[
    ("ssl", "cert_file", "tls-cert-file"),
    ("ssl", "key_file", "tls-key-file"),
];

/// Kernel parameters the agent reads that are not in [`OPTIONS`].
const OTHER_CMDLINE_KEYS: &[&str] = &["BOOTIF", "root_device", "boot_method"];

/// IPA kernel parameters the agent knows and deliberately ignores (handled
/// by the ramdisk's /init, or features outside this agent's scope).
const IGNORED_IPA_KEYS: &[&str] = &[
    "ipa-use-mdns",
    "ipa-inspection-benchmarks",
    "ipa-tls-cipher-suites",
    "ipa-emergency-shell",
    "ipa-ssh-key",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Curve {
    P256,
    #[default]
    P384,
}

/// Declares [`Config`] and `Config::blank()`, every field at its type's
/// `Default` (false, 0, None, empty), which [`Config::default`] fills in
/// from [`OPTIONS`]: the defaults live in the table only.
macro_rules! config_struct {
    ($(#[$sm:meta])* pub struct Config { $($(#[$m:meta])* pub $f:ident: $t:ty,)* }) => {
        $(#[$sm])*
        pub struct Config { $($(#[$m])* pub $f: $t,)* }

        impl Config {
            fn blank() -> Config {
                Config { $($f: Default::default(),)* }
            }
        }
    };
}

config_struct! {
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
    /// IPA's `lldp_timeout` (seconds, a float): the whole LLDP listen,
    /// every NIC at once.
    pub lldp_timeout: f64,
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
    /// The local values of settings Ironic's lookup may override
    /// ([`LookupSettings`]).
    pub disable_deep_image_inspection: bool,
    pub permitted_image_formats: Vec<String>,
    pub enable_bios_bootloader_install: bool,
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
}

impl Config {
    /// The whole configuration for the debug log, as IPA logs its options
    /// at start (`cmd/agent.py`: `CONF.log_opt_values`); the token masked.
    pub fn to_log(&self) -> String {
        let mut c = self.clone();
        if c.agent_token.is_some() {
            c.agent_token = Some("***".into());
        }
        format!("{c:?}")
    }
}

impl Default for Config {
    /// Every option at its [`OPTIONS`] default.
    fn default() -> Self {
        let mut c = Config::blank();
        for o in OPTIONS.iter().filter(|o| !o.default.is_empty()) {
            o.set(&mut c, o.default)
                .unwrap_or_else(|why| panic!("default of --{}: {why}", o.flag));
        }
        c
    }
}

impl Opt {
    /// Its key in config files and `OS_*` variables: IPA's option name.
    pub fn key(&self) -> String {
        self.flag.replace('-', "_")
    }

    fn is_bool(&self) -> bool {
        matches!(self.field, Field::Bool(_))
    }

    fn set(&self, c: &mut Config, v: &str) -> std::result::Result<(), &'static str> {
        match self.field {
            Field::Bool(f) => *f(c) = parse_bool(v).ok_or("expected true or false")?,
            Field::Uint(f) => *f(c) = uint(v)?,
            Field::Port(f) => *f(c) = port(v)?,
            Field::Text(f) => *f(c) = non_empty(v),
            Field::List(f) => *f(c) = split_list(v),
            Field::File(f) => *f(c) = Some(PathBuf::from(v)),
            Field::Parse(p) => p(c, v)?,
            Field::ConfigFile | Field::ConfigDir => {}
        }
        Ok(())
    }
}

/// `flag` with '-' read as '_' equals `key`, without allocating.
fn is_key(flag: &str, key: &str) -> bool {
    flag.len() == key.len()
        && flag
            .bytes()
            .zip(key.bytes())
            .all(|(f, k)| k == if f == b'-' { b'_' } else { f })
}

fn find_opt(flag: &str) -> Option<&'static Opt> {
    let flag = flag.replace('_', "-");
    OPTIONS.iter().find(|o| o.flag == flag)
}

/// Where a value came from, for precedence and for error messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Kernel,
    Flag,
    File {
        path: PathBuf,
        section: String,
        key: String,
    },
    Env(String),
}

/// One value for one option.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub opt: &'static Opt,
    pub value: String,
    pub source: Source,
}

impl Setting {
    fn apply(&self, c: &mut Config) -> Result<()> {
        self.opt.set(c, &self.value).map_err(|why| {
            let what = match &self.source {
                Source::Flag => format!("--{}", self.opt.flag),
                Source::Kernel => format!("{} on the kernel command line", self.opt.kernel),
                Source::File { path, section, key } => {
                    format!("{key} in [{section}] of {}", path.display())
                }
                Source::Env(name) => format!("{name} in the environment"),
            };
            AgentError::invalid_params(format!("invalid value {:?} for {what}: {why}", self.value))
        })
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Each option given, in order (`--config-file`/`--config-dir`
    /// included: where they stand matters).
    Run(Vec<(&'static Opt, String)>),
    Help,
    Version,
}

/// The kernel command line's values for [`OPTIONS`], plus the keys outside
/// it and the warnings to log once.
#[derive(Debug, Default, PartialEq)]
pub struct CmdlineParams {
    /// One per option (later duplicates win), source [`Source::Kernel`].
    pub options: Vec<Setting>,
    pub other: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Parse CLI arguments (without argv\[0\]). Pure: no I/O.
pub fn parse_args<I>(args: I) -> Result<Parsed>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let err = |e: lexopt::Error| AgentError::invalid_params(e.to_string());
    let mut p = lexopt::Parser::from_args(args);
    let mut out = Vec::new();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('d') => out.push((find_opt("debug").expect("in OPTIONS"), "true".into())),
            Long(flag) => {
                let opt = find_opt(flag).ok_or_else(|| {
                    AgentError::invalid_params(format!("unknown option --{flag}"))
                })?;
                let value = if opt.is_bool() {
                    match p.optional_value() {
                        Some(v) => v.string().map_err(err)?,
                        None => "true".into(),
                    }
                } else {
                    p.value()
                        .map_err(|_| {
                            AgentError::invalid_params(format!(
                                "--{} needs a value ({})",
                                opt.flag, opt.meta
                            ))
                        })?
                        .string()
                        .map_err(err)?
                };
                out.push((opt, value));
            }
            Value(v) => {
                return Err(AgentError::invalid_params(format!(
                    "unexpected argument {:?}",
                    v.to_string_lossy()
                )));
            }
            other => return Err(err(other.unexpected())),
        }
    }
    Ok(Parsed::Run(out))
}

/// Parse a kernel command line the way IPA does (`utils._read_params_from_file`):
/// split on whitespace, keep `key=value` words, later duplicates win.
/// Pure: no I/O.
pub fn parse_cmdline(text: &str) -> CmdlineParams {
    let mut out = CmdlineParams::default();
    let mut warned = BTreeSet::new();
    for word in text.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        if let Some(opt) = OPTIONS
            .iter()
            .find(|o| !o.kernel.is_empty() && o.kernel == k)
        {
            out.options.retain(|s| s.opt != opt);
            out.options.push(Setting {
                opt,
                value: v.to_string(),
                source: Source::Kernel,
            });
        } else if OTHER_CMDLINE_KEYS.contains(&k) {
            out.other.insert(k.to_string(), v.to_string());
        } else if k.starts_with("ipa-") && !IGNORED_IPA_KEYS.contains(&k) && warned.insert(k) {
            out.warnings
                .push(format!("ignoring unknown kernel parameter {k}"));
        }
    }
    out
}

/// The settings of one parsed config file, one per option (the file's last
/// value; a current name beats a deprecated one), in file order. Keys that
/// are neither in [`OPTIONS`] nor in [`NO_EFFECT_FILE_KEYS`] add a warning,
/// once per section and key across files (`warned`). Pure: no I/O.
pub fn file_settings(
    path: &Path,
    entries: &[IniEntry],
    warned: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Vec<Setting> {
    let mut out: Vec<(Setting, bool)> = Vec::new();
    for e in entries {
        let (sec, key) = (e.section.as_str(), e.key.as_str());
        let current = OPTIONS
            .iter()
            .find(|o| o.section == sec && !sec.is_empty() && is_key(o.flag, key));
        let deprecated = DEPRECATED_FILE_KEYS
            .iter()
            .find(|(s, k, _)| *s == sec && *k == key)
            .and_then(|(_, _, flag)| find_opt(flag));
        let Some(opt) = current.or(deprecated) else {
            let no_effect = NO_EFFECT_FILE_KEYS
                .iter()
                .any(|(s, keys)| *s == sec && keys.contains(&key));
            if !no_effect && first_time(warned, sec, key) {
                warnings.push(format!(
                    "ignoring unknown option {key} in [{sec}] of {}",
                    path.display()
                ));
            }
            continue;
        };
        let is_current = current.is_some();
        if !is_current && first_time(warned, sec, key) {
            warnings.push(format!(
                "option {key} in [{sec}] of {} is deprecated: use {} in [{}]",
                path.display(),
                opt.key(),
                opt.section
            ));
        }
        let s = Setting {
            opt,
            value: e.value.clone(),
            source: Source::File {
                path: path.to_path_buf(),
                section: e.section.clone(),
                key: e.key.clone(),
            },
        };
        match out.iter_mut().find(|(o, _)| o.opt == opt) {
            Some(slot) if is_current || !slot.1 => *slot = (s, is_current),
            Some(_) => {}
            None => out.push((s, is_current)),
        }
    }
    out.into_iter().map(|(s, _)| s).collect()
}

/// Whether `(section, key)` is new to `warned` (now added): a short list,
/// searched linearly.
fn first_time(warned: &mut Vec<(String, String)>, section: &str, key: &str) -> bool {
    let seen = warned.iter().any(|(s, k)| s == section && k == key);
    if !seen {
        warned.push((section.to_string(), key.to_string()));
    }
    !seen
}

/// `OS_<SECTION>__<KEY>` values for every option config files can set
/// (oslo.config's environment source), read through `get`.
pub fn env_settings(get: impl Fn(&str) -> Option<String>) -> Vec<Setting> {
    OPTIONS
        .iter()
        .filter(|o| !o.section.is_empty())
        .filter_map(|opt| {
            let name = format!(
                "OS_{}__{}",
                opt.section.to_ascii_uppercase(),
                opt.key().to_ascii_uppercase()
            );
            get(&name).map(|value| Setting {
                opt,
                value,
                source: Source::Env(name),
            })
        })
        .collect()
}

/// oslo.config's boolean parsing (`strutils.bool_from_string`, strict).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

fn uint(v: &str) -> std::result::Result<u64, &'static str> {
    v.trim().parse().map_err(|_| "expected a whole number")
}

fn port(v: &str) -> std::result::Result<u16, &'static str> {
    v.trim().parse().map_err(|_| "expected a port number")
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

/// Merge the sources into a [`Config`] in IPA's order (module
/// documentation): defaults, `kernel` (as defaults), `stream` (config files
/// and flags in the order read; the last wins), `env`, then the kernel
/// overrides. Every value is checked, also one a later source replaces (IPA
/// fails on a bad value wherever it is). Pure: no I/O.
pub fn resolve(kernel: &CmdlineParams, stream: &[Setting], env: &[Setting]) -> Result<Config> {
    let overrides = |s: &&Setting| KERNEL_OVERRIDES.contains(&s.opt.kernel);
    let mut c = Config::default();
    for s in kernel.options.iter().filter(|s| !overrides(s)) {
        s.apply(&mut c)?;
    }
    for s in stream {
        s.apply(&mut c)?;
    }
    for s in env {
        let mut given = stream.iter().filter(|g| g.opt == s.opt);
        let flag_only = given.clone().next().is_some()
            && !given.any(|g| matches!(g.source, Source::File { .. }));
        if !flag_only {
            s.apply(&mut c)?;
        }
    }
    for s in kernel.options.iter().filter(overrides) {
        s.apply(&mut c)?;
    }
    c.bootif = kernel.other.get("BOOTIF").and_then(|s| non_empty(s));
    c.boot_method = kernel.other.get("boot_method").and_then(|s| non_empty(s));
    c.root_device_hints = kernel
        .other
        .get("root_device")
        .map(|s| parse_root_device(s))
        .filter(|m| !m.is_empty());
    let invalid = |msg: &str| Err(AgentError::invalid_params(msg));
    if c.listen_tls && (c.tls_cert_file.is_none() || c.tls_key_file.is_none()) {
        return invalid("--listen-tls needs --tls-cert-file and --tls-key-file");
    }
    if c.certfile.is_some() != c.keyfile.is_some() {
        return invalid("--certfile and --keyfile go together");
    }
    Ok(c)
}

/// Everything `main` needs to start: the config, the warnings to log once
/// logging is up, and the config files read (in order).
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Reads config files under the root, in the order asked, into one stream
/// of settings (with the files read and the warnings).
struct FileReader<'a> {
    root: &'a Root,
    stream: Vec<Setting>,
    files: Vec<PathBuf>,
    warned: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl FileReader<'_> {
    /// One file; a missing one is an error unless `optional` (oslo's
    /// `ConfigFilesNotFoundError` for `--config-file`).
    fn file(&mut self, path: &Path, optional: bool) -> Result<()> {
        let real = self.root.path(path);
        let text = match std::fs::read(&real) {
            Ok(b) => String::from_utf8(b).map_err(|_| {
                AgentError::invalid_params(format!(
                    "Failed to parse {}: not UTF-8 text",
                    real.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match optional {
                    true => Ok(()),
                    false => Err(AgentError::invalid_params(format!(
                        "Failed to find some config files: {}",
                        real.display()
                    ))),
                };
            }
            Err(e) => {
                return Err(AgentError::invalid_params(format!(
                    "reading config file {}: {e}",
                    real.display()
                )))
            }
        };
        let entries = parse_ini(&text, &real)?;
        let settings = file_settings(&real, &entries, &mut self.warned, &mut self.warnings);
        self.stream.extend(settings);
        self.files.push(real);
        Ok(())
    }

    /// `DIR/*.conf` in name order (Python's `sorted(glob(...))`: hidden
    /// files excluded); a missing directory is an error unless `optional`
    /// (oslo's `ConfigDirNotFoundError` for `--config-dir`).
    fn dir(&mut self, dir: &Path, optional: bool) -> Result<()> {
        let real = self.root.path(dir);
        let mut names: Vec<String> = match std::fs::read_dir(&real) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".conf") && !n.starts_with('.'))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::invalid_params(format!(
                    "Failed to read config file directory: {}",
                    real.display()
                )))
            }
            Err(e) => {
                return Err(AgentError::invalid_params(format!(
                    "reading config directory {}: {e}",
                    real.display()
                )))
            }
        };
        crate::util::sort_small(&mut names);
        for n in names {
            self.file(&dir.join(n), false)?;
        }
        Ok(())
    }
}

/// Parse the process arguments; read the kernel command line (from
/// `--cmdline FILE`, else `<root>/proc/cmdline`), the config files under
/// `--root` and the `OS_*` environment; resolve.
pub fn load<I>(args: I) -> Result<std::result::Result<Loaded, Parsed>>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let args = match parse_args(args)? {
        Parsed::Run(args) => args,
        other => return Ok(Err(other)),
    };
    let last = |flag: &str| {
        args.iter()
            .rev()
            .find(|(o, _)| o.flag == flag)
            .map(|(_, v)| PathBuf::from(v))
    };
    let root_dir = last("root").unwrap_or_else(|| PathBuf::from("/"));
    let cmdline_path =
        last("cmdline").unwrap_or_else(|| Root::new(&root_dir).path("/proc/cmdline"));
    let (kernel, mut warnings) = match std::fs::read_to_string(&cmdline_path) {
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
    let root = Root::new(&root_dir);
    let mut r = FileReader {
        root: &root,
        stream: Vec::new(),
        files: Vec::new(),
        warned: Vec::new(),
        warnings: Vec::new(),
    };
    let given = |f: fn(&Field) -> bool| args.iter().any(|(o, _)| f(&o.field));
    if !given(|f| matches!(f, Field::ConfigFile)) {
        r.file(Path::new(DEFAULT_CONFIG_FILE), true)?;
    }
    if !given(|f| matches!(f, Field::ConfigDir)) {
        r.dir(Path::new(DEFAULT_CONFIG_DIR), true)?;
    }
    for (opt, value) in &args {
        match opt.field {
            Field::ConfigFile => r.file(Path::new(value), false)?,
            Field::ConfigDir => r.dir(Path::new(value), false)?,
            _ => r.stream.push(Setting {
                opt,
                value: value.clone(),
                source: Source::Flag,
            }),
        }
    }
    warnings.append(&mut r.warnings);
    let env = env_settings(|name| std::env::var(name).ok());
    let mut config = resolve(&kernel, &r.stream, &env)?;
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
    Ok(Ok(Loaded {
        config,
        warnings,
        files: r.files,
    }))
}

/// `--help`, generated from [`OPTIONS`]: a `[value]` at the end of a line is
/// the option's default (tests/config.rs holds it to the default in force).
/// Fits 80 columns.
pub fn help() -> String {
    let mut s = format!(
        "ironic-agent {}\n\
         The OpenStack Ironic Python Agent protocol in one static binary.\n\n\
         Usage: ironic-agent [OPTIONS]\n\n\
         Options come from, lowest first: the [default] shown; the kernel\n\
         command line (ipa-* keys, BOOTIF, root_device=); IPA's config files\n\
         and these flags, in order, the last one winning: {DEFAULT_CONFIG_FILE}\n\
         unless --config-file is given, {DEFAULT_CONFIG_DIR}/*.conf unless\n\
         --config-dir is, then the flags, each --config-file and --config-dir\n\
         read where it stands; OS_<SECTION>__<KEY> variables; ipa-debug. A\n\
         file's key is the flag with underscores, in [DEFAULT] unless shown.\n\
         Booleans take an optional =true|false. IPA's --api_url spelling\n\
         is accepted too.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for o in OPTIONS {
        let flag = match o.is_bool() {
            true => format!("--{}", o.flag),
            false => format!("--{} {}", o.flag, o.meta),
        };
        let text = match o.default {
            "" => o.help.to_string(),
            d => format!("{} [{d}]", o.help),
        };
        if flag.len() <= 30 {
            s += &format!("  {flag:<30} {text}\n");
        } else {
            s += &format!("  {flag}\n  {:<30} {text}\n", "");
        }
        let mut notes = Vec::new();
        if !o.kernel.is_empty() {
            notes.push(format!("kernel: {}", o.kernel));
        }
        match (o.section, o.field) {
            ("", Field::ConfigFile | Field::ConfigDir) => {}
            ("", _) => notes.push("not in files".into()),
            (D, _) => {}
            (sec, _) => notes.push(format!("file: [{sec}]")),
        }
        if !notes.is_empty() {
            let note = format!("({})", notes.join("; "));
            let line = format!("  {:<30}   {note}", "");
            if line.len() <= 80 {
                s += &format!("{line}\n");
            } else {
                s += &format!("{note:>78}\n");
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
            permitted_image_formats: c.permitted_image_formats.clone(),
            disable_deep_image_inspection: c.disable_deep_image_inspection,
            agent_skip_bmc_detect: false,
            enable_bios_bootloader_install: c.enable_bios_bootloader_install,
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
        // IPA sets this one only when Ironic turns it on
        // (`agent.py:process_lookup_data`: `if config.get(...)`).
        if cfg
            .get("enable_bios_bootloader_install")
            .and_then(Value::as_bool)
            == Some(true)
        {
            self.enable_bios_bootloader_install = true;
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

    /// A standalone agent's environment over the fixture root `root`
    /// (tests): no steps directory, no Ironic.
    pub fn at(root: &std::path::Path) -> OwnedEnv {
        OwnedEnv::new(Config {
            root: root.to_path_buf(),
            steps_dir: root.join("no-steps"),
            standalone: true,
            ..Default::default()
        })
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
            "agent_skip_bmc_detect": true, "enable_bios_bootloader_install": false
        });
        s.apply(cfg.as_object().unwrap());
        assert_eq!(s.heartbeat_timeout, 60);
        assert!(!s.md5_enabled && s.agent_skip_bmc_detect);
        assert_eq!(s.permitted_image_formats, vec!["raw", "qcow2"]);
        // the local values are the config's; Ironic only turns this one on
        let c = Config {
            enable_bios_bootloader_install: true,
            permitted_image_formats: vec!["raw".into()],
            ..Config::default()
        };
        let mut s = LookupSettings::from_config(&c);
        assert_eq!(s.permitted_image_formats, vec!["raw"]);
        s.apply(cfg.as_object().unwrap());
        assert!(s.enable_bios_bootloader_install);
    }

    fn flags(args: &[&str]) -> Vec<Setting> {
        match parse_args(args.iter().copied()).unwrap() {
            Parsed::Run(r) => r
                .into_iter()
                .map(|(opt, value)| Setting {
                    opt,
                    value,
                    source: Source::Flag,
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn file(text: &str) -> Vec<Setting> {
        let path = Path::new("/etc/ironic-python-agent.conf");
        let entries = parse_ini(text, path).unwrap();
        file_settings(path, &entries, &mut Vec::new(), &mut Vec::new())
    }

    fn none() -> CmdlineParams {
        CmdlineParams::default()
    }

    fn pairs(settings: &[Setting]) -> Vec<(&'static str, &str)> {
        settings
            .iter()
            .map(|s| (s.opt.flag, s.value.as_str()))
            .collect()
    }

    /// The defaults before the table existed (the hand-written `Default`
    /// of 37c3a0e..e0303c1), field by field: the table changed none.
    #[test]
    fn defaults_are_the_old_ones() {
        let c = Config::default();
        assert!(c.api_urls.is_empty() && c.inspection_collectors.is_empty());
        assert_eq!(c.inspection_callback_url, None);
        assert_eq!(c.inspection_dhcp_wait_timeout, 60);
        assert!(!c.inspection_dhcp_all_interfaces && !c.standalone && !c.debug);
        assert_eq!((c.listen_host, c.listen_port), (None, 9999));
        assert_eq!((c.advertise_host.clone(), c.advertise_port), (None, None));
        assert_eq!(c.advertise_protocol, None);
        assert_eq!(c.network_interface, None);
        assert_eq!((c.ip_lookup_attempts, c.ip_lookup_sleep), (6, 10));
        assert_eq!((c.lookup_timeout, c.lookup_interval), (600, 1));
        assert_eq!(c.agent_token, None);
        assert!(!c.insecure && !c.listen_tls && c.enable_auto_tls);
        assert!(c.cafile.is_none() && c.certfile.is_none() && c.keyfile.is_none());
        assert!(c.tls_cert_file.is_none() && c.tls_key_file.is_none());
        assert_eq!(c.auto_tls_allowed_clock_skew, 3600);
        assert_eq!(c.tls_min_version, TlsVersion::V1_2);
        assert_eq!(c.tls_certificate_curve, Curve::P384);
        assert_eq!(
            (c.global_request_id.clone(), c.ironic_api_version),
            (None, None)
        );
        assert_eq!(c.http_request_timeout, 30);
        assert_eq!(c.hardware_initialization_delay, 0);
        assert_eq!((c.disk_wait_attempts, c.disk_wait_delay), (10, 3));
        assert!(!c.collect_lldp && c.enable_vlan_interfaces.is_empty());
        assert_eq!(
            (
                c.image_download_connection_timeout,
                c.image_download_connection_retries,
                c.image_download_connection_retry_interval,
                c.image_download_max_duration
            ),
            (60, 9, 10, 0)
        );
        assert_eq!(c.ntp_server, None);
        assert!(!c.ignore_bootloader_failure && c.guard_special_filesystems);
        assert_eq!(c.inject_files_priority, 0);
        assert_eq!(
            (c.efi_system_partition_size, c.bios_boot_partition_size),
            (ESP_MB, BIOS_BOOT_MB)
        );
        assert!(!c.config_drive_rebuild && c.md5_enabled);
        assert_eq!(c.driver_name, "agent_ipmitool");
        assert_eq!(c.steps_dir, PathBuf::from("/etc/ironic-agent/steps.d"));
        assert_eq!(c.max_request_body, 64 * 1024 * 1024);
        assert_eq!(c.root, PathBuf::from("/"));
        assert!(c.bootif.is_none() && c.root_device_hints.is_none() && c.boot_method.is_none());
        // the lookup settings' local values, as LookupSettings had them
        assert!(!c.disable_deep_image_inspection && !c.enable_bios_bootloader_install);
        assert_eq!(c.permitted_image_formats, vec!["raw", "gpt", "qcow2"]);
    }

    #[test]
    fn help_shows_each_default_and_it_is_in_force() {
        let help = help();
        let d = format!("{:?}", Config::default());
        for o in OPTIONS {
            let line = help
                .lines()
                .skip_while(|l| {
                    !l.trim_start().starts_with(&format!("--{} ", o.flag))
                        && l.trim() != format!("--{}", o.flag)
                })
                .find(|l| l.contains(o.help))
                .unwrap_or_else(|| panic!("--{} is not in --help", o.flag));
            if o.default.is_empty() {
                assert!(!line.ends_with(']'), "{line}");
                continue;
            }
            assert!(line.ends_with(&format!(" [{}]", o.default)), "{line}");
            let mut c = Config::default();
            o.set(&mut c, o.default).unwrap();
            assert_eq!(format!("{c:?}"), d, "--{} {}", o.flag, o.default);
        }
        assert_eq!(
            format!("{:?}", resolve(&none(), &[], &[]).unwrap()),
            d,
            "no input resolves to the defaults"
        );
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
            assert_eq!(pairs(&p.options), want.to_vec(), "{text}");
            assert!(p.options.iter().all(|s| s.source == Source::Kernel));
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
        let c = resolve(&p, &[], &[]).unwrap();
        assert_eq!(c.bootif.as_deref(), Some("01-52-54-00-12-34-56"));
        let hints = c.root_device_hints.unwrap();
        assert_eq!(hints["serial"], "abc");
        assert_eq!(hints["size"], "10");
    }

    #[test]
    fn flags_beat_cmdline_beats_default() {
        let cmd = parse_cmdline("ipa-listen-port=1111 ipa-lookup-timeout=5 ipa-api-url=http://a");
        let cli = flags(&["--listen-port", "2222", "--api_url=https://b,https://c"]);
        let c = resolve(&cmd, &cli, &[]).unwrap();
        assert_eq!(c.listen_port, 2222);
        assert_eq!(c.lookup_timeout, 5);
        assert_eq!(c.lookup_interval, 1);
        assert_eq!(c.api_urls, vec!["https://b", "https://c"]);
    }

    /// IPA's order: the kernel line only gives defaults; files and flags
    /// in the order read, the last winning; `OS_*` beats files (and flags
    /// for options also in a file); `ipa-debug` beats everything.
    #[test]
    fn precedence_is_ipas() {
        let kernel = parse_cmdline(
            "ipa-lookup-timeout=1 ipa-disk-wait-delay=1 ipa-http-request-timeout=1 \
             ipa-debug=1 ipa-insecure=1",
        );
        let mut stream = file(
            "[DEFAULT]\nlookup_timeout = 2\ndisk_wait_delay = 2\ndebug = false\n\
             http_request_timeout = 2\ninsecure = false\n",
        );
        stream.extend(flags(&[
            "--disk-wait-delay",
            "3",
            "--debug=false",
            "--listen-port",
            "3",
        ]));
        stream.extend(file("[DEFAULT]\nhttp_request_timeout = 4\n"));
        let c = resolve(&kernel, &stream, &[]).unwrap();
        assert_eq!(c.lookup_timeout, 2, "a file beats the kernel line");
        assert_eq!(c.disk_wait_delay, 3, "a later flag beats a file");
        assert_eq!(c.http_request_timeout, 4, "a later file beats a file");
        assert!(!c.insecure, "a file turns a kernel boolean off");
        assert!(c.debug, "ipa-debug is an override");
        let env = env_settings(|name| match name {
            "OS_DEFAULT__LOOKUP_TIMEOUT" => Some("5".into()),
            "OS_DEFAULT__LISTEN_PORT" => Some("5".into()),
            "OS_DEFAULT__DISK_WAIT_DELAY" => Some("5".into()),
            "OS_DISK_UTILS__EFI_SYSTEM_PARTITION_SIZE" => Some("5".into()),
            _ => None,
        });
        assert_eq!(env.len(), 4);
        let c = resolve(&kernel, &stream, &env).unwrap();
        assert_eq!(c.lookup_timeout, 5, "the environment beats a file");
        assert_eq!(c.listen_port, 3, "a flag beats the environment");
        assert_eq!(
            c.disk_wait_delay, 5,
            "... unless the option is in a file too (oslo's location rule)"
        );
        assert_eq!(c.efi_system_partition_size, 5, "and beats the default");
        // without ipa-debug, the last of file and flag decides
        let c = resolve(&none(), &stream, &[]).unwrap();
        assert!(!c.debug);
        let c = resolve(&none(), &flags(&["-d"]), &[]).unwrap();
        assert!(c.debug);
    }

    #[test]
    fn file_keys_are_ipas_option_names() {
        let path = Path::new("/x.conf");
        let text = "[DEFAULT]\napi_url = http://a:6385\nlisten-port = 1\nlog_file = /x\n\
                    frobnicate = 1\nstandalone = true\ndriver_name = x\n\
                    tls_cert_file = new.pem\n\
                    [ssl]\ncert_file = old.pem\nkey_file = old.key\nca_file = ca\n\
                    [DISK_UTILS]\nefi_system_partition_size = 200\nimage_convert_attempts = 9\n\
                    [disk_utils]\nefi_system_partition_size = 300\n\
                    [default]\ninsecure = true\n[metrics]\nbackend = statsd\n";
        let entries = parse_ini(text, path).unwrap();
        let mut warned = vec![];
        let mut warnings = vec![];
        let s = file_settings(path, &entries, &mut warned, &mut warnings);
        assert_eq!(
            pairs(&s),
            vec![
                ("api-url", "http://a:6385"),
                // the current name beats the deprecated [ssl] one
                ("tls-cert-file", "new.pem"),
                ("tls-key-file", "old.key"),
                // [DISK_UTILS] is [disk_utils]; the last value wins
                ("efi-system-partition-size", "300"),
            ]
        );
        assert_eq!(
            s[0].source,
            Source::File {
                path: path.into(),
                section: "DEFAULT".into(),
                key: "api_url".into()
            }
        );
        assert_eq!(
            warnings,
            vec![
                // dashes are not IPA's spelling in files
                "ignoring unknown option listen-port in [DEFAULT] of /x.conf",
                "ignoring unknown option frobnicate in [DEFAULT] of /x.conf",
                // removed from IPA: files cannot turn standalone on
                "ignoring unknown option standalone in [DEFAULT] of /x.conf",
                "ignoring unknown option driver_name in [DEFAULT] of /x.conf",
                "option cert_file in [ssl] of /x.conf is deprecated: use tls_cert_file in [DEFAULT]",
                "option key_file in [ssl] of /x.conf is deprecated: use tls_key_file in [DEFAULT]",
                // [default] is not [DEFAULT]
                "ignoring unknown option insecure in [default] of /x.conf",
            ]
        );
        // once per key, across files
        let mut again = vec![];
        file_settings(Path::new("/y.conf"), &entries, &mut warned, &mut again);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn booleans() {
        let c = resolve(
            &none(),
            &flags(&["--insecure", "--debug=false", "--standalone"]),
            &[],
        )
        .unwrap();
        assert!(c.insecure && !c.debug && c.standalone);
        for (s, want) in [
            ("yes", Some(true)),
            ("Off", Some(false)),
            ("1", Some(true)),
            ("on", Some(true)),
            ("TRUE", Some(true)),
            ("2", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(s), want, "{s}");
        }
        assert!(resolve(&none(), &flags(&["--insecure=maybe"]), &[]).is_err());
        for v in ["true", "1", "yes", "on"] {
            let c = resolve(&none(), &file(&format!("[DEFAULT]\ninsecure = {v}\n")), &[]).unwrap();
            assert!(c.insecure, "{v}");
        }
    }

    #[test]
    fn lists() {
        let c = resolve(
            &none(),
            &file("[DEFAULT]\ninspection_collectors = default,\n  logs , pci-devices,\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.inspection_collectors,
            vec!["default", "logs", "pci-devices"]
        );
        let c = resolve(
            &none(),
            &file("[DEFAULT]\npermitted_image_formats =\n"),
            &[],
        )
        .unwrap();
        assert!(c.permitted_image_formats.is_empty());
    }

    #[test]
    fn errors_are_clear() {
        let err = |r: Result<Config>| r.unwrap_err().into_details();
        assert_eq!(
            parse_args(["--nope"]).unwrap_err().details,
            "unknown option --nope"
        );
        assert!(parse_args(["--listen-port"])
            .unwrap_err()
            .details
            .contains("needs a value"));
        let e = err(resolve(&none(), &flags(&["--listen-port", "99999"]), &[]));
        assert_eq!(
            e,
            "invalid value \"99999\" for --listen-port: expected a port number"
        );
        let e = err(resolve(&none(), &flags(&["--api-url", "ftp://x"]), &[]));
        assert!(e.contains("http://"), "{e}");
        let e = err(resolve(&none(), &flags(&["--listen-tls"]), &[]));
        assert!(e.contains("tls-cert-file"), "{e}");
        let e = err(resolve(
            &none(),
            &flags(&["--efi-system-partition-size", "0"]),
            &[],
        ));
        assert!(e.contains("at least 1 MiB"), "{e}");
        let e = err(resolve(&parse_cmdline("ipa-lookup-timeout=soon"), &[], &[]));
        assert_eq!(
            e,
            "invalid value \"soon\" for ipa-lookup-timeout on the kernel command line: \
             expected a whole number"
        );
        // a bad value in a file names the file, the section and the key,
        // even when a later source replaces it (IPA fails at start)
        let mut stream = file("[disk_utils]\nbios_boot_partition_size = big\n");
        stream.extend(flags(&["--bios-boot-partition-size", "2"]));
        let e = err(resolve(&none(), &stream, &[]));
        assert_eq!(
            e,
            "invalid value \"big\" for bios_boot_partition_size in [disk_utils] of \
             /etc/ironic-python-agent.conf: expected a whole number"
        );
        let env = env_settings(|n| (n == "OS_DEFAULT__INSECURE").then(|| "maybe".into()));
        let e = err(resolve(&none(), &[], &env));
        assert!(e.contains("OS_DEFAULT__INSECURE in the environment"), "{e}");
    }

    #[test]
    fn typed_values() {
        let cmd = parse_cmdline(
            "ipa-listen-host=[::1] ipa-tls-min-version=1.3 ipa-tls-certificate-curve=p256 \
             ipa-ironic-api-version=1.68 ipa-inspection-collectors=default,logs,pci-devices",
        );
        let c = resolve(&cmd, &[], &[]).unwrap();
        assert_eq!(c.listen_host, Some("::1".parse().unwrap()));
        assert_eq!(c.tls_min_version, TlsVersion::V1_3);
        assert_eq!(c.tls_certificate_curve, Curve::P256);
        assert_eq!(c.ironic_api_version, Some((1, 68)));
        assert_eq!(c.inspection_collectors.len(), 3);
        assert_eq!(c.lldp_timeout, 30.0);
        let c = resolve(&parse_cmdline("ipa-lldp-timeout=2.5"), &[], &[]).unwrap();
        assert_eq!(c.lldp_timeout, 2.5);
        assert!(resolve(&none(), &flags(&["--lldp-timeout", "-1"]), &[]).is_err());
        assert!(resolve(&none(), &flags(&["--lldp-timeout", "nan"]), &[]).is_err());
        let c = resolve(
            &none(),
            &flags(&[
                "--efi-system-partition-size",
                "1024",
                "--bios-boot-partition-size",
                "2",
                "--config-drive-rebuild",
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.efi_system_partition_size, 1024);
        assert_eq!(c.bios_boot_partition_size, 2);
        assert!(c.config_drive_rebuild);
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
        // every option is documented
        for o in OPTIONS {
            assert!(help().contains(&format!("--{}", o.flag)));
        }
    }

    #[test]
    fn every_option_resolves() {
        // A value valid for each option; every row sets something.
        for o in OPTIONS {
            let v = match (o.flag, o.field) {
                ("api-url", _) | ("inspection-callback-url", _) => "http://x",
                ("listen-host", _) => "127.0.0.1",
                ("advertise-protocol", _) => "https",
                ("tls-min-version", _) => "1.3",
                ("tls-certificate-curve", _) => "p256",
                ("ironic-api-version", _) => "1.2",
                ("listen-tls", _) => "false",
                (_, Field::ConfigFile | Field::ConfigDir) => continue,
                (_, Field::Bool(_)) if o.default == "true" => "false",
                (_, Field::Bool(_)) => "true",
                _ if ["N", "SECS", "PORT", "MIB", "BYTES"].contains(&o.meta) => "5000",
                _ => "x",
            };
            let mut args = vec![format!("--{}={v}", o.flag)];
            if o.flag == "certfile" || o.flag == "keyfile" {
                args = vec!["--certfile=a".into(), "--keyfile=b".into()];
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let c = resolve(&none(), &flags(&args), &[])
                .unwrap_or_else(|e| panic!("--{}: {e}", o.flag));
            if o.flag != "listen-tls" {
                assert_ne!(
                    format!("{c:?}"),
                    format!("{:?}", Config::default()),
                    "--{} {v} changed nothing",
                    o.flag
                );
            }
        }
    }

    #[test]
    fn every_file_option_is_ipas() {
        // Rows in files carry IPA's names; no key is both mapped and listed
        // as without effect.
        for o in OPTIONS.iter().filter(|o| !o.section.is_empty()) {
            assert!(
                !NO_EFFECT_FILE_KEYS
                    .iter()
                    .any(|(s, keys)| *s == o.section && keys.contains(&o.key().as_str())),
                "{o:?}"
            );
        }
        assert!(OPTIONS.iter().all(|o| o.is_bool() == o.meta.is_empty()));
    }
}
