//! The `inject_files` deploy step. STUB.

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::hardware::StepCall;
use serde_json::Value;

pub fn inject_files(_agent: &Agent, call: &StepCall) -> Result<Value> {
    Err(AgentError::new(
        call.kind.error_kind(),
        "inject_files is not implemented in this build yet",
    ))
}
