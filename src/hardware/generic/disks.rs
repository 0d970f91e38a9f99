//! Block devices from /sys/block. STUB: to be implemented.

use crate::error::Result;
use crate::hardware::inventory::BlockDevice;
use crate::root::Root;

/// Disks (and with `include_partitions` their partitions), IPA's
/// `list_all_block_devices` without lsblk/udevadm.
pub fn list_block_devices(root: &Root, include_partitions: bool) -> Result<Vec<BlockDevice>> {
    let _ = (root, include_partitions);
    Ok(vec![])
}
