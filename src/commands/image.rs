//! The `image` extension: `install_bootloader` (async since 2020).

use super::{param, Params};
use crate::agent::Agent;
use crate::error::Result;
use crate::image::bootloader;
use serde_json::Value;
use std::sync::Arc;

pub fn install_bootloader(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    let args = bootloader::Args {
        root_uuid: param::str(p, "root_uuid"),
        efi_system_part_uuid: param::str(p, "efi_system_part_uuid"),
        target_boot_mode: param::str(p, "target_boot_mode"),
        ignore_bootloader_failure: param::bool(p, "ignore_bootloader_failure"),
    };
    let host = agent.host();
    bootloader::install_bootloader(&host.env, &args, &|| host.install_device())
}
