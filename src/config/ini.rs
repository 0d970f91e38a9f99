//! oslo.config's INI dialect, the format of IPA's configuration files
//! (`oslo_config/iniparser.py:BaseParser.parse`, `cfg.py:ConfigParser`):
//!
//! - `[section]` starts a section. Names other than `DEFAULT` are
//!   lower-cased (`[DISK_UTILS]` is `[disk_utils]`; `[default]` is not
//!   `[DEFAULT]`), ASCII letters only (oslo lowers any letter; IPA's
//!   sections are ASCII);
//! - `key = value` or `key: value`, split at whichever of `=` and `:` comes
//!   first; key and value are trimmed and one pair of matching surrounding
//!   quotes (`"` or `'`) is removed from the value;
//! - a line starting with `#` or `;` is a comment; there are no inline
//!   comments (`a = 1 # one` sets "1 # one");
//! - an indented line continues the previous value, joined with "\n"; a
//!   blank line or a comment ends the value;
//! - an assignment before any section, an indented line with nothing to
//!   continue, a line with neither `=` nor `:`, an empty key and a bad
//!   section header are errors, worded as oslo words them.
//!
//! Repeated keys are all returned in order; the caller keeps the last, as
//! oslo does for single-valued options. Pure: no I/O.

use crate::error::{AgentError, Result};
use std::path::Path;

/// One assignment of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Normalised: `DEFAULT`, or the section name lower-cased.
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// Parse a file's text. `file` only names the file in errors, which read
/// like oslo's `ConfigFileParseError`: "Failed to parse FILE: at line N,
/// MESSAGE: 'LINE'".
pub fn parse(text: &str, file: &Path) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut section: Option<String> = None;
    // Whether the last entry may still take continuation lines.
    let mut open = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let err = |msg: &str| {
            AgentError::invalid_params(format!(
                "Failed to parse {}: at line {}, {msg}: '{line}'",
                file.display(),
                i + 1
            ))
        };
        if line.is_empty() {
            open = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some(last) if open => {
                    last.value.push('\n');
                    last.value.push_str(line.trim_start());
                }
                _ => return Err(err("Unexpected continuation line")),
            }
            continue;
        }
        open = false;
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(err("Invalid section (must end with ])"));
            }
            let name = &line[1..line.len() - 1];
            if name.is_empty() {
                return Err(err("Empty section name"));
            }
            section = Some(if name == "DEFAULT" {
                name.to_string()
            } else {
                name.to_ascii_lowercase()
            });
        } else if line.starts_with(['#', ';']) {
            // a comment
        } else {
            let Some(at) = line.find(['=', ':']) else {
                return Err(err("No ':' or '=' found in assignment"));
            };
            let key = line[..at].trim();
            if key.is_empty() {
                return Err(err("Key cannot be empty"));
            }
            let Some(section) = &section else {
                return Err(err("Section must be started before assignment"));
            };
            out.push(Entry {
                section: section.clone(),
                key: key.to_string(),
                value: unquote(line[at + 1..].trim()).to_string(),
                line: i + 1,
            });
            open = true;
        }
    }
    Ok(out)
}

/// oslo's `_split_key_value`: one pair of matching quotes comes off.
fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    match b.first() {
        Some(&q @ (b'"' | b'\'')) if b[b.len() - 1] == q => v.get(1..v.len() - 1).unwrap_or(""),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, String, String)> {
        parse(text, Path::new("t.conf"))
            .unwrap()
            .into_iter()
            .map(|e| (e.section, e.key, e.value))
            .collect()
    }

    fn e(s: &str, k: &str, v: &str) -> (String, String, String) {
        (s.into(), k.into(), v.into())
    }

    #[test]
    fn sections_keys_and_values() {
        let text = "# a comment\n; another\n[DEFAULT]\napi_url = http://a:6385\n\
                    insecure: true\n  \n[DISK_UTILS]\nefi_system_partition_size=1024\n\
                    [default]\ndebug = 1\n[DEFAULT]\nurl = http://x/?a=b:c\n";
        assert_eq!(
            p(text),
            vec![
                e("DEFAULT", "api_url", "http://a:6385"),
                e("DEFAULT", "insecure", "true"),
                e("disk_utils", "efi_system_partition_size", "1024"),
                // only DEFAULT keeps its case: [default] is another section
                e("default", "debug", "1"),
                // the first of '=' and ':' splits
                e("DEFAULT", "url", "http://x/?a=b:c"),
            ]
        );
        assert_eq!(p("[a]\nk: v=w\n"), vec![e("a", "k", "v=w")]);
    }

    #[test]
    fn quotes_comments_and_empty_values() {
        assert_eq!(
            p("[DEFAULT]\na = \"x y\"\nb = 'z'\nc = \"q'\nd =\ne = 1 # not a comment\nf = \"\n"),
            vec![
                e("DEFAULT", "a", "x y"),
                e("DEFAULT", "b", "z"),
                e("DEFAULT", "c", "\"q'"),
                e("DEFAULT", "d", ""),
                e("DEFAULT", "e", "1 # not a comment"),
                e("DEFAULT", "f", ""),
            ]
        );
    }

    #[test]
    fn continuation_lines() {
        assert_eq!(
            p("[DEFAULT]\nlist = a,\n    b,\n\tc\nnext = 1\n"),
            vec![e("DEFAULT", "list", "a,\nb,\nc"), e("DEFAULT", "next", "1")]
        );
        // a blank line or a comment ends the value
        for text in [
            "[s]\nk = v\n\n  more\n",
            "[s]\nk = v\n# c\n  more\n",
            "[s]\n  x\n",
        ] {
            let err = parse(text, Path::new("t.conf")).unwrap_err().into_details();
            assert!(err.contains("Unexpected continuation line"), "{err}");
        }
        // CRLF files parse like LF files
        assert_eq!(p("[s]\r\nk = v\r\n"), vec![e("s", "k", "v")]);
    }

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        assert_eq!(
            p("[DEFAULT]\nk = 1\n[other]\nk = 2\n[DEFAULT]\nk = 3\n"),
            vec![
                e("DEFAULT", "k", "1"),
                e("other", "k", "2"),
                e("DEFAULT", "k", "3")
            ]
        );
    }

    #[test]
    fn errors_name_file_line_and_text() {
        for (text, want) in [
            (
                "k = v\n",
                "Failed to parse /etc/x.conf: at line 1, Section must be started before assignment: 'k = v'",
            ),
            (
                "[DEFAULT]\njust words\n",
                "at line 2, No ':' or '=' found in assignment: 'just words'",
            ),
            ("[DEFAULT]\n= v\n", "at line 2, Key cannot be empty"),
            ("[DEFAULT\n", "Invalid section (must end with ])"),
            ("[]\n", "Empty section name"),
        ] {
            let err = parse(text, Path::new("/etc/x.conf")).unwrap_err().into_details();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
