//! UEFI boot entries through efivarfs. STUB.

use crate::agent::Agent;
use crate::commands::Params;
use crate::error::{AgentError, Kind, Result};
use crate::hardware::StepCall;
use serde_json::Value;

pub fn clean_uefi_nvram(_agent: &Agent, call: &StepCall) -> Result<Value> {
    Err(AgentError::new(
        call.kind.error_kind(),
        "clean_uefi_nvram is not implemented in this build yet",
    ))
}

/// `image.install_bootloader`.
pub fn install_bootloader(_agent: &Agent, _params: &Params) -> Result<Value> {
    Err(AgentError::new(
        Kind::CommandExecutionError,
        "install_bootloader is not implemented in this build yet",
    ))
}
