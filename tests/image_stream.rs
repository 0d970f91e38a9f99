//! The image write path end to end: the real binary, a fixture root whose
//! install disk `vda` is an 8 GiB sparse file (or, for the O_DIRECT and
//! O_EXCL paths, a loop device presented as `vda`), and an image server on
//! 127.0.0.1:0 in this process (tests/common/servers.rs) that serves Range
//! requests and misbehaves on demand (drops the connection mid-body,
//! answers 5xx or 404, stalls, ignores Range). Drives
//! `standby.prepare_image` and `deploy.execute_deploy_step` `write_image`
//! over the agent's API and checks the disk's bytes against the image
//! (raw) or `qemu-img convert -O raw` (qcow2).

mod common;

use common::blockdev;
use common::servers::{connect_proxy, keep_alive_server, Fault, ImageServer as Server};
use common::tools::{must, need, need_root};
use common::{test_dir, Agent, Opts};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const DISK: u64 = 8 << 30;

// ---------------------------------------------------------------- images

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A raw MBR disk image: one Linux partition from 1 MiB, disk signature
/// 0x1234abcd, pseudo-random contents with zero runs.
fn raw_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut img = vec![0u8; size];
    for (i, piece) in img.chunks_mut(256 * 1024).enumerate() {
        if i % 5 != 3 {
            rng.fill(piece);
        }
    }
    let lba0 = &mut img[..512];
    lba0.fill(0);
    lba0[440..444].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
    let e = &mut lba0[446..462];
    e[0] = 0x80;
    e[4] = 0x83;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&((size / 512 - 2048) as u32).to_le_bytes());
    lba0[510] = 0x55;
    lba0[511] = 0xaa;
    img
}

fn qemu(args: &[&str]) {
    let mut a = vec!["qemu-img"];
    a.extend_from_slice(args);
    must(&a);
}

/// qcow2 (optionally compressed) of `raw`, and qemu-img's raw of it.
fn qcow2_of(dir: &Path, raw: &[u8], compress: bool) -> (Vec<u8>, Vec<u8>) {
    qcow2_with(dir, raw, if compress { &["-c"] } else { &[] })
}

/// `qcow2_of` with these `qemu-img convert` options.
fn qcow2_with(dir: &Path, raw: &[u8], opts: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let r = dir.join("src.raw");
    let q = dir.join("img.qcow2");
    let back = dir.join("back.raw");
    fs::write(&r, raw).unwrap();
    let mut a = vec!["convert"];
    a.extend_from_slice(opts);
    a.extend(["-O", "qcow2", r.to_str().unwrap(), q.to_str().unwrap()]);
    qemu(&a);
    qemu(&[
        "convert",
        "-O",
        "raw",
        q.to_str().unwrap(),
        back.to_str().unwrap(),
    ]);
    (fs::read(&q).unwrap(), fs::read(&back).unwrap())
}

// ---------------------------------------------------------------- agent

fn put(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// A fixture root with one 8 GiB sparse disk `vda` pre-filled with 0xee in
/// its first and last MiB (so "zeroed" and "untouched" can be told apart).
fn sparse_root(dir: &Path) -> (PathBuf, PathBuf) {
    let root = blockdev::empty_root(dir);
    let sys = root.join("sys/block/vda");
    for (k, v) in [
        ("size", (DISK / 512).to_string()),
        ("ro", "0".into()),
        ("removable", "0".into()),
        ("dev", "253:0".into()),
        ("queue/logical_block_size", "512".into()),
        ("queue/physical_block_size", "512".into()),
        ("queue/rotational", "0".into()),
    ] {
        put(&sys.join(k), &v);
    }
    let disk = root.join("dev/vda");
    fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let f = fs::File::create(&disk).unwrap();
    f.set_len(DISK).unwrap();
    f.write_all_at(&vec![0xee; MIB], 0).unwrap();
    f.write_all_at(&vec![0xee; MIB], DISK - MIB as u64).unwrap();
    (root, disk)
}

fn start(dir: &Path, root: &Path, extra: &[&str]) -> Agent {
    let mut args: Vec<String> = [
        "--debug",
        "--image-download-connection-retries=2",
        "--image-download-connection-retry-interval=0",
        "--image-download-connection-timeout=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Agent::start(
        dir,
        Opts {
            root: Some(root),
            args,
            ..Opts::default()
        },
    )
}

fn image_info(id: &str, url: &str, data: &[u8], fmt: &str) -> Value {
    json!({
        "id": id,
        "urls": [url],
        "os_hash_algo": "sha256",
        "os_hash_value": sha256(data),
        "disk_format": fmt,
        "stream_raw_images": true,
    })
}

fn prepare(agent: &Agent, info: Value) -> Value {
    let (status, body) = agent.command("standby.prepare_image", json!({"image_info": info}));
    assert!(status == 200 || status == 202, "{status}: {body}");
    finished(agent, body)
}

/// Wait for an async command (wait=true answers early after 60 s).
fn finished(agent: &Agent, body: Value) -> Value {
    let id = body["id"].as_str().unwrap().to_string();
    common::wait_for(Duration::from_secs(120), || {
        let (_, v) = common::get(&agent.url_with_token(&format!("/v1/commands/{id}")));
        (v["command_status"] != "RUNNING").then_some(v)
    })
    .expect("the command did not finish")
}

fn read(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

fn assert_disk(disk: &Path, expected: &[u8]) {
    let got = read(disk, 0, expected.len());
    if got != expected {
        let i = (0..expected.len())
            .find(|&i| got[i] != expected[i])
            .unwrap();
        panic!("the disk differs from the image at byte {i}");
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn raw_image_streams_and_reports_like_ipa() {
    let dir = test_dir("img-raw");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(24 * MIB, 1);
    let url = srv.put("/images/disk.raw", img.clone());
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-1", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_eq!(
        r["command_result"]["result"],
        "prepare_image: image (img-1) written to device /dev/vda root_uuid=0x1234abcd"
    );
    assert_disk(&disk, &img);
    // the disk's last MiB (backup GPT area) was cleared before the write
    assert!(read(&disk, DISK - MIB as u64, MIB).iter().all(|&b| b == 0));
    let (_, uuids) = agent.command("standby.get_partition_uuids", json!({}));
    assert_eq!(uuids["command_result"], json!({"root uuid": "0x1234abcd"}));
    // one plain GET, never a Range request
    assert_eq!(srv.log("/images/disk.raw"), vec![(None, None)]);
    let log = agent.log_text();
    assert!(log.contains("detected format gpt"), "{log}");
    assert!(log.contains("sha256 checksum verified"), "{log}");
    // plain HTTP: the body went from the socket straight into the buffers
    // (image::http), not through ureq's
    assert!(
        log.contains(&format!(
            "reading the body of {url} straight from the socket"
        )),
        "{log}"
    );
    // the same image again is not downloaded again (IPA's cached_image_id)
    let r = prepare(&agent, image_info("img-1", &url, &img, "raw"));
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(srv.log("/images/disk.raw").len(), 1);
}

#[test]
fn a_bad_configdrive_fails_before_the_image_is_downloaded() {
    // IPA decodes a whole-disk image's configdrive after writing the image;
    // here a drive that cannot be used fails first, the disk untouched
    let dir = test_dir("img-bad-cd");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(4 * MIB, 21);
    let url = srv.put("/images/cd.raw", img.clone());
    let agent = start(&dir, &root, &[]);
    let (status, body) = agent.command(
        "standby.prepare_image",
        json!({"image_info": image_info("img-cd", &url, &img, "raw"), "configdrive": "%%%"}),
    );
    assert!(status == 200 || status == 202, "{status}: {body}");
    let r = finished(&agent, body);
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let details = r["command_error"]["details"].as_str().unwrap();
    assert!(details.contains("is not base64 encoded"), "{r}");
    assert!(srv.log("/images/cd.raw").is_empty());
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0xee));
}

#[test]
fn wrong_checksum_fails_and_leaves_no_bootable_head() {
    let dir = test_dir("img-badsum");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(8 * MIB, 2);
    let url = srv.put("/bad.raw", img.clone());
    let agent = start(&dir, &root, &[]);
    let mut info = image_info("img-bad", &url, &img, "raw");
    info["os_hash_value"] = json!("0".repeat(64));
    let r = prepare(&agent, info);
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "ImageChecksumError", "{r}");
    let details = r["command_error"]["details"].as_str().unwrap();
    assert!(
        details.starts_with("Image failed to verify against checksum. location: /dev/vda; image ID: img-bad; image checksum: 0000"),
        "{details}"
    );
    assert!(details.ends_with(&sha256(&img)), "{details}");
    // retried as IPA does: 1 + 2 retries
    assert_eq!(srv.log("/bad.raw").len(), 3);
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0));
    assert!(read(&disk, DISK - MIB as u64, MIB).iter().all(|&b| b == 0));
    // the rest of the image is on the disk, but nothing can boot it
    assert_eq!(read(&disk, MIB as u64, MIB), img[MIB..2 * MIB]);
    let (_, uuids) = agent.command("standby.get_partition_uuids", json!({}));
    assert_eq!(uuids["command_result"], json!({}));
}

/// The same for a compressed qcow2, whose clusters are written behind the
/// converter on a helper thread: those writes are done before the head is
/// wiped again, and the head stays zero.
#[test]
fn wrong_checksum_of_a_compressed_qcow2_leaves_no_bootable_head() {
    need(&["qemu-img"]);
    let dir = test_dir("img-badsum-q");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (q, raw) = qcow2_of(&dir, &raw_image(12 * MIB, 21), true);
    let url = srv.put("/bad.qcow2", q.clone());
    let agent = start(&dir, &root, &[]);
    let mut info = image_info("img-badq", &url, &q, "qcow2");
    info["os_hash_value"] = json!("0".repeat(64));
    let r = prepare(&agent, info);
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "ImageChecksumError", "{r}");
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0));
    assert!(read(&disk, DISK - MIB as u64, MIB).iter().all(|&b| b == 0));
    assert_eq!(read(&disk, MIB as u64, raw.len() - MIB), raw[MIB..]);
}

#[test]
fn qcow2_through_the_write_image_deploy_step() {
    need(&["qemu-img"]);
    let dir = test_dir("img-qcow2");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (q, raw) = qcow2_of(&dir, &raw_image(20 * MIB, 3), true);
    let url = srv.put("/img.qcow2", q.clone());
    let agent = start(&dir, &root, &[]);
    let params = json!({
        "step": {"interface": "deploy", "step": "write_image", "priority": 80,
                 "args": {"image_info": image_info("img-q", &url, &q, "qcow2")}},
        "node": {"uuid": "n1"}, "ports": []
    });
    let (status, body) = agent.command("deploy.execute_deploy_step", params);
    assert!(status == 200 || status == 202, "{status} {body}");
    let r = finished(&agent, body);
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_eq!(
        r["command_result"]["deploy_result"],
        json!({"result": "prepare_image: image (img-q) written to device /dev/vda root_uuid=0x1234abcd"})
    );
    assert_eq!(r["command_result"]["deploy_step"]["step"], "write_image");
    assert_disk(&disk, &raw);
}

/// The stream reads 1 MiB chunks, except for a qcow2 with 2 MiB clusters,
/// whose chunks grow to its cluster size from the first one on: a 1 MiB
/// chunk would cut its data clusters and tables in two.
#[test]
fn qcow2_with_2_mib_clusters_is_read_in_cluster_sized_chunks() {
    need(&["qemu-img"]);
    let dir = test_dir("img-qcow2-2m");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let agent = start(&dir, &root, &[]);
    for (i, opts) in [
        &["-o", "cluster_size=2M"][..],
        &["-c", "-o", "cluster_size=2M"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let (q, raw) = qcow2_with(&dir, &raw_image(13 * MIB + 4096, 30 + i as u64), opts);
        let url = srv.put(&format!("/c2m-{i}.qcow2"), q.clone());
        // a new image id each time: the same id is not written again (IPA)
        let r = prepare(
            &agent,
            image_info(&format!("img-2m-{i}"), &url, &q, "qcow2"),
        );
        assert_eq!(
            r["command_status"],
            "SUCCEEDED",
            "{opts:?}: {r}\n{}",
            agent.log_text()
        );
        assert_disk(&disk, &raw);
    }
}

#[test]
fn qcow2_declared_raw_is_refused() {
    need(&["qemu-img"]);
    let dir = test_dir("img-mismatch");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (q, _) = qcow2_of(&dir, &raw_image(4 * MIB, 4), false);
    let url = srv.put("/x.img", q.clone());
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-m", &url, &q, "raw"));
    assert_eq!(r["command_status"], "FAILED");
    assert_eq!(r["command_error"]["type"], "InvalidImage");
    assert_eq!(
        r["command_error"]["details"],
        "Security: Expected format was raw, but image was actually qcow2"
    );
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0));
    // refused images are not retried
    assert_eq!(srv.log("/x.img").len(), 1);
}

#[test]
fn dropped_connection_resumes_with_range() {
    let dir = test_dir("img-resume");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(16 * MIB, 5);
    let url = srv.put("/r.raw", img.clone());
    srv.fault("/r.raw", Fault::DropAfter(5 * MIB + 123));
    srv.fault("/r.raw", Fault::DropAfter(3 * MIB));
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-r", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &img);
    let log = srv.log("/r.raw");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0].0, None);
    // resumed from the last byte received, twice
    let first = log[1].0.clone().unwrap();
    assert!(first.starts_with("bytes="), "{first}");
    let n: usize = first[6..first.len() - 1].parse().unwrap();
    assert!(
        (5 * MIB - 64 * 1024..=5 * MIB + 123).contains(&n),
        "{first}"
    );
    assert!(log[2].0.clone().unwrap().starts_with("bytes="));
    assert!(agent.log_text().contains("resumed the download"));
}

#[test]
fn a_server_without_range_support_restarts_the_download() {
    let dir = test_dir("img-norange");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    srv.ignore_range();
    let img = raw_image(12 * MIB, 6);
    let url = srv.put("/n.raw", img.clone());
    srv.fault("/n.raw", Fault::DropAfter(6 * MIB));
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-n", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &img);
    let text = agent.log_text();
    assert!(text.contains("cannot resume"), "{text}");
    // GET, Range (answered 200), GET again from the start
    assert_eq!(srv.log("/n.raw").len(), 3);
}

#[test]
fn server_errors_are_retried_and_4xx_is_final() {
    let dir = test_dir("img-5xx");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(4 * MIB, 7);
    let url = srv.put("/s.raw", img.clone());
    srv.fault("/s.raw", Fault::Status(503));
    srv.fault("/s.raw", Fault::Status(500));
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-s", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_eq!(srv.log("/s.raw").len(), 3);
    assert_disk(&disk, &img);

    // 404: no retry, IPA's fatal error text
    let missing = format!("{}/missing.raw", srv.base);
    let r = prepare(&agent, image_info("img-404", &missing, &img, "raw"));
    assert_eq!(r["command_status"], "FAILED");
    assert_eq!(r["command_error"]["type"], "ImageDownloadFatalError", "{r}");
    let details = r["command_error"]["details"].as_str().unwrap();
    assert!(
        details.starts_with("Download of image img-404 failed: URL: "),
        "{details}"
    );
    assert!(
        details.contains("Error: Received status code 404 from"),
        "{details}"
    );
    assert_eq!(srv.log("/missing.raw").len(), 1);

    // a list of URLs: the second answers
    let r = prepare(
        &agent,
        json!({"id": "img-2", "urls": [missing, url], "checksum": sha256(&img)}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let dir = test_dir("img-stall");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(6 * MIB, 8);
    let url = srv.put("/t.raw", img.clone());
    srv.fault("/t.raw", Fault::StallAfter(2 * MIB, Duration::from_secs(5)));
    let agent = start(&dir, &root, &["--image-download-connection-timeout=1"]);
    let r = prepare(&agent, image_info("img-t", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &img);
    let text = agent.log_text();
    assert!(text.contains("Timed out reading next chunk"), "{text}");
    assert_eq!(srv.log("/t.raw").len(), 2);
}

#[test]
fn checksum_files_and_authorization() {
    let dir = test_dir("img-auth");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(4 * MIB, 9);
    let url = srv.put("/dir/cloud.img", img.clone());
    let sums = format!(
        "# checksums\n{}  other.img\nSHA256 (cloud.img) = {}\n",
        "a".repeat(64),
        sha256(&img)
    );
    let sum_url = srv.put("/dir/SHA256SUMS", sums.into_bytes());
    let auth = "Bearer s3cret-token";
    srv.require_auth(auth);
    let agent = start(&dir, &root, &[]);
    // image_request_authorization: base64 of the whole header value
    let b64 = ironic_agent::util::base64_encode(auth.as_bytes());
    let r = prepare(
        &agent,
        json!({"id": "img-a", "urls": [url], "checksum": sum_url,
               "image_request_authorization": b64}),
    );
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &img);
    for path in ["/dir/cloud.img", "/dir/SHA256SUMS"] {
        assert!(srv
            .log(path)
            .iter()
            .all(|(_, a)| a.as_deref() == Some(auth)));
    }
    // HTTP basic auth, and a missing password as IPA words it
    srv.require_auth("Basic dTpw"); // u:p
    let r = prepare(
        &agent,
        json!({"id": "img-b", "urls": [url], "checksum": sha256(&img),
               "image_server_auth_strategy": "http_basic",
               "image_server_user": "u", "image_server_password": "p"}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let r = prepare(
        &agent,
        json!({"id": "img-c", "urls": [url], "checksum": sha256(&img),
               "image_server_auth_strategy": "http_basic", "image_server_user": "u"}),
    );
    assert_eq!(
        r["command_error"]["details"],
        "Download of image img-c failed: Missing ['password'] fields from HTTP(S) basic auth \
         config"
    );
}

/// Add a second, small sparse disk `vdb` to a fixture root.
fn small_disk(root: &Path, size: u64) -> PathBuf {
    let sys = root.join("sys/block/vdb");
    for (k, v) in [
        ("size", (size / 512).to_string()),
        ("ro", "0".into()),
        ("removable", "0".into()),
        ("dev", "253:16".into()),
        ("queue/logical_block_size", "512".into()),
    ] {
        put(&sys.join(k), &v);
    }
    let disk = root.join("dev/vdb");
    let f = fs::File::create(&disk).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&vec![0xee; MIB], 0).unwrap();
    disk
}

fn deploy(agent: &Agent, info: Value, node: Value) -> Value {
    let params = json!({
        "step": {"interface": "deploy", "step": "write_image", "priority": 80,
                 "args": {"image_info": info}},
        "node": node, "ports": []
    });
    let (status, body) = agent.command("deploy.execute_deploy_step", params);
    assert!(status == 200 || status == 202, "{status} {body}");
    finished(agent, body)
}

#[test]
fn validation_is_synchronous_and_size_is_checked_first() {
    need(&["qemu-img"]);
    let dir = test_dir("img-valid");
    let (root, _) = sparse_root(&dir);
    let small = small_disk(&root, 16 * MIB as u64);
    let srv = Server::start();
    let agent = start(&dir, &root, &[]);
    let (status, body) = agent.command(
        "standby.prepare_image",
        json!({"image_info": {"id": "x", "urls": []}}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["faultstring"],
        "Invalid command parameters: Image 'urls' must be a list with at least one element."
    );
    // root-device hints pick the 16 MiB disk; a 24 MiB image fails before
    // anything but the cleared head is written
    let node = json!({"uuid": "n", "properties": {"root_device": {"name": "/dev/vdb"}}});
    let img = raw_image(24 * MIB, 10);
    let url = srv.put("/big.raw", img.clone());
    let r = deploy(
        &agent,
        image_info("img-big", &url, &img, "raw"),
        node.clone(),
    );
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(
        r["command_error"]["type"], "ImageDownloadOutofSpaceError",
        "{r}"
    );
    let d = r["command_error"]["details"].as_str().unwrap();
    assert!(
        d.contains("is larger than the device (16777216 bytes)"),
        "{d}"
    );
    assert!(read(&small, 0, MIB).iter().all(|&b| b == 0));
    assert!(read(&small, MIB as u64, MIB).iter().all(|&b| b == 0));
    // the virtual size of a qcow2 image counts
    let q = dir.join("big.qcow2");
    qemu(&["create", "-f", "qcow2", q.to_str().unwrap(), "9G"]);
    let data = fs::read(&q).unwrap();
    let url = srv.put("/big.qcow2", data.clone());
    let r = deploy(&agent, image_info("img-bq", &url, &data, "qcow2"), node);
    assert_eq!(
        r["command_error"]["type"], "ImageDownloadOutofSpaceError",
        "{r}"
    );
    let d = r["command_error"]["details"].as_str().unwrap();
    assert!(d.contains("virtual size (9663676416 bytes)"), "{d}");
}

#[test]
fn loop_device_is_written_with_o_direct() {
    if !need_root() {
        return;
    }
    need(&["losetup", "qemu-img"]);
    let dir = test_dir("img-loop");
    let root = blockdev::empty_root(&dir);
    let lo = blockdev::Loop::new(&dir.join("backing"), DISK, false, false);
    blockdev::fill_pattern(&lo, 2 * MIB as u64, 0x77);
    blockdev::present(&root, "vda", &lo);
    let srv = Server::start();
    let img = raw_image(24 * MIB + 4096, 11);
    let url = srv.put("/l.raw", img.clone());
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-l", &url, &img, "raw"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_eq!(lo.read_at(0, img.len()), img);
    let text = agent.log_text();
    assert!(text.contains("O_DIRECT"), "{text}");
    let (q, raw) = qcow2_of(&dir, &raw_image(16 * MIB, 12), false);
    let url = srv.put("/l.qcow2", q.clone());
    let r = prepare(&agent, image_info("img-lq", &url, &q, "qcow2"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_eq!(lo.read_at(0, raw.len()), raw);
}

/// A disk that fails in the middle of the image: a loop device over a
/// sparse 8 GiB file on a 40 MiB tmpfs, so the writes past 40 MiB fail
/// (ENOSPC from tmpfs, passed up by the loop driver). The real device
/// stack stands in for a disk that runs out or breaks mid-write, which a
/// test cannot make of real hardware. Raw chunks and the qcow2 converter's
/// data runs both go through the writer threads 3 deep: the deploy must
/// fail at once with IPA's out-of-space error naming the device, clear the
/// head it wrote, leave no image thread behind, and the API keeps serving.
#[test]
fn a_disk_failing_mid_image_fails_the_deploy_cleanly() {
    if !need_root() {
        return;
    }
    need(&["losetup", "qemu-img", "mount", "umount"]);
    let dir = test_dir("img-fail");
    let mnt = dir.join("tmpfs");
    fs::create_dir(&mnt).unwrap();
    let _tmpfs = blockdev::Mounted::new(&["-t", "tmpfs", "-o", "size=40M", "tmpfs"], &mnt);
    let root = blockdev::empty_root(&dir);
    let lo = blockdev::Loop::new(&mnt.join("backing"), DISK, false, false);
    blockdev::present(&root, "vda", &lo);
    let srv = Server::start();
    let agent = start(&dir, &root, &[]);
    let img = raw_image(96 * MIB, 13);
    let (q, _) = qcow2_of(&dir, &img, false);
    for (id, data, fmt) in [("img-fr", &img, "raw"), ("img-fq", &q, "qcow2")] {
        let url = srv.put(&format!("/{id}"), data.clone());
        let r = prepare(&agent, image_info(id, &url, data, fmt));
        assert_eq!(r["command_status"], "FAILED", "{r}");
        let e = &r["command_error"];
        assert_eq!(e["type"], "ImageDownloadOutofSpaceError", "{r}");
        let d = e["details"].as_str().unwrap();
        assert!(
            d.contains("Unable to write image to /dev/vda")
                && d.contains("No space left on device"),
            "{d}"
        );
        assert!(
            lo.read_at(0, MIB).iter().all(|&b| b == 0),
            "{fmt}: head not cleared"
        );
        let text = agent.log_text();
        assert!(
            text.contains("the image write failed; cleared the first MiB"),
            "{text}"
        );
        // The writer reports at once; the receive and hash threads see the
        // closed channels at their next hand-over (one chunk later: a
        // debug build hashes a MiB in tens of ms), so give them a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let threads: Vec<String> = fs::read_dir(format!("/proc/{}/task", agent.pid()))
                .unwrap()
                .flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
                .collect();
            if !threads.iter().any(|n| n.starts_with("image-")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{fmt}: image threads left after 10 s: {threads:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (status, body) = common::get(&agent.url_with_token("/v1/commands/"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commands"].as_array().map(Vec::len), Some(2), "{body}");
}

#[test]
fn partition_image_streams_into_the_root_partition() {
    need(&["mkfs.ext4"]);
    let dir = test_dir("img-part");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    // an ext4 filesystem (its UUID must come back as "root uuid")
    let fs_img = dir.join("root.ext4");
    must(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-U",
        "5f3d2c1b-aaaa-4bbb-8ccc-0123456789ab",
        fs_img.to_str().unwrap(),
        "12M",
    ]);
    let img = fs::read(&fs_img).unwrap();
    let url = srv.put("/root.img", img.clone());
    let agent = start(&dir, &root, &[]);
    let mut info = image_info("img-p", &url, &img, "raw");
    info["image_type"] = json!("partition");
    info["root_mb"] = json!(16);
    info["swap_mb"] = json!(0);
    info["ephemeral_mb"] = json!(0);
    info["preserve_ephemeral"] = json!(false);
    let r = prepare(&agent, info);
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    let (_, uuids) = agent.command("standby.get_partition_uuids", json!({}));
    let uuids = &uuids["command_result"];
    let part = uuids["partitions"]["root"].as_str().unwrap();
    assert!(part.starts_with("/dev/vda"), "{uuids}");
    let result = r["command_result"]["result"].as_str().unwrap();
    assert_eq!(uuids["root uuid"], "5f3d2c1b-aaaa-4bbb-8ccc-0123456789ab");
    assert!(result.ends_with("root_uuid=5f3d2c1b-aaaa-4bbb-8ccc-0123456789ab"));
    // find the root partition in the MBR the layout wrote, and compare
    let lba0 = read(&disk, 0, 512);
    let slot = (0..4)
        .find(|&i| {
            let e = &lba0[446 + 16 * i..462 + 16 * i];
            e[4] != 0
                && u32::from_le_bytes(e[12..16].try_into().unwrap()) as usize * 512 >= 16 * MIB
        })
        .expect("a 16 MiB root partition");
    let e = &lba0[446 + 16 * slot..462 + 16 * slot];
    let start = u32::from_le_bytes(e[8..12].try_into().unwrap()) as u64 * 512;
    assert_eq!(read(&disk, start, img.len()), img);
    // an image bigger than root_mb: IPA's message
    let big = raw_image(20 * MIB, 14);
    let url = srv.put("/big-root.img", big.clone());
    let mut info = image_info("img-p2", &url, &big, "raw");
    info["image_type"] = json!("partition");
    info["root_mb"] = json!(16);
    let r = prepare(&agent, info);
    assert_eq!(
        r["command_error"]["type"], "InvalidCommandParamsError",
        "{r}"
    );
    assert_eq!(
        r["command_error"]["details"],
        "Root partition is too small for requested image. Image virtual size: 20 MB, Root \
         size: 16 MB"
    );
}

#[test]
fn proxies_and_no_proxy_from_image_info() {
    let dir = test_dir("img-proxy");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (proxy, seen) = connect_proxy();
    let img = raw_image(4 * MIB, 15);
    let url = srv.put("/p.raw", img.clone());
    let agent = start(&dir, &root, &[]);
    let mut info = image_info("img-px", &url, &img, "raw");
    info["proxies"] = json!({"http": proxy, "https": proxy});
    let r = prepare(&agent, info.clone());
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &img);
    // through a proxy the body is ureq's to read
    assert!(!agent.log_text().contains("straight from the socket"));
    let tunnels = seen.lock().unwrap().clone();
    assert!(
        tunnels.iter().any(|t| t.starts_with("CONNECT 127.0.0.1:")),
        "{tunnels:?}"
    );
    // no_proxy covering the image server: straight there
    let before = seen.lock().unwrap().len();
    let img2 = raw_image(4 * MIB, 16);
    let url2 = srv.put("/p2.raw", img2.clone());
    let mut info = image_info("img-px2", &url2, &img2, "raw");
    info["proxies"] = json!({"http": proxy});
    info["no_proxy"] = json!("example.com,127.0.0.0/8");
    let r = prepare(&agent, info);
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[test]
fn the_total_download_time_is_capped() {
    let dir = test_dir("img-maxdur");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let img = raw_image(6 * MIB, 17);
    let url = srv.put("/m.raw", img.clone());
    // the stall outlasts the cap; the check comes when the stalled read
    // times out (IPA also checks between chunks)
    srv.fault("/m.raw", Fault::StallAfter(3 * MIB, Duration::from_secs(5)));
    let agent = start(
        &dir,
        &root,
        &[
            "--image-download-max-duration=1",
            "--image-download-connection-timeout=2",
        ],
    );
    let r = prepare(&agent, image_info("img-m", &url, &img, "raw"));
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(
        r["command_error"]["type"], "ImageDownloadTimeoutError",
        "{r}"
    );
    assert_eq!(r["command_error"]["code"], 408);
    assert_eq!(
        r["command_error"]["details"],
        "Download of image img-m failed: Download exceeded max allowed time (1 seconds)"
    );
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0));
}

#[test]
fn qcow2_with_metadata_after_the_data_uses_range_requests() {
    need(&["qemu-img"]);
    let dir = test_dir("img-qcow2-late");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let raw = raw_image(12 * MIB, 18);
    let r = dir.join("src.raw");
    let q = dir.join("late.qcow2");
    let back = dir.join("late.raw");
    fs::write(&r, &raw).unwrap();
    qemu(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        r.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    // growing past what one 4 KiB L1 cluster maps (1 GiB) moves the L1
    // table behind the data
    qemu(&["resize", q.to_str().unwrap(), "1100M"]);
    qemu(&[
        "convert",
        "-O",
        "raw",
        q.to_str().unwrap(),
        back.to_str().unwrap(),
    ]);
    let data = fs::read(&q).unwrap();
    let expected = fs::read(&back).unwrap();
    let url = srv.put("/late.qcow2", data.clone());
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-late", &url, &data, "qcow2"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    // compare the written part and a stretch of the zeroed rest
    assert_disk(&disk, &expected[..24 * MIB]);
    assert!(read(&disk, 1099 * MIB as u64, MIB).iter().all(|&b| b == 0));
    let log = srv.log("/late.qcow2");
    let ranges: Vec<&String> = log.iter().filter_map(|(r, _)| r.as_ref()).collect();
    assert!(
        !ranges.is_empty(),
        "the tables were not read with Range: {log:?}"
    );
    assert!(agent.log_text().contains("with Range requests"));

    // the same image from a server without Range support: a clear refusal
    srv.ignore_range();
    let r = prepare(&agent, image_info("img-late2", &url, &data, "qcow2"));
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let d = r["command_error"]["details"].as_str().unwrap();
    assert!(
        d.contains("needs an image server that answers HTTP Range requests"),
        "{d}"
    );
    assert!(read(&disk, 0, MIB).iter().all(|&b| b == 0));
}

/// A `qemu-img convert -c` image whose L2 tables (4 KiB clusters: one per
/// 2 MiB of guest) sit behind data they map; (image, qemu-img's raw).
fn trailing_qcow2(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    // compressible text between the random pieces, so that -c compresses
    let mut raw = raw_image(24 * MIB, 19);
    for (i, piece) in raw.chunks_mut(256 * 1024).enumerate().skip(1) {
        if i % 3 == 0 {
            let line = format!("piece {i} of some very compressible text\n");
            for (d, s) in piece.iter_mut().zip(line.bytes().cycle()) {
                *d = s;
            }
        }
    }
    // 4 KiB clusters: one L2 table per 2 MiB of guest, and `-c` places
    // every table after the first behind some of the data it maps
    qcow2_with(dir, &raw, &["-c", "-o", "cluster_size=4096"])
}

#[test]
fn compressed_qcow2_with_tables_after_their_data_is_streamed_once() {
    need(&["qemu-img"]);
    let dir = test_dir("img-qcow2-trail");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (data, expected) = trailing_qcow2(&dir);
    let url = srv.put("/trail.qcow2", data.clone());
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-trail", &url, &data, "qcow2"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &expected);
    let log = agent.log_text();
    assert!(log.contains("follows data it maps"), "{log}");
    // decided before streaming: never a second pass over the image, one
    // plain GET (the stream), the tables read with Range requests
    assert!(!log.contains("streaming the image again"), "{log}");
    let requests = srv.log("/trail.qcow2");
    let plain = requests.iter().filter(|(r, _)| r.is_none()).count();
    assert_eq!(plain, 1, "{requests:?}");
    assert!(requests.len() > 1, "{requests:?}");
    assert!(
        log.contains(&format!("{} bytes written", expected.len())),
        "{log}"
    );
}

/// The look at the tables is an optimisation: when its Range request fails,
/// the image streams forward as before and still deploys (falling back to
/// the prefetched mode on the way).
#[test]
fn a_failed_look_at_the_qcow2_tables_streams_forward() {
    need(&["qemu-img"]);
    let dir = test_dir("img-qcow2-look-fails");
    let (root, disk) = sparse_root(&dir);
    let srv = Server::start();
    let (data, expected) = trailing_qcow2(&dir);
    let url = srv.put("/trail.qcow2", data.clone());
    // the stream's GET passes, the look's first Range request gets a 404
    srv.fault("/trail.qcow2", Fault::DropAfter(1 << 40));
    srv.fault("/trail.qcow2", Fault::Status(404));
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-look", &url, &data, "qcow2"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &expected);
    let log = agent.log_text();
    assert!(
        log.contains("could not read the qcow2 tables ahead"),
        "{log}"
    );
    assert!(log.contains("streaming the image again"), "{log}");
}

/// The qcow2 tables read with Range requests (here a compressed image with
/// 4 KiB clusters, whose tables follow their data: dozens of them) share
/// pooled connections: each table body is read to its end, so ureq can
/// reuse the connection. One connection per table made an image with
/// small clusters slower to fetch its tables than its data.
#[test]
fn range_requests_for_qcow2_tables_reuse_connections() {
    need(&["qemu-img"]);
    let dir = test_dir("img-keepalive");
    let (root, disk) = sparse_root(&dir);
    // compressible text with random pieces, as the layout test uses
    let mut raw = raw_image(24 * MIB, 40);
    for (i, piece) in raw.chunks_mut(64 * 1024).enumerate().skip(16) {
        if i % 3 != 0 {
            let line = format!("line {i} of some compressible text\n");
            for (b, c) in piece.iter_mut().zip(line.bytes().cycle()) {
                *b = c;
            }
        }
    }
    let (q, expected) = qcow2_with(&dir, &raw, &["-c", "-o", "cluster_size=4096"]);
    let (url, seen) = keep_alive_server(Arc::new(q.clone()));
    let agent = start(&dir, &root, &[]);
    let r = prepare(&agent, image_info("img-ka", &url, &q, "qcow2"));
    assert_eq!(
        r["command_status"],
        "SUCCEEDED",
        "{r}\n{}",
        agent.log_text()
    );
    assert_disk(&disk, &expected);
    let seen = seen.lock().unwrap().clone();
    let ranges = seen.iter().filter(|(_, r)| *r).count();
    let mut ports: Vec<u16> = seen.iter().map(|(p, _)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(
        ranges >= 10,
        "expected the tables to be read with Range requests: {seen:?}\n{}",
        agent.log_text()
    );
    // the image stream's own connection, plus the pooled one(s) for tables
    assert!(
        ports.len() <= 3,
        "{} connections for {} requests",
        ports.len(),
        seen.len()
    );
}
