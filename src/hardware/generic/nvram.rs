//! The `clean_uefi_nvram` clean and deploy step: boot entries deleted
//! from the firmware's NVRAM through efivarfs ([`crate::efi`]).

use crate::efi::{efivars_dir, Nvram};
use crate::error::{AgentError, Result};
use crate::hardware::StepCall;
use crate::root::Root;
use crate::util::regex::Regex;
use serde_json::Value;

/// IPA's `DEFAULT_CLEAN_UEFI_NVRAM_MATCH_PATTERNS`.
pub const DEFAULT_PATTERNS: [&str; 3] = [r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"];

/// The `clean_uefi_nvram` clean/deploy step (IPA's hardware.py and
/// `efi_utils.clean_boot_records`): delete every Boot#### whose device
/// path matches one of `match_patterns` (case-insensitive search; the
/// subset of Python's `re` that [`crate::util::regex`] supports; a pattern
/// too complex to search fails the step first), and drop them
/// from BootOrder. Returns null, as IPA.
pub fn clean_uefi_nvram(root: &Root, call: &StepCall) -> Result<Value> {
    let raw = call.args.get("match_patterns").filter(|v| !v.is_null());
    let patterns: Vec<String> = match raw {
        None => DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
        Some(v) => {
            let bad = || {
                AgentError::invalid_params(format!(
                    "The match_patterns must be a list of strings: {v}"
                ))
            };
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|p| p.as_str().map(String::from).ok_or_else(bad))
                .collect::<Result<_>>()?
        }
    };
    let compiled: Vec<Regex> = patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                AgentError::invalid_params(format!(
                    "The match_patterns must be a list of strings: {patterns:?} ({e})"
                ))
            })
        })
        .collect::<Result<_>>()?;
    let Some(nvram) = Nvram::open(root) else {
        return Err(AgentError::new(
            call.kind.error_kind(),
            format!(
                "clean_uefi_nvram: {} does not exist: the node did not boot in UEFI mode or \
                 efivarfs is not mounted",
                efivars_dir(root).display()
            ),
        ));
    };
    // Decide for every entry before deleting any, so that a pattern too
    // complex to search fails the step with the NVRAM untouched.
    let mut doomed = Vec::new();
    for e in nvram.entries()? {
        for (r, p) in compiled.iter().zip(&patterns) {
            let hit = r.is_match(&e.path_text).map_err(|why| {
                AgentError::new(
                    call.kind.error_kind(),
                    format!(
                        "clean_uefi_nvram: match pattern {p:?} against Boot{:04X}'s device \
                         path {:?}: {why}",
                        e.number, e.path_text
                    ),
                )
            })?;
            if hit {
                crate::util::log_at!(
                    Debug,
                    "Path {} matched pattern {}, entry will be deleted: {}",
                    e.path_text,
                    p,
                    e.description
                );
                doomed.push(e.number);
                break;
            }
        }
    }
    for number in doomed {
        nvram.delete_entry(number)?;
    }
    Ok(Value::Null)
}
