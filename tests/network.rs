//! `ironic-agent network-setup` (issue 18) against fixture roots: the
//! virtual media is an ISO made by genisoimage the way Ironic's
//! `images.create_boot_iso` makes it (`-r -J -l -V config-2 -publisher
//! <ir_pub_id>` for BIOS; `-r -l`, no Joliet, for UEFI) holding what
//! `image_utils.prepare_deploy_iso` injects. With `--root` the kernel is
//! not touched: the console lines say what is configured, the state file
//! for /init and the copied files are written under the root.
//!
//! The same code applies the data to real NICs in tests/vm/network.py.

mod common;

use common::test_dir;
use common::tools::{must, need};
use std::path::{Path, PathBuf};

const PUB_ID: &str = "8c6b6b4e-5c4e-4f0e-9f7e-0f2e1bb0a001";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB...test CA...\n-----END CERTIFICATE-----\n";
const TLS_CONF: &str = "[DEFAULT]\ncafile = /etc/ironic-python-agent/ironic.crt\n";

const BOND_VLAN: &str = r#"{
  "links": [
    {"id": "port0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
    {"id": "port1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
    {"id": "bond0", "type": "bond", "ethernet_mac_address": "52:54:00:00:00:01",
     "bond_mode": "active-backup", "bond_links": ["port0", "port1"], "bond_miimon": 100},
    {"id": "bond0.101", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101}
  ],
  "networks": [
    {"id": "v4", "network_id": "v4", "type": "ipv4", "link": "bond0.101",
     "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]},
    {"id": "v6", "network_id": "v6", "type": "ipv6", "link": "bond0.101",
     "ip_address": "2001:db8:101::10", "netmask": "ffff:ffff:ffff:ffff::"}
  ],
  "services": [{"type": "dns", "address": "192.0.2.53"}]
}"#;

/// An ISO as Ironic builds it: `joliet` for the BIOS layout, without for
/// the UEFI one (Rock Ridge names only).
fn iso(dir: &Path, name: &str, network_data: Option<&str>, joliet: bool, label: &str) -> PathBuf {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(src.join("etc/ironic-python-agent")).unwrap();
    std::fs::create_dir_all(src.join("etc/ironic-python-agent.d")).unwrap();
    std::fs::write(src.join("etc/ironic-python-agent/ironic.crt"), CA).unwrap();
    std::fs::write(
        src.join("etc/ironic-python-agent.d/ironic-tls.conf"),
        TLS_CONF,
    )
    .unwrap();
    std::fs::write(src.join("vmlinuz"), b"kernel").unwrap();
    if let Some(nd) = network_data {
        std::fs::create_dir_all(src.join("openstack/latest")).unwrap();
        std::fs::write(src.join("openstack/latest/network_data.json"), nd).unwrap();
    }
    let out = dir.join(format!("{name}.iso"));
    let mut args = vec![
        "genisoimage",
        "-quiet",
        "-r",
        "-l",
        "-V",
        label,
        "-publisher",
        PUB_ID,
    ];
    if joliet {
        args.push("-J");
    }
    let (o, s) = (out.to_str().unwrap(), src.to_str().unwrap());
    args.extend(["-o", o, s]);
    must(&args);
    out
}

/// A root with NICs eth0..eth2 (52:54:00:00:00:01..03), the ISO as a
/// CD-ROM /dev/sr0 and the given kernel command line.
fn root(dir: &Path, iso: Option<&Path>, cmdline: &str) -> PathBuf {
    let r = dir.join("root");
    let _ = std::fs::remove_dir_all(&r);
    for (i, n) in ["eth0", "eth1", "eth2"].iter().enumerate() {
        let d = r.join("sys/class/net").join(n);
        std::fs::create_dir_all(d.join("device")).unwrap();
        std::fs::write(d.join("address"), format!("52:54:00:00:00:0{}\n", i + 1)).unwrap();
    }
    std::fs::create_dir_all(r.join("sys/block")).unwrap();
    std::fs::create_dir_all(r.join("dev")).unwrap();
    std::fs::create_dir_all(r.join("proc")).unwrap();
    std::fs::create_dir_all(r.join("run")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("proc/cmdline"), format!("{cmdline}\n")).unwrap();
    if let Some(iso) = iso {
        let sr = r.join("sys/block/sr0");
        std::fs::create_dir_all(sr.join("device")).unwrap();
        std::fs::write(sr.join("device/type"), "5\n").unwrap();
        let len = std::fs::metadata(iso).unwrap().len();
        std::fs::write(sr.join("size"), format!("{}\n", len / 512)).unwrap();
        std::fs::copy(iso, r.join("dev/sr0")).unwrap();
    }
    r
}

/// Run network-setup on `root`: (console text, state file).
fn setup(root: &Path) -> (String, String) {
    let o = common::agent_command()
        .args([
            "network-setup",
            "--root",
            root.to_str().unwrap(),
            "--wait",
            "0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    let state = std::fs::read_to_string(root.join("run/ironic-agent/network")).unwrap_or_default();
    (text, state)
}

const VMEDIA: &str = "ir_pub_id=8c6b6b4e-5c4e-4f0e-9f7e-0f2e1bb0a001 ipa-api-url=https://192.0.2.1:6385 BOOTIF=52:54:00:00:00:01 boot_method=vmedia nofb vga=normal --";

#[test]
fn bond_vlan_from_bios_and_uefi_isos() {
    need(&["genisoimage"]);
    let dir = test_dir("netsetup-bond");
    for joliet in [true, false] {
        let iso = iso(
            &dir,
            &format!("j{joliet}"),
            Some(BOND_VLAN),
            joliet,
            "config-2",
        );
        let r = root(&dir, Some(&iso), VMEDIA);
        let (text, state) = setup(&r);
        for want in [
            "copied from /dev/sr0 (config-2): /etc/ironic-python-agent/ironic.crt /etc/ironic-python-agent.d/ironic-tls.conf",
            "configured bond bond0 (active-backup) of eth0, eth1",
            "configured vlan bond0.101 (id 101 on bond0)",
            "configured bond0.101: 192.0.2.10/24, route 0.0.0.0/0 via 192.0.2.1",
            "configured bond0.101: 2001:db8:101::10/64",
            "applied: eth0 eth1 configured, DHCP on eth2",
        ] {
            assert!(text.contains(want), "joliet {joliet}: no {want:?} in:\n{text}");
        }
        assert_eq!(state, "configured eth0 eth1\ndhcp \ndhcp6 \n");
        // placed where IPA places them, byte for byte
        assert_eq!(
            std::fs::read_to_string(r.join("etc/ironic-python-agent/ironic.crt")).unwrap(),
            CA
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/ironic-python-agent.d/ironic-tls.conf")).unwrap(),
            TLS_CONF
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap(),
            "nameserver 192.0.2.53\n"
        );
    }
}

/// Bad data never stops the boot: each problem is one console line and
/// the NICs it concerns keep DHCP.
#[test]
fn broken_network_data_falls_back_to_dhcp() {
    need(&["genisoimage"]);
    let dir = test_dir("netsetup-broken");
    // not JSON at all: every NIC keeps DHCP
    let iso1 = iso(
        &dir,
        "badjson",
        Some("{\"links\": [ {\"id\": "),
        true,
        "config-2",
    );
    let (text, state) = setup(&root(&dir, Some(&iso1), VMEDIA));
    assert!(
        text.contains("ignoring openstack/latest/network_data.json from /dev/sr0: network_data.json is not valid JSON"),
        "{text}"
    );
    assert!(text.contains("DHCP on every NIC"), "{text}");
    assert_eq!(state, "configured \ndhcp \ndhcp6 \n");

    // an unknown link type and a MAC that matches no NIC next to a good
    // static link: the good one is configured, the rest said and left
    let partial = r#"{"links": [
        {"id": "good", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
        {"id": "odd", "type": "token-ring", "ethernet_mac_address": "52:54:00:00:00:02"},
        {"id": "gone", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:99"}],
      "networks": [
        {"id": "n1", "type": "ipv4", "link": "good", "ip_address": "192.0.2.10", "netmask": "255.255.255.0"},
        {"id": "n2", "type": "ipv4", "link": "odd", "ip_address": "192.0.2.11", "netmask": "255.255.255.0"},
        {"id": "n3", "type": "ipv4", "link": "gone", "ip_address": "192.0.2.12", "netmask": "255.255.255.0"}],
      "services": []}"#;
    let iso2 = iso(&dir, "partial", Some(partial), true, "config-2");
    let (text, state) = setup(&root(&dir, Some(&iso2), VMEDIA));
    for want in [
        "network_data.json: link \"odd\": type \"token-ring\" is unknown",
        "network_data.json: network \"n2\": link \"odd\" is not a link that was accepted; ignored",
        "network_data.json: link \"gone\": no NIC has MAC 52:54:00:00:00:99; ignored with its networks",
        "configured eth0: 192.0.2.10/24",
        "applied: eth0 configured, DHCP on eth1 eth2",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert_eq!(state, "configured eth0\ndhcp \ndhcp6 \n");
}

/// resolve-configdrive's rules: a config-2 of another boot (publisher not
/// this ir_pub_id) is not read; a PXE boot reads none; a vmedia boot
/// without network data still gets IPA's configuration; no media at all
/// is said and DHCP goes on.
#[test]
fn which_media_are_read() {
    need(&["genisoimage"]);
    let dir = test_dir("netsetup-which");
    let iso1 = iso(&dir, "other", Some(BOND_VLAN), true, "config-2");
    let other = VMEDIA.replace(PUB_ID, "00000000-0000-0000-0000-000000000000");
    let (text, state) = setup(&root(&dir, Some(&iso1), &other));
    assert!(text.contains("copied from /dev/sr0"), "{text}");
    assert!(
        text.contains("ignoring /dev/sr0 (config-2): its publisher"),
        "{text}"
    );
    assert!(!text.contains("configured "), "{text}");
    assert_eq!(state, "configured \ndhcp \ndhcp6 \n");

    let (text, _) = setup(&root(
        &dir,
        Some(&iso1),
        "BOOTIF=01-52-54-00-00-00-01 ipa-api-url=x",
    ));
    assert_eq!(text, "", "a PXE boot reads no configuration drive");

    let iso2 = iso(&dir, "plain", None, false, "VMEDIA_BOOT_ISO");
    let r = root(&dir, Some(&iso2), VMEDIA);
    let (text, state) = setup(&r);
    assert!(
        text.contains("copied from /dev/sr0 (VMEDIA_BOOT_ISO)"),
        "{text}"
    );
    assert!(r.join("etc/ironic-python-agent.d/ironic-tls.conf").exists());
    assert_eq!(state, "configured \ndhcp \ndhcp6 \n");

    let (text, _) = setup(&root(&dir, None, VMEDIA));
    assert!(
        text.contains("boot_method=vmedia, but no virtual media labelled config-2 or VMEDIA_BOOT_ISO appeared within 0 s"),
        "{text}"
    );
}

/// Ironic's `prepare_floppy_image` (config_via_removable): a vfat image
/// labelled ir-vfd-dev with parameters.txt on a virtual USB stick; its
/// parameters win over the kernel command line (IPA's get_agent_params),
/// through the command line file /init hands the agent. Its token is not
/// printed.
#[test]
fn removable_parameters_image() {
    need(&["mkfs.vfat", "mcopy"]);
    let dir = test_dir("netsetup-vfd");
    let img = dir.join("vfd.img");
    std::fs::write(&img, vec![0u8; 1440 * 1024]).unwrap();
    must(&["mkfs.vfat", "-n", "ir-vfd-dev", img.to_str().unwrap()]);
    let params = dir.join("parameters.txt");
    let token = "s3cr3t-token-from-the-floppy-0123456789abcdef";
    std::fs::write(
        &params,
        format!(
            "ipa-api-url=https://198.51.100.1:6385\nipa-agent-token={token}\nboot_method=vmedia"
        ),
    )
    .unwrap();
    let i = img.to_str().unwrap();
    must(&[
        "mcopy",
        "-i",
        i,
        params.to_str().unwrap(),
        "::parameters.txt",
    ]);
    // a pre-built ISO: its own command line, no config drive
    let r = root(&dir, None, "boot_method=vmedia ipa-api-url=http://old:6385");
    // a USB disk: its sysfs path goes through the USB bus
    let dev = r.join("sys/devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host2/block/sdb");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("size"), "2880\n").unwrap();
    std::os::unix::fs::symlink(&dev, r.join("sys/block/sdb")).unwrap();
    std::fs::copy(&img, r.join("dev/sdb")).unwrap();
    let (text, _) = setup(&r);
    assert!(
        text.contains(
            "parameters from /dev/sdb (ir-vfd-dev) override the kernel command line: \
             ipa-api-url ipa-agent-token boot_method"
        ),
        "{text}"
    );
    assert!(!text.contains(token), "{text}");
    let merged = std::fs::read_to_string(r.join("run/ironic-agent/cmdline")).unwrap();
    assert_eq!(
        merged,
        format!(
            "boot_method=vmedia ipa-api-url=http://old:6385 ipa-api-url=https://198.51.100.1:6385 \
             ipa-agent-token={token} boot_method=vmedia\n"
        )
    );
}

/// A bad command line is exit 2 with the usage; the DHCPv6 client too.
#[test]
fn usage_errors() {
    let o = common::agent_command()
        .args(["network-setup", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: ironic-agent network-setup"));
    let o = common::agent_command().args(["dhcp6"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let dir = test_dir("dhcp6-noif");
    let o = common::agent_command()
        .args(["dhcp6", "nosuch0", "--root", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no interface nosuch0"));
}
