//! The agent's one error type.
//!
//! Every failure a command can report is an [`AgentError`]: IPA's exception
//! class name (`type`), its HTTP-ish status (`code`), the class's fixed
//! `message` and the specific `details`. That is exactly the `command_error`
//! object Ironic reads (`ironic_python_agent/errors.py`, serialized by
//! `RESTError.serializable_fields`), so Ironic's special cases keep working
//! (it reads `details`, falls back to `message`, and treats `TypeError` as a
//! parameter mismatch).
//!
//! Context strings follow coreos-installer's voice: say what was being done,
//! lowercase, and let the OS error finish the sentence ("opening /dev/sda:
//! Device or resource busy").

use serde_json::{json, Value};
use std::fmt;
use std::io;

/// IPA's error classes that the agent can raise. The variant name is the
/// Python class name Ironic sees in `command_error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    InvalidContentError,
    NotFound,
    CommandExecutionError,
    InvalidCommandError,
    InvalidCommandParamsError,
    RequestedObjectNotFoundError,
    AgentIsBusy,
    IronicAPIError,
    HeartbeatError,
    HeartbeatConflictError,
    LookupNodeError,
    LookupAgentIPError,
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageDownloadOutofSpaceError,
    ImageDownloadFatalError,
    ImageChecksumError,
    ImageWriteError,
    SystemRebootError,
    BlockDeviceEraseError,
    BlockDeviceError,
    SoftwareRAIDError,
    UnknownNodeError,
    HardwareManagerNotFound,
    HardwareManagerMethodNotFound,
    IncompatibleHardwareMethodError,
    VersionMismatch,
    CleaningError,
    DeploymentError,
    ServicingError,
    DeviceNotFound,
    ClockSyncError,
    ProtectedDeviceError,
    InvalidImage,
    /// Not an agent error class in IPA: Python's own `TypeError`, which
    /// Ironic detects to fall back to older parameter sets.
    TypeError,
}

impl Kind {
    /// `(class name, status code, fixed message)` as in IPA's errors.py.
    pub fn describe(self) -> (&'static str, u16, &'static str) {
        use Kind::*;
        match self {
            InvalidContentError => ("InvalidContentError", 400, "Invalid request body"),
            NotFound => ("NotFound", 404, "Not found"),
            CommandExecutionError => ("CommandExecutionError", 500, "Command execution failed"),
            InvalidCommandError => ("InvalidCommandError", 400, "Invalid command"),
            InvalidCommandParamsError => (
                "InvalidCommandParamsError",
                400,
                "Invalid command parameters",
            ),
            RequestedObjectNotFoundError => ("RequestedObjectNotFoundError", 404, "Not found"),
            AgentIsBusy => ("AgentIsBusy", 409, "Agent is busy"),
            IronicAPIError => ("IronicAPIError", 500, "Error in call to ironic-api"),
            HeartbeatError => ("HeartbeatError", 500, "Error heartbeating to agent API"),
            HeartbeatConflictError => (
                "HeartbeatConflictError",
                500,
                "ConflictError heartbeating to agent API",
            ),
            LookupNodeError => (
                "LookupNodeError",
                500,
                "Error getting configuration from Ironic",
            ),
            LookupAgentIPError => (
                "LookupAgentIPError",
                500,
                "Error finding IP for Ironic Agent",
            ),
            ImageDownloadError => ("ImageDownloadError", 500, "Error downloading image"),
            ImageDownloadTimeoutError => {
                ("ImageDownloadTimeoutError", 408, "Image download timeout")
            }
            ImageDownloadOutofSpaceError => (
                "ImageDownloadOutofSpaceError",
                500,
                "Error downloading image",
            ),
            ImageDownloadFatalError => ("ImageDownloadFatalError", 500, "Error downloading image"),
            ImageChecksumError => ("ImageChecksumError", 500, "Error verifying image checksum"),
            ImageWriteError => ("ImageWriteError", 500, "Error writing image to device"),
            SystemRebootError => ("SystemRebootError", 500, "Error rebooting system"),
            BlockDeviceEraseError => ("BlockDeviceEraseError", 500, "Error erasing block device"),
            BlockDeviceError => ("BlockDeviceError", 500, "Block device caused unknown error"),
            SoftwareRAIDError => (
                "SoftwareRAIDError",
                500,
                "Software RAID caused unknown error",
            ),
            UnknownNodeError => (
                "UnknownNodeError",
                500,
                "Agent is not associated with an Ironic node",
            ),
            HardwareManagerNotFound => (
                "HardwareManagerNotFound",
                500,
                "No valid HardwareManager found",
            ),
            HardwareManagerMethodNotFound => (
                "HardwareManagerMethodNotFound",
                500,
                "No HardwareManager found to handle method",
            ),
            IncompatibleHardwareMethodError => (
                "IncompatibleHardwareMethodError",
                500,
                "HardwareManager method is not compatible with hardware",
            ),
            VersionMismatch => (
                "VersionMismatch",
                409,
                "Hardware managers version mismatch, reload agent with correct version",
            ),
            CleaningError => ("CleaningError", 500, "Clean step failed"),
            DeploymentError => ("DeploymentError", 500, "Deploy step failed"),
            ServicingError => ("ServicingError", 500, "Service step failed"),
            DeviceNotFound => (
                "DeviceNotFound",
                404,
                "Error finding the disk or partition device to deploy the image onto",
            ),
            ClockSyncError => ("ClockSyncError", 500, "Error syncing system clock"),
            ProtectedDeviceError => (
                "ProtectedDeviceError",
                500,
                "Protected device located, cleaning aborted.",
            ),
            InvalidImage => (
                "InvalidImage",
                500,
                "The provided image is not valid for use",
            ),
            TypeError => ("TypeError", 500, "Invalid command parameters"),
        }
    }
}

/// A failure with IPA's serialisation. Construct it through the helpers
/// below so that details read like IPA's.
///
/// One pointer wide: every `Result<T>` in the agent carries it, and a
/// 56-byte error made each `?` copy 56 bytes and each `Result` that much
/// larger: boxing it took 59,456 bytes off the stable static binary
/// (2026-12-07). Its fields read through `Deref` (`e.details`, `e.kind`).
#[derive(Clone, PartialEq, Eq)]
pub struct AgentError(Box<Fields>);

/// What an [`AgentError`] holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Fields {
    pub kind: Kind,
    pub details: String,
    /// Overrides the class's fixed message (IPA does this for
    /// `ProtectedDeviceError`, whose message is the details).
    pub message: Option<String>,
}

impl std::ops::Deref for AgentError {
    type Target = Fields;
    fn deref(&self) -> &Fields {
        &self.0
    }
}

impl std::ops::DerefMut for AgentError {
    fn deref_mut(&mut self) -> &mut Fields {
        &mut self.0
    }
}

impl fmt::Debug for AgentError {
    /// As the derived one was before the box: `AgentError { kind, .. }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentError")
            .field("kind", &self.kind)
            .field("details", &self.details)
            .field("message", &self.message)
            .finish()
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub fn new(kind: Kind, details: impl Into<String>) -> Self {
        AgentError(Box::new(Fields {
            kind,
            details: details.into(),
            message: None,
        }))
    }

    /// The details, taken out of the error.
    pub fn into_details(self) -> String {
        self.0.details
    }

    pub fn code(&self) -> u16 {
        self.kind.describe().1
    }

    pub fn type_name(&self) -> &'static str {
        self.kind.describe().0
    }

    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or(self.kind.describe().2)
    }

    /// The `command_error` object: `{type, code, message, details}`.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.type_name(),
            "code": self.code(),
            "message": self.message(),
            "details": self.details,
        })
    }

    pub fn is(&self, kind: Kind) -> bool {
        self.kind == kind
    }

    /// `InvalidCommandParamsError` (400 when raised during validation).
    pub fn invalid_params(details: impl Into<String>) -> Self {
        Self::new(Kind::InvalidCommandParamsError, details)
    }

    /// `CommandExecutionError`: the wrapper for failures that are not an
    /// agent error class of their own.
    pub fn execution(details: impl Into<String>) -> Self {
        Self::new(Kind::CommandExecutionError, details)
    }

    /// `IncompatibleHardwareMethodError`: "not this manager, try the next".
    pub fn incompatible(details: impl Into<String>) -> Self {
        Self::new(Kind::IncompatibleHardwareMethodError, details)
    }

    /// `HardwareManagerMethodNotFound` with IPA's details text.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            Kind::HardwareManagerMethodNotFound,
            format!("Could not find method: {method}"),
        )
    }

    pub fn device_not_found(details: impl Into<String>) -> Self {
        Self::new(Kind::DeviceNotFound, details)
    }

    pub fn block_device(details: impl Into<String>) -> Self {
        Self::new(Kind::BlockDeviceError, details)
    }

    pub fn erase(details: impl Into<String>) -> Self {
        Self::new(Kind::BlockDeviceEraseError, details)
    }

    /// `ImageDownloadError` with IPA's "Download of image X failed: Y".
    pub fn download(image_id: &str, msg: impl fmt::Display) -> Self {
        Self::new(
            Kind::ImageDownloadError,
            format!("Download of image {image_id} failed: {msg}"),
        )
    }

    /// `ImageChecksumError` with IPA's details text.
    pub fn checksum(image_id: &str, location: &str, expected: &str, actual: &str) -> Self {
        Self::new(
            Kind::ImageChecksumError,
            format!(
                "Image failed to verify against checksum. location: {location}; \
                 image ID: {image_id}; image checksum: {expected}; \
                 verification checksum: {actual}"
            ),
        )
    }

    /// `ProtectedDeviceError` with IPA's text (its message is the details).
    pub fn protected_device(device: &str, what: &str) -> Self {
        let details = format!(
            "Protected {what} located on device {device}. This volume or contents may be a \
             shared block device. Please consult your storage administrator, and restart \
             cleaning after either detaching the volumes, or instructing IPA to not protect \
             contents. See Ironic Python Agent documentation for more information."
        );
        AgentError(Box::new(Fields {
            kind: Kind::ProtectedDeviceError,
            message: Some(details.clone()),
            details,
        }))
    }

    /// Wrap an I/O error with what was being done: "opening /dev/sda: ...".
    pub fn io(kind: Kind, op: impl fmt::Display, err: io::Error) -> Self {
        Self::new(kind, format!("{op}: {err}"))
    }

    /// A failure a lower layer reports before anyone knows which IPA class
    /// it belongs to (a parser, a TLS setup, a table): `CommandExecutionError`
    /// until the caller re-classifies it with [`AgentError::reclass`] or
    /// [`Context::ctx`].
    pub fn msg(details: impl Into<String>) -> Self {
        Self::new(Kind::CommandExecutionError, details)
    }

    /// The same details under another IPA class.
    pub fn reclass(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self.message = None;
        self
    }
}

impl fmt::Display for AgentError {
    /// IPA's `str(exc)`: "<message>: <details>".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message(), self.details)
    }
}

impl std::error::Error for AgentError {}

/// The one context helper: attach "what was being done" to a failure and
/// give it its IPA class, for I/O errors and for the agent's own
/// ("reading /dev/sda to find its signatures: Input/output error").
pub trait Context<T> {
    fn ctx(self, kind: Kind, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, kind: Kind, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| AgentError::io(kind, op(), e))
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx(self, kind: Kind, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| AgentError::new(kind, format!("{}: {}", op(), e.details)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_ipa() {
        let e = AgentError::checksum("img", "http://x/img", "aa", "bb");
        let v = e.to_json();
        assert_eq!(v["type"], "ImageChecksumError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["message"], "Error verifying image checksum");
        assert!(v["details"]
            .as_str()
            .unwrap()
            .starts_with("Image failed to verify"));
        assert_eq!(
            AgentError::new(Kind::VersionMismatch, "x").to_json()["code"],
            409
        );
    }

    #[test]
    fn display_is_message_colon_details() {
        let e = AgentError::method_not_found("erase_devices");
        assert_eq!(
            e.to_string(),
            "No HardwareManager found to handle method: Could not find method: erase_devices"
        );
    }

    #[test]
    fn protected_device_message_is_details() {
        let e = AgentError::protected_device("/dev/sda", "VMFS filesystem");
        assert_eq!(e.message(), e.details);
    }

    #[test]
    fn error_is_small() {
        assert_eq!(std::mem::size_of::<AgentError>(), 8);
    }
}
