//! The hardware inventory's data types, with IPA's key names and JSON types
//! (`ironic_python_agent/hardware.py`: `NetworkInterface`, `CPU`, `Memory`,
//! `BlockDevice`, `SystemVendorInfo`, `BootInfo`; protocol §5.4). The code
//! that fills them from /sys, /proc and /dev lives in `generic/`.

use serde::Serialize;

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct NetworkInterface {
    pub name: String,
    pub mac_address: Option<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub has_carrier: bool,
    pub lldp: Option<Vec<(u8, String)>>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub client_id: Option<String>,
    pub biosdevname: Option<String>,
    pub speed_mbps: Option<u64>,
    pub pci_address: Option<String>,
    pub driver: Option<String>,
    /// The current (possibly bond-inherited) MAC when it differs from the
    /// permanent one; not part of IPA's serialisation.
    #[serde(skip)]
    pub current_mac: Option<String>,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Cpu {
    pub model_name: String,
    /// IPA reports lscpu's `CPU max MHz` (else `CPU MHz`) as a string.
    pub frequency: String,
    pub count: u64,
    pub architecture: String,
    pub flags: Vec<String>,
    pub socket_count: u64,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub total: u64,
    pub physical_mb: Option<u64>,
}

pub use crate::disk::BlockDevice;

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Firmware {
    pub vendor: String,
    pub version: String,
    pub build_date: String,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct SystemVendor {
    pub product_name: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub firmware: Firmware,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct BootInfo {
    /// "uefi" or "bios".
    pub current_boot_mode: String,
    /// The raw BOOTIF kernel parameter.
    pub pxe_interface: Option<String>,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub interfaces: Vec<NetworkInterface>,
    pub cpu: Cpu,
    pub disks: Vec<BlockDevice>,
    pub memory: Memory,
    pub bmc_address: Option<String>,
    pub bmc_v6address: Option<String>,
    /// IPA only adds the key when a BMC MAC was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    pub system_vendor: SystemVendor,
    pub boot: BootInfo,
    pub hostname: String,
}
