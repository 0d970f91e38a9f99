//! Root-device hints as a node carries them (`hardware::hints`:
//! `parse_hints`, IPA's `parse_root_device_hints`, and the device choice
//! `select_root_device`) against a few disks of a fixed inventory.
#![no_main]

use ironic_agent::disk::BlockDevice;
use ironic_agent::hardware::hints;
use ironic_agent_fuzz::json_object;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn devices() -> &'static [BlockDevice] {
    static D: OnceLock<Vec<BlockDevice>> = OnceLock::new();
    D.get_or_init(|| {
        let disk = |name: &str, size: u64, rotational: bool, serial: &str| BlockDevice {
            name: format!("/dev/{name}"),
            kname: name.to_string(),
            model: Some("QEMU HARDDISK".into()),
            size,
            rotational,
            serial: Some(serial.into()),
            vendor: Some("ATA".into()),
            wwn: Some("0x5000c500a1b2c3d4".into()),
            hctl: Some("0:0:0:0".into()),
            by_path: Some(format!("/dev/disk/by-path/pci-0000:00:1f.2-{name}")),
            tran: Some("sata".into()),
            dev_type: "disk".into(),
            ..Default::default()
        };
        vec![
            disk("sda", 10 << 30, true, "S1"),
            disk("sdb", 100 << 30, false, "S2"),
            disk("nvme0n1", 1 << 40, false, "N1"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(h) = json_object(data) else {
        return;
    };
    let _ = hints::parse_hints(&h);
    let devs = devices();
    if let Ok(found) = hints::find_devices(devs, &h) {
        assert!(found.len() <= devs.len());
    }
    let _ = hints::select_root_device(devs, Some(&h));
    let _ = hints::matches_any(&devs[0], std::slice::from_ref(&h));
});
