//! The `image` extension: `install_bootloader` (async since 2020).

use super::Params;
use crate::agent::Agent;
use crate::error::Result;
use serde_json::Value;
use std::sync::Arc;

pub fn install_bootloader(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    crate::image::efi::install_bootloader(agent, p)
}
