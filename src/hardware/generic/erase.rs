//! Erase steps. STUB: to be implemented.

use crate::agent::Agent;
use crate::error::Result;
use crate::hardware::StepCall;
use serde_json::Value;

fn todo(call: &StepCall) -> Result<Value> {
    Err(super::step_error(
        call,
        format!("{} is not implemented in this build yet", call.step),
    ))
}

pub fn erase_devices(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}
pub fn erase_devices_metadata(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}
pub fn erase_devices_express(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}
pub fn erase_pstore(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}
