//! Example vendor hardware manager. STUB: to be implemented.

use crate::agent::Agent;
use crate::error::Result;
use crate::hardware::{Step, StepCall, StepKind};
use serde_json::Value;

pub struct ExampleBiosHardwareManager;

impl ExampleBiosHardwareManager {
    pub fn evaluate_hardware_support(&self, _agent: &Agent) -> u32 {
        0
    }
    pub fn get_steps(&self, _kind: StepKind) -> Option<Result<Vec<Step>>> {
        None
    }
    pub fn execute_step(&self, _agent: &Agent, _call: &StepCall) -> Option<Result<Value>> {
        None
    }
}
