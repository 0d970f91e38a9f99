//! Custom steps through the real binary: script steps from a steps
//! directory, and the example vendor manager (BIOS flashing) on a fixture
//! root that looks like its machine.

mod common;

use common::{test_dir, Agent, Opts};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn put(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn steps(a: &Agent, kind: &str) -> Value {
    let (s, v) = a.command(
        &format!("{kind}.get_{kind}_steps"),
        json!({"node": {"uuid": "u"}, "ports": []}),
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn execute(a: &Agent, kind: &str, step: &str, args: Value) -> Value {
    let (s, v) = a.command(
        &format!("{kind}.execute_{kind}_step"),
        json!({"step": {"step": step, "interface": "deploy", "args": args},
               "node": {"uuid": "u", "properties": {"rack": "r7"}}, "ports": [{"address": "aa"}]}),
    );
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn script_steps_are_listed_and_run() {
    let dir = test_dir("script-steps");
    let sd = dir.join("steps.d");
    put(
        &sd.join("rack_report"),
        br#"#!/bin/sh
read -r input
rack=$(echo "$input" | sed -n 's/.*"rack":"\([^"]*\)".*/\1/p')
echo "{\"rack\": \"$rack\", \"kind\": \"$IRONIC_AGENT_STEP_KIND\"}"
"#,
    );
    put(
        &sd.join("rack_report.json"),
        br#"{"step": "rack_report", "priority": 5, "kind": ["clean", "service"],
            "argsinfo": {"verbose": {"description": "more", "required": false}}}"#,
    );
    put(&sd.join("broken"), b"#!/bin/sh\nexit 0\n");
    put(&sd.join("broken.json"), b"{\"step\": 7}");
    put(
        &sd.join("fails"),
        b"#!/bin/sh\necho 'controller not ready' >&2\nexit 2\n",
    );
    put(
        &sd.join("fails.json"),
        br#"{"step": "fails", "kind": "deploy"}"#,
    );
    for f in ["rack_report", "broken", "fails"] {
        std::fs::set_permissions(sd.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let a = Agent::start(
        &dir,
        Opts {
            args: vec!["--steps-dir".into(), sd.to_str().unwrap().into()],
            ..Default::default()
        },
    );
    let v = steps(&a, "clean");
    let r = &v["command_result"];
    let ours = r["clean_steps"]["ScriptHardwareManager"]
        .as_array()
        .unwrap();
    assert_eq!(ours.len(), 1, "{r}");
    assert_eq!(ours[0]["step"], "rack_report");
    assert_eq!(ours[0]["priority"], 5);
    assert_eq!(ours[0]["abortable"], false);
    assert!(r["hardware_manager_version"]["script_hardware_manager"]
        .as_str()
        .unwrap()
        .starts_with("1.0-"));
    assert!(a.log_text().contains("broken.json is invalid, skipped"));
    let v = steps(&a, "deploy");
    assert_eq!(
        v["command_result"]["deploy_steps"]["ScriptHardwareManager"][0]["step"],
        "fails"
    );

    let v = execute(&a, "clean", "rack_report", json!({"verbose": true}));
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(
        v["command_result"]["clean_result"],
        json!({"rack": "r7", "kind": "clean"})
    );
    let v = execute(&a, "service", "rack_report", json!({}));
    assert_eq!(v["command_result"]["service_result"]["kind"], "service");

    let v = execute(&a, "deploy", "fails", json!({}));
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "DeploymentError");
    assert!(v["command_error"]["details"]
        .as_str()
        .unwrap()
        .ends_with("exited with status 2: controller not ready"));
}

#[test]
fn example_bios_manager_on_its_machine() {
    let dir = test_dir("example-bios");
    let root = dir.join("root");
    let image = b"EXAMPLE BIOS 2.0 IMAGE, sixty-four bytes long, padded..........!";
    assert_eq!(image.len(), 64);
    put(&root.join("sys/class/dmi/id/sys_vendor"), b"Example Corp\n");
    put(&root.join("sys/class/dmi/id/bios_version"), b"1.0\n");
    put(&root.join("opt/bios-2.0.bin"), image);
    put(&root.join("proc/cmdline"), b"");
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(image)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let args = json!({"image": "/opt/bios-2.0.bin", "sha256": sha, "version": "2.0"});
    let a = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = steps(&a, "clean");
    let ours = &v["command_result"]["clean_steps"]["ExampleBiosHardwareManager"][0];
    assert_eq!(ours["step"], "update_bios_firmware");
    assert_eq!(ours["reboot_requested"], true);
    assert_eq!(
        v["command_result"]["hardware_manager_version"]["example_bios_hardware_manager"],
        "1.0"
    );
    // No flash partition on this machine: incompatible, and no other
    // manager has the method.
    let v = execute(&a, "clean", "update_bios_firmware", args.clone());
    assert_eq!(
        v["command_error"]["type"], "HardwareManagerMethodNotFound",
        "{v}"
    );
    assert_eq!(
        v["command_error"]["details"],
        "Could not find method: update_bios_firmware"
    );
    drop(a);

    // With the flash: written and read back.
    put(&root.join("sys/class/mtd/mtd0/name"), b"bios\n");
    put(&root.join("sys/class/mtd/mtd0/size"), b"64\n");
    put(&root.join("dev/mtd0"), &[0xffu8; 64]);
    let a = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = execute(&a, "service", "update_bios_firmware", args);
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(v["command_result"]["service_result"]["updated"], true);
    assert_eq!(std::fs::read(root.join("dev/mtd0")).unwrap(), image);
}

#[test]
fn the_example_manager_is_inactive_elsewhere() {
    let dir = test_dir("example-bios-absent");
    let root = dir.join("root");
    put(&root.join("sys/class/dmi/id/sys_vendor"), b"QEMU\n");
    put(&root.join("proc/cmdline"), b"");
    let a = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = steps(&a, "clean");
    assert!(v["command_result"]["clean_steps"]
        .get("ExampleBiosHardwareManager")
        .is_none());
    assert!(v["command_result"]["hardware_manager_version"]
        .get("example_bios_hardware_manager")
        .is_none());
}
