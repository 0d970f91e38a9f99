//! Script steps: executables in a steps directory with a JSON manifest.
//! STUB: to be implemented.

use crate::agent::Agent;
use crate::error::Result;
use crate::hardware::{Step, StepCall, StepKind};
use serde_json::Value;

#[derive(Default)]
pub struct ScriptHardwareManager;

impl ScriptHardwareManager {
    pub fn load(_agent: &Agent) -> Self {
        ScriptHardwareManager
    }
    pub fn version(&self) -> String {
        "1.0".into()
    }
    pub fn evaluate_hardware_support(&self) -> u32 {
        0
    }
    pub fn get_steps(&self, _kind: StepKind) -> Vec<Step> {
        vec![]
    }
    pub fn execute_step(&self, _agent: &Agent, _call: &StepCall) -> Option<Result<Value>> {
        None
    }
}
