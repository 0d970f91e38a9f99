//! `image_info` as Ironic sends it (`ironic/drivers/modules/agent.py`
//! `_get_image_info`, `deploy_utils.build_instance_info_for_deploy`), parsed
//! once at the command boundary (`standby.prepare_image`, the `write_image`
//! step) with IPA's validation (`extensions/standby.py`:
//! `_validate_image_info`) and its error texts. Keys this agent does not use
//! are ignored, as IPA ignores them.
//!
//! Ironic sends numbers as JSON numbers or, from older releases, strings;
//! both are accepted where IPA would accept them.

use crate::error::{AgentError, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Whole disk or partition image (`image_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageType {
    #[default]
    WholeDisk,
    Partition,
}

/// The sizes and options of a partition image (IPA's `work_on_disk`
/// arguments); zero when not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionSpec {
    pub root_mb: u64,
    pub swap_mb: u64,
    pub ephemeral_mb: u64,
    pub ephemeral_format: Option<String>,
    pub preserve_ephemeral: bool,
}

/// How to authenticate to the image server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// `image_request_authorization`: the base64 of a whole Authorization
    /// header value (wins over basic auth).
    pub request_authorization: Option<String>,
    /// `image_server_auth_strategy`.
    pub strategy: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// One `image_info`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageInfo {
    /// `id`, as text (Ironic sends the Glance UUID or the URL).
    pub id: String,
    pub urls: Vec<String>,
    /// `checksum`: a digest or a checksum-file URL (legacy field).
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    /// `disk_format` as declared (raw, qcow2, ...).
    pub disk_format: Option<String>,
    pub image_type: ImageType,
    /// `deploy_boot_mode` (uefi, bios).
    pub deploy_boot_mode: Option<String>,
    /// `proxies`: scheme (or `all`) → proxy URL.
    pub proxies: BTreeMap<String, String>,
    pub no_proxy: Option<String>,
    pub auth: Auth,
    /// Only for `image_type: partition`.
    pub partition: PartitionSpec,
}

/// A non-empty string field.
fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => crate::config::parse_bool(s).unwrap_or(false),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) != 0,
        _ => false,
    }
}

fn mb(m: &Map<String, Value>, key: &str) -> Result<u64> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => crate::util::as_u64_lenient(v).ok_or_else(|| {
            AgentError::invalid_params(format!("image_info.{key} must be a number of MiB"))
        }),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl ImageInfo {
    /// Parse and validate (IPA's `_validate_image_info`): `id` and a
    /// non-empty `urls` list are required, and a usable checksum: `checksum`
    /// (a URL or a SHA-2 digest, or an md5 while md5 is enabled) or the
    /// `os_hash_algo`/`os_hash_value` pair. `InvalidCommandParamsError`
    /// (400 when validating a submission) with IPA's texts.
    pub fn parse(m: &Map<String, Value>, md5_enabled: bool) -> Result<ImageInfo> {
        for field in ["id", "urls"] {
            if !m.contains_key(field) {
                return Err(AgentError::invalid_params(format!(
                    "Image is missing '{field}' field."
                )));
            }
        }
        let urls = match m["urls"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|u| {
                    u.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| u.to_string())
                })
                .collect(),
            _ => {
                return Err(AgentError::invalid_params(
                    "Image 'urls' must be a list with at least one element.",
                ))
            }
        };
        let mut usable = false;
        let checksum = match m.get("checksum").filter(|v| !v.is_null()) {
            None => None,
            Some(c) => {
                let Some(c) = c.as_str().filter(|s| !s.is_empty()) else {
                    return Err(AgentError::invalid_params(
                        "Image 'checksum' must be a non-empty string.",
                    ));
                };
                // a URL or longer than md5's 32 digits: a SHA-2 digest
                usable = is_url(c) || c.len() > 32 || md5_enabled;
                Some(c.to_string())
            }
        };
        let given = |k: &str| match m.get(k) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        let (os_hash_algo, os_hash_value) = (text(m, "os_hash_algo"), text(m, "os_hash_value"));
        if given("os_hash_algo") || given("os_hash_value") {
            for (k, v) in [
                ("os_hash_algo", &os_hash_algo),
                ("os_hash_value", &os_hash_value),
            ] {
                if v.is_none() {
                    return Err(AgentError::invalid_params(format!(
                        "Image '{k}' must be a non-empty string."
                    )));
                }
            }
            usable = true;
        }
        if !usable {
            return Err(AgentError::invalid_params(
                "Image checksum is not available, either the 'checksum' field or the \
                 'os_hash_algo' and 'os_hash_value' fields pair must be set for image \
                 verification.",
            ));
        }
        let image_type = match m.get("image_type").and_then(Value::as_str) {
            Some("partition") => ImageType::Partition,
            _ => ImageType::WholeDisk,
        };
        let partition = if image_type == ImageType::Partition {
            PartitionSpec {
                root_mb: mb(m, "root_mb")?,
                swap_mb: mb(m, "swap_mb")?,
                ephemeral_mb: mb(m, "ephemeral_mb")?,
                ephemeral_format: m
                    .get("ephemeral_format")
                    .and_then(Value::as_str)
                    .map(String::from),
                preserve_ephemeral: truthy(m.get("preserve_ephemeral")),
            }
        } else {
            PartitionSpec::default()
        };
        let proxies = m
            .get("proxies")
            .and_then(Value::as_object)
            .map(|p| {
                crate::util::collect_map(
                    p.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))),
                )
            })
            .unwrap_or_default();
        Ok(ImageInfo {
            id: match &m["id"] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            urls,
            checksum,
            os_hash_algo,
            os_hash_value,
            disk_format: m
                .get("disk_format")
                .and_then(Value::as_str)
                .map(String::from),
            image_type,
            deploy_boot_mode: m
                .get("deploy_boot_mode")
                .and_then(Value::as_str)
                .map(String::from),
            proxies,
            no_proxy: text(m, "no_proxy"),
            auth: Auth {
                request_authorization: text(m, "image_request_authorization"),
                strategy: text(m, "image_server_auth_strategy"),
                user: text(m, "image_server_user"),
                password: text(m, "image_server_password"),
            },
            partition,
        })
    }

    pub fn is_partition(&self) -> bool {
        self.image_type == ImageType::Partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(v: Value, md5: bool) -> Result<ImageInfo> {
        ImageInfo::parse(v.as_object().unwrap(), md5)
    }

    #[test]
    fn validation_like_ipa() {
        let ok = |v: Value, md5: bool| parse(v, md5);
        let msg = |v: Value, md5: bool| ok(v, md5).unwrap_err().into_details();
        assert_eq!(
            msg(json!({"urls": ["u"]}), true),
            "Image is missing 'id' field."
        );
        assert_eq!(
            msg(json!({"id": "i", "urls": []}), true),
            "Image 'urls' must be a list with at least one element."
        );
        assert_eq!(
            msg(json!({"id": "i", "urls": "u", "checksum": "x"}), true),
            "Image 'urls' must be a list with at least one element."
        );
        assert_eq!(
            msg(json!({"id": "i", "urls": ["u"], "checksum": ""}), true),
            "Image 'checksum' must be a non-empty string."
        );
        assert_eq!(
            msg(
                json!({"id": "i", "urls": ["u"], "os_hash_algo": "sha256"}),
                true
            ),
            "Image 'os_hash_value' must be a non-empty string."
        );
        assert!(msg(json!({"id": "i", "urls": ["u"]}), true).starts_with("Image checksum is not"));
        // md5 only while enabled
        assert!(ok(
            json!({"id": "i", "urls": ["u"], "checksum": "d41d8cd98f00b204e9800998ecf8427e"}),
            true
        )
        .is_ok());
        assert!(ok(
            json!({"id": "i", "urls": ["u"], "checksum": "d41d8cd98f00b204e9800998ecf8427e"}),
            false
        )
        .is_err());
        assert!(ok(json!({"id": "i", "urls": ["u"], "checksum": SHA256}), false).is_ok());
        assert!(ok(
            json!({"id": "i", "urls": ["u"], "checksum": "http://x/S"}),
            false
        )
        .is_ok());
        assert!(ok(
            json!({"id": "i", "urls": ["u"], "os_hash_algo": "sha512", "os_hash_value": "a"}),
            false
        )
        .is_ok());
        let e = parse(json!({"id": "i"}), true).unwrap_err();
        assert_eq!(e.code(), 400);
    }

    #[test]
    fn fields_are_typed_and_unknown_keys_ignored() {
        let i = parse(
            json!({"id": 7, "urls": ["http://x/a.img"], "os_hash_algo": "sha256",
                   "os_hash_value": SHA256, "disk_format": "qcow2", "image_type": "partition",
                   "root_mb": "1024", "swap_mb": 64, "preserve_ephemeral": "true",
                   "proxies": {"http": "http://p:3128", "bad": 1}, "no_proxy": "",
                   "something_new": {"x": 1}}),
            false,
        )
        .unwrap();
        assert_eq!(i.id, "7");
        assert!(i.is_partition());
        assert_eq!(i.partition.root_mb, 1024);
        assert_eq!(i.partition.swap_mb, 64);
        assert!(i.partition.preserve_ephemeral);
        assert_eq!(i.proxies.len(), 1);
        assert_eq!(i.no_proxy, None);
        assert_eq!(i.disk_format.as_deref(), Some("qcow2"));
        // partition sizes are checked only for partition images
        let e = parse(
            json!({"id": "i", "urls": ["u"], "checksum": SHA256, "image_type": "partition",
                   "root_mb": "lots"}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.details, "image_info.root_mb must be a number of MiB");
        assert!(parse(
            json!({"id": "i", "urls": ["u"], "checksum": SHA256, "root_mb": "lots"}),
            false
        )
        .is_ok());
    }
}
