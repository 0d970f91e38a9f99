//! Image handling: download, checksum, formats, write. STUB.

pub mod configdrive;
pub mod disk;
pub mod efi;
pub mod fat;
pub mod gpt;
pub mod inject;
pub mod mbr;
pub mod minire;
pub mod partition;

use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use crate::hardware::StepCall;
use serde_json::{Map, Value};

/// Synchronous validation of `image_info` (IPA's
/// `_validate_image_info`): 400 on failure.
pub fn validate_image_info(agent: &Agent, image_info: &Map<String, Value>) -> Result<()> {
    let _ = (agent, image_info);
    Ok(())
}

/// `standby.prepare_image`: write the image, returns IPA's result string.
pub fn prepare_image(
    agent: &Agent,
    image_info: &Map<String, Value>,
    configdrive: Option<&Value>,
) -> Result<String> {
    let _ = (agent, image_info, configdrive);
    Err(AgentError::new(
        Kind::ImageWriteError,
        "writing images is not implemented in this build yet",
    ))
}

/// The `write_image` deploy/service step.
pub fn write_image_step(agent: &Agent, call: &StepCall) -> Result<Value> {
    let info = call
        .args
        .get("image_info")
        .and_then(Value::as_object)
        .ok_or_else(|| AgentError::invalid_params("image_info is required"))?;
    validate_image_info(agent, info)?;
    prepare_image(agent, info, call.args.get("configdrive")).map(Value::String)
}
