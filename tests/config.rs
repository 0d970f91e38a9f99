//! Configuration against the real binary and `config::load`: `--help`
//! shows the defaults in force, and IPA's config files
//! (/etc/ironic-python-agent.conf, /etc/ironic-python-agent.d/*.conf,
//! `--config-file`, `--config-dir`) merge with the kernel command line,
//! flags and `OS_*` variables in IPA's order (src/config.rs).

mod common;

use common::{test_dir, Agent, Opts};
use ironic_agent::config::{self, Config, Loaded};
use std::path::{Path, PathBuf};

/// A root holding `files` (path under the root, text) and an empty
/// kernel command line; returns (root, cmdline file).
fn fixture(name: &str, files: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let dir = test_dir(name);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (path, text) in files {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "").unwrap();
    (root, cmdline)
}

fn load(root: &Path, cmdline: &Path, more: &[&str]) -> ironic_agent::error::Result<Loaded> {
    let mut args = vec![
        "--root".to_string(),
        root.display().to_string(),
        "--cmdline".into(),
        cmdline.display().to_string(),
    ];
    args.extend(more.iter().map(|s| s.to_string()));
    match config::load(args) {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(p)) => panic!("{p:?}"),
        Err(e) => Err(e),
    }
}

fn debug(c: &Config) -> String {
    format!("{c:?}")
}

/// Each `--flag ... [default]` of the binary's `--help`, given back as
/// `--flag=default`, resolves to the very configuration that no flag gives:
/// the defaults shown are the defaults in force. With no input at all,
/// the configuration is `Config::default()`.
#[test]
fn help_shows_the_defaults_in_force() {
    let out = common::agent_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert_eq!(help, config::help());

    // (flag, default) from the text: an option line starts with "  --"; its
    // help is on the same line or, for a long flag, on the next one, which
    // starts in column 34 (notes in parentheses start further right).
    let lines: Vec<&str> = help.lines().collect();
    let mut shown = vec![];
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("  --") else {
            continue;
        };
        let flag = rest.split_whitespace().next().unwrap();
        let next = lines.get(i + 1).copied().unwrap_or("");
        let text = match next.strip_prefix(&" ".repeat(33)) {
            Some(t) if !t.starts_with(' ') => next,
            _ => line,
        };
        if let Some(open) = text.strip_suffix(']').and_then(|t| t.rfind(" [")) {
            shown.push((flag.to_string(), text[open + 2..text.len() - 1].to_string()));
        }
    }
    assert!(shown.len() >= 30, "too few defaults found: {shown:?}");
    assert!(shown.contains(&("listen-port".into(), "9999".into())));

    // Numbers and booleans read back from Config::default() itself (the
    // field is the option's name), so a setter that clamps or rewrites a
    // default cannot hide behind the comparison below.
    let defaults = debug(&Config::default());
    let mut read_back = 0;
    for (flag, default) in &shown {
        if default.parse::<u64>().is_ok() || default == "true" || default == "false" {
            let field = format!(" {}: {default}", flag.replace('-', "_"));
            assert!(
                defaults.contains(&format!("{field},"))
                    || defaults.contains(&format!("{field} }}")),
                "--help says --{flag} defaults to {default}; Config::default() has\n{defaults}"
            );
            read_back += 1;
        }
    }
    assert!(read_back >= 25, "{read_back}");

    let (root, cmdline) = fixture("help-defaults", &[]);
    let base = load(&root, &cmdline, &[]).unwrap().config;
    for (flag, default) in &shown {
        if flag == "root" {
            // --root moves every path; compared where it is not given
            assert_eq!(Config::default().root, PathBuf::from(default));
            continue;
        }
        let c = load(&root, &cmdline, &[&format!("--{flag}={default}")])
            .unwrap_or_else(|e| panic!("--{flag}={default}: {e}"))
            .config;
        assert_eq!(debug(&c), debug(&base), "--{flag}={default}");
    }

    // no input: the table's defaults (but the root and kernel command line
    // given, and standalone, which no Ironic URL implies)
    let want = Config {
        root: root.clone(),
        cmdline_path: cmdline.clone(),
        standalone: true,
        ..Config::default()
    };
    assert_eq!(debug(&base), debug(&want));
}

/// The real binary with a fixture root: the default file, the default
/// directory, the kernel command line, a flag and an `OS_*` variable, each
/// winning where IPA's order says it does.
#[test]
fn config_files_merge_in_ipas_order() {
    let (root, cmdline) = fixture(
        "files-order",
        &[
            (
                "/etc/ironic-python-agent.conf",
                "# the operator's file\n\
                 [DEFAULT]\n\
                 lookup_timeout = 11\n\
                 image_download_connection_retries = 11\n\
                 disk_wait_delay = 11\n\
                 http_request_timeout = 11\n\
                 debug = false\n\
                 frobnicate = 1\n\
                 log_file = /var/log/ipa.log\n\
                 [DISK_UTILS]\n\
                 efi_system_partition_size = 111\n",
            ),
            (
                "/etc/ironic-python-agent.d/10-first.conf",
                "[DEFAULT]\nimage_download_connection_retries = 22\n",
            ),
            (
                "/etc/ironic-python-agent.d/20-second.conf",
                "[DEFAULT]\nimage_download_connection_retries = 23\nfrobnicate = 2\n",
            ),
            (
                "/etc/ironic-python-agent.d/.hidden.conf",
                "[DEFAULT]\nlookup_timeout = 99\n",
            ),
            (
                "/etc/ironic-python-agent.d/notes.txt",
                "[DEFAULT]\nlookup_timeout = 98\n",
            ),
        ],
    );
    std::fs::write(
        &cmdline,
        "ipa-lookup-timeout=1 ipa-disk-wait-delay=1 ipa-ip-lookup-attempts=7 ipa-debug=1\n",
    )
    .unwrap();
    let dir = cmdline.parent().unwrap();
    let a = Agent::start(
        dir,
        Opts {
            root: Some(&root),
            args: vec![
                "--cmdline".into(),
                cmdline.display().to_string(),
                "--disk-wait-delay".into(),
                "33".into(),
            ],
            env: vec![("OS_DEFAULT__HTTP_REQUEST_TIMEOUT".into(), "44".into())],
            ..Default::default()
        },
    );
    let log = a.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("configuration: Config {"))
        .unwrap_or_else(|| panic!("no configuration in the debug log:\n{log}"));
    for (want, why) in [
        (
            "lookup_timeout: 11,",
            "a file beats the kernel command line",
        ),
        (
            "ip_lookup_attempts: 7,",
            "the kernel command line beats the default",
        ),
        (
            "image_download_connection_retries: 23,",
            "the .d files, in name order, beat the default file",
        ),
        ("disk_wait_delay: 33,", "a flag beats files"),
        ("http_request_timeout: 44,", "OS_DEFAULT__* beats files"),
        ("debug: true,", "ipa-debug beats files and flags"),
        (
            "efi_system_partition_size: 111,",
            "[DISK_UTILS] is [disk_utils]",
        ),
    ] {
        assert!(line.contains(want), "{why}: want {want}\n{line}");
    }
    assert!(line.contains("agent_token: Some(\"***\")"), "{line}");
    assert!(!log.contains(&a.token), "the token stays out of the log");
    let files: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("read configuration file ").nth(1))
        .collect();
    let r = root.display();
    assert_eq!(
        files,
        vec![
            format!("{r}/etc/ironic-python-agent.conf"),
            format!("{r}/etc/ironic-python-agent.d/10-first.conf"),
            format!("{r}/etc/ironic-python-agent.d/20-second.conf"),
        ]
    );
    assert_eq!(
        log.matches("ignoring unknown option frobnicate in [DEFAULT]")
            .count(),
        1,
        "one warning per unknown key:\n{log}"
    );
    assert!(
        !log.contains("log_file"),
        "IPA options without effect are accepted quietly:\n{log}"
    );
}

/// `--config-file` and `--config-dir` are read where they stand among the
/// flags, and each turns its default off, as oslo.config does.
#[test]
fn config_file_and_dir_flags_are_read_in_place() {
    let (root, cmdline) = fixture(
        "files-flags",
        &[
            (
                "/etc/ironic-python-agent.conf",
                "[DEFAULT]\nlookup_timeout = 1\ndisk_wait_attempts = 1\n",
            ),
            (
                "/etc/ironic-python-agent.d/a.conf",
                "[DEFAULT]\ndisk_wait_attempts = 2\ndisk_wait_delay = 2\n",
            ),
            ("/etc/other.conf", "[DEFAULT]\nlookup_timeout = 6\n"),
            ("/srv/conf.d/b.conf", "[DEFAULT]\ndisk_wait_delay = 7\n"),
        ],
    );
    let c = |more: &[&str]| load(&root, &cmdline, more).unwrap();
    // --config-file replaces the default file, not the default directory
    let l = c(&["--config-file", "/etc/other.conf"]);
    assert_eq!(l.config.lookup_timeout, 6);
    assert_eq!(l.config.disk_wait_attempts, 2);
    assert_eq!(
        l.files,
        vec![
            root.join("etc/ironic-python-agent.d/a.conf"),
            root.join("etc/other.conf")
        ]
    );
    // a flag before the file loses, a flag after it wins
    let l = c(&["--lookup-timeout", "5", "--config-file", "/etc/other.conf"]);
    assert_eq!(l.config.lookup_timeout, 6);
    let l = c(&["--config-file", "/etc/other.conf", "--lookup-timeout", "5"]);
    assert_eq!(l.config.lookup_timeout, 5);
    // --config-dir replaces the default directory, not the default file;
    // repeated --config-file/--config-dir all count, the last winning
    let l = c(&["--config-dir", "/srv/conf.d"]);
    assert_eq!(
        (l.config.lookup_timeout, l.config.disk_wait_attempts),
        (1, 1)
    );
    assert_eq!(l.config.disk_wait_delay, 7);
    let l = c(&[
        "--config-file=/etc/other.conf",
        "--config-file=/etc/ironic-python-agent.conf",
    ]);
    assert_eq!(l.config.lookup_timeout, 1);
    let l = c(&[
        "--config-dir=/srv/conf.d",
        "--config-dir=/etc/ironic-python-agent.d",
    ]);
    assert_eq!(l.config.disk_wait_delay, 2);

    // no files at all: nothing missing is an error by default
    let (empty, cmdline) = fixture("files-none", &[]);
    let l = load(&empty, &cmdline, &[]).unwrap();
    assert!(l.files.is_empty() && l.warnings.iter().all(|w| !w.contains("conf")));
}

/// What IPA refuses at start, the binary refuses with exit 2 and a message
/// naming the file (and the section and key for a bad value).
#[test]
fn bad_files_stop_the_agent_with_a_clear_error() {
    let (root, cmdline) = fixture(
        "files-bad",
        &[
            ("/etc/bad-value.conf", "[DEFAULT]\nlisten_port = http\n"),
            ("/etc/bad-syntax.conf", "[DEFAULT]\nlisten_port\n"),
            ("/etc/bad-bool.conf", "[DEFAULT]\ninsecure = maybe\n"),
        ],
    );
    let r = root.display();
    for (args, want) in [
        (
            vec!["--config-file", "/etc/bad-value.conf"],
            format!(
                "invalid value \"http\" for listen_port in [DEFAULT] of \
                 {r}/etc/bad-value.conf: expected a port number"
            ),
        ),
        (
            vec!["--config-file", "/etc/bad-syntax.conf"],
            format!(
                "Failed to parse {r}/etc/bad-syntax.conf: at line 2, No ':' or '=' found \
                 in assignment: 'listen_port'"
            ),
        ),
        (
            // a later flag does not excuse a bad value (IPA checks each file)
            vec!["--config-file", "/etc/bad-bool.conf", "--insecure"],
            format!(
                "invalid value \"maybe\" for insecure in [DEFAULT] of \
                 {r}/etc/bad-bool.conf: expected true or false"
            ),
        ),
        (
            vec!["--config-file", "/etc/missing.conf"],
            format!("Failed to find some config files: {r}/etc/missing.conf"),
        ),
        (
            vec!["--config-dir", "/etc/missing.d"],
            format!("Failed to read config file directory: {r}/etc/missing.d"),
        ),
    ] {
        let out = common::agent_command()
            .arg("--root")
            .arg(&root)
            .arg("--cmdline")
            .arg(&cmdline)
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("ironic-agent: {want}\n")),
            "{args:?}: {err}"
        );
    }
}
