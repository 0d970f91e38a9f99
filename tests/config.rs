//! Configuration against the real binary and `config::load`: `--help`
//! shows the defaults in force.

mod common;

use common::test_dir;
use ironic_agent::config::{self, Config, Loaded};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let out = Command::new(common::bin()).arg("--help").output().unwrap();
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
