//! The native qcow2 converter (src/image/qcow2.rs) against qemu-img as the
//! oracle: images made by `qemu-img convert -O qcow2` (version 3 and
//! compat=0.10, with and without `-c`, several cluster sizes), images with
//! zero clusters and discarded ranges made with qemu-io, and an image whose
//! L1 table was moved behind the data by `qemu-img resize`. Each is fed to
//! the converter in the stream's chunk size, written to a sparse target
//! pre-filled with garbage, and compared byte for byte with
//! `qemu-img convert -O raw`. Without qemu-img (qemu-utils, installed by
//! scripts/test-all) the tests fail and say so.

mod common;

use common::tools::{must, need};
use ironic_agent::disk::device::{open_for_image as open_device, IoMode};
use ironic_agent::error::Kind;
use ironic_agent::image::qcow2::{self, ConvError, Converter};
use ironic_agent::image::stream::{chunk_size, CHUNK};
use ironic_agent::image::writer::Target;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A raw image with random data, compressible text, explicit zeroes and
/// holes, in 256 KiB pieces (deterministic).
fn make_raw(path: &Path, size: u64) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let piece = 256 * 1024u64;
    let mut off = 0;
    while off < size {
        let n = piece.min(size - off) as usize;
        match rng.u8(0..10) {
            0..=3 => {
                let mut b = vec![0u8; n];
                rng.fill(&mut b);
                f.write_all_at(&b, off).unwrap();
            }
            4..=5 => {
                let line = format!("line {off} of some very compressible text\n");
                let b: Vec<u8> = line.bytes().cycle().take(n).collect();
                f.write_all_at(&b, off).unwrap();
            }
            6 => f.write_all_at(&vec![0u8; n], off).unwrap(),
            _ => {}
        }
        off += n as u64;
    }
    // something in the first sector and at the very end
    f.write_all_at(b"first bytes", 0).unwrap();
    f.write_all_at(b"last", size - 4).unwrap();
}

/// `qemu-img convert [OPTS] -O qcow2 RAW Q`.
fn qcow2_of(raw: &Path, q: &Path, opts: &[&str]) {
    let mut a = vec!["qemu-img", "convert"];
    a.extend_from_slice(opts);
    a.extend_from_slice(&["-O", "qcow2", raw.to_str().unwrap(), q.to_str().unwrap()]);
    must(&a);
}

fn target_file(path: &Path, size: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    // garbage where holes must end up as zeroes
    let junk = vec![0xaau8; 8 << 20];
    f.write_all_at(&junk, 0).unwrap();
    f.write_all_at(&junk, 20 << 20).unwrap();
}

fn target(path: &Path, size: u64) -> Target {
    let (f, mode) = open_device(path, "/dev/test", IoMode::Direct).unwrap();
    let mut t = Target::new(f, "/dev/test", "img", mode, 512, size, 0, size, true);
    t.prepare().unwrap();
    t
}

/// The first chunk of the agent's stream of `image` (1 MiB, or the
/// cluster size of a qcow2 with 2 MiB clusters).
fn first_chunk(image: &[u8]) -> &[u8] {
    let n = chunk_size(&image[..CHUNK.min(image.len())]);
    &image[..n.min(image.len())]
}

thread_local! {
    /// Chunks `stream` wrote whole (`Converter::take_run`) on this test's
    /// thread.
    static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Feed `image` to `conv` in stream-sized chunks (prefetched mode:
/// loading the tables through `tables` on the way), as the agent does: a
/// chunk that is one run of data clusters is written whole at its guest
/// offset, any other is fed. Returns the most events that waited at once.
fn stream(
    conv: &mut Converter,
    t: &mut Target,
    image: &Path,
    mut tables: Option<&mut qcow2::RangeReader>,
) -> Result<usize, ConvError> {
    let mut head = vec![];
    File::open(image)
        .unwrap()
        .take(CHUNK as u64)
        .read_to_end(&mut head)
        .unwrap();
    let chunk = chunk_size(&head);
    let mut f = File::open(image).unwrap();
    let mut buf = vec![0u8; chunk];
    let mut off = 0u64;
    let mut most = 0;
    loop {
        let mut n = 0;
        while n < chunk {
            let k = f.read(&mut buf[n..]).unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        if let Some(rr) = tables.as_mut() {
            conv.load_due(t, off + n as u64, &mut **rr)?;
        }
        most = most.max(conv.waiting());
        match conv.take_run(off, &buf[..n])? {
            Some(guest) => {
                t.write_at(guest, &buf[..n])?;
                TAKEN.set(TAKEN.get() + 1);
            }
            None => conv.feed(t, off, &buf[..n])?,
        }
        off += n as u64;
        if n < chunk {
            break;
        }
    }
    conv.finish(t)?;
    Ok(most)
}

/// Range requests served from the image's bytes (short past the end).
fn byte_ranges(img: &[u8]) -> Box<qcow2::RangeReader<'_>> {
    Box::new(
        move |start: u64, len: u64, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvError>| {
            let a = start.min(img.len() as u64) as usize;
            let b = start.saturating_add(len).min(img.len() as u64) as usize;
            sink(&img[a..b])
        },
    )
}

fn header(image: &Path) -> qcow2::Header {
    let mut b = vec![0u8; 2 << 20];
    let n = File::open(image).unwrap().read(&mut b).unwrap();
    qcow2::parse_header(&b[..n]).unwrap()
}

fn assert_same(expected: &Path, actual: &Path, len: u64) {
    let (mut a, mut b) = (File::open(expected).unwrap(), File::open(actual).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(1 << 20) as usize;
        a.read_exact(&mut x[..n]).unwrap();
        b.read_exact(&mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            let i = (0..n).find(|&i| x[i] != y[i]).unwrap();
            panic!(
                "{} differs from {} at byte {}: {:#x} != {:#x}",
                actual.display(),
                expected.display(),
                off + i as u64,
                y[i],
                x[i]
            );
        }
        off += n as u64;
    }
}

/// Convert `image` natively (forward, falling back to prefetched as the
/// agent does) and compare with qemu-img's raw. Returns whether the
/// forward pass had to give up.
fn check(dir: &Path, image: &Path) -> bool {
    check_with(dir, image, None)
}

/// [`check`], with compressed clusters inflated on `threads` helpers
/// (fewer than two: inline) instead of one per CPU.
fn check_with(dir: &Path, image: &Path, threads: Option<usize>) -> bool {
    let converter = |h: &qcow2::Header| {
        let c = Converter::new(h.clone());
        match threads {
            Some(n) => c.with_inflate_threads(n),
            None => c,
        }
    };
    let h = header(image);
    let oracle = dir.join("oracle.raw");
    must(&[
        "qemu-img",
        "convert",
        "-O",
        "raw",
        image.to_str().unwrap(),
        oracle.to_str().unwrap(),
    ]);
    let out = dir.join("target");
    // a disk bigger than the image, as in a deploy
    let disk = h.size + (4 << 20);
    target_file(&out, disk);
    let mut t = target(&out, disk);
    let mut conv = converter(&h);
    let backward = match stream(&mut conv, &mut t, image, None) {
        Ok(_) => false,
        Err(ConvError::Backward { .. }) => {
            let mut conv = converter(&h);
            let file = File::open(image).unwrap();
            let mut rr =
                |start: u64, len: u64, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvError>| {
                    let mut b = vec![0u8; len as usize];
                    let n = file.read_at(&mut b, start).unwrap();
                    sink(&b[..n])
                };
            conv.prefetch(&mut t, &mut rr).unwrap();
            stream(&mut conv, &mut t, image, Some(&mut rr)).unwrap();
            true
        }
        Err(e) => panic!("{}: {e:?}", image.display()),
    };
    // the look at the tables that the agent takes before streaming predicts
    // the forward pass's outcome
    let bytes = std::fs::read(image).unwrap();
    let mut rr = byte_ranges(&bytes);
    let first = first_chunk(&bytes);
    assert_eq!(
        qcow2::tables_trail_data(&h, first, &mut *rr).unwrap(),
        backward,
        "{}",
        image.display()
    );
    t.commit().unwrap();
    drop(t);
    assert_same(&oracle, &out, h.size);
    backward
}

fn dir(name: &str) -> PathBuf {
    common::test_dir(name)
}

#[test]
fn qemu_img_layouts_convert_like_qemu_img() {
    need(&["qemu-img"]);
    let d = dir("qcow2-layouts");
    let raw = d.join("src.raw");
    // not a multiple of the cluster size: the last cluster is partial
    make_raw(&raw, (48 << 20) + 3 * 512);
    // (name, qemu-img arguments, converts in one forward pass)
    let variants: &[(&str, &[&str], bool)] = &[
        ("v3", &["-O", "qcow2"], true),
        ("v3c", &["-c", "-O", "qcow2"], true),
        ("v2", &["-O", "qcow2", "-o", "compat=0.10"], true),
        ("v2c", &["-c", "-O", "qcow2", "-o", "compat=0.10"], true),
        // with small clusters, qemu-img's parallel compression packs data
        // ahead of the L2 tables that map it: the prefetched mode handles it
        (
            "c4k",
            &["-c", "-O", "qcow2", "-o", "cluster_size=4096"],
            false,
        ),
        ("c4kraw", &["-O", "qcow2", "-o", "cluster_size=4096"], true),
        ("c512", &["-O", "qcow2", "-o", "cluster_size=512"], true),
        ("c2m", &["-O", "qcow2", "-o", "cluster_size=2M"], true),
        (
            "c2mc",
            &["-c", "-O", "qcow2", "-o", "cluster_size=2M"],
            true,
        ),
        (
            "prealloc",
            &["-O", "qcow2", "-o", "preallocation=metadata"],
            true,
        ),
    ];
    for (name, args, forward) in variants {
        let q = d.join(format!("{name}.qcow2"));
        let mut a: Vec<&str> = vec!["qemu-img", "convert"];
        a.extend_from_slice(args);
        a.push(raw.to_str().unwrap());
        a.push(q.to_str().unwrap());
        must(&a);
        TAKEN.set(0);
        let backward = check(&d, &q);
        // some chunks are one run of data clusters and written whole: the
        // holes of this image cut the others
        if ["v3", "v2", "c2m", "prealloc"].contains(name) {
            assert!(TAKEN.get() > 0, "{name}: no chunk written whole");
        }
        if *forward {
            assert!(
                !backward,
                "{name}: qemu-img's layout must convert in one forward pass"
            );
        }
        if args.contains(&"-c") {
            // compressed clusters inflated inline (one CPU), and on more
            // helpers than this machine has CPUs, come out the same
            assert_eq!(check_with(&d, &q, Some(1)), backward, "{name}");
            assert_eq!(check_with(&d, &q, Some(4)), backward, "{name}");
        }
        eprintln!("{name}: ok");
    }
}

#[test]
fn dense_data_is_written_in_whole_chunks() {
    need(&["qemu-img"]);
    let d = dir("qcow2-dense");
    let raw = d.join("src.raw");
    let mut b = vec![0u8; 24 << 20];
    fastrand::Rng::with_seed(3).fill(&mut b);
    std::fs::write(&raw, &b).unwrap();
    for (name, cluster, chunk) in [("c64k", "65536", 1usize << 20), ("c2m", "2M", 2 << 20)] {
        let q = d.join(format!("{name}.qcow2"));
        qcow2_of(&raw, &q, &["-o", &format!("cluster_size={cluster}")]);
        TAKEN.set(0);
        assert!(!check(&d, &q), "{name}: one forward pass");
        // qemu-img lays the clusters out in guest order behind the
        // tables: every chunk but the first (header, tables) and the last
        // (the image's end) is one run, written straight from the stream
        // buffer as a raw image's chunk is
        let chunks = (24 << 20) / chunk;
        assert!(
            TAKEN.get() >= chunks - 1,
            "{name}: {} of {chunks} chunks whole",
            TAKEN.get()
        );
    }
}

#[test]
fn zero_clusters_and_discards() {
    need(&["qemu-img", "qemu-io"]);
    let d = dir("qcow2-zero");
    for compat in ["1.1", "0.10"] {
        let q = d.join(format!("z-{compat}.qcow2"));
        must(&[
            "qemu-img",
            "create",
            "-f",
            "qcow2",
            "-o",
            &format!("compat={compat}"),
            q.to_str().unwrap(),
            "64M",
        ]);
        let cmds = [
            "write -P 0xab 0 8M",
            "write -P 0xcd 16M 4M",
            // zero clusters (v3: the zero flag; v2: deallocated)
            "write -z 2M 2M",
            "write -z 17M 64k",
            "discard 5M 1M",
            "write -P 0x11 60M 64k",
        ];
        for c in cmds {
            must(&["qemu-io", "-f", "qcow2", "-c", c, q.to_str().unwrap()]);
        }
        assert!(!check(&d, &q), "compat={compat}");
    }
}

#[test]
fn l1_behind_the_data_needs_prefetch() {
    need(&["qemu-img"]);
    let d = dir("qcow2-resized");
    let raw = d.join("src.raw");
    make_raw(&raw, 24 << 20);
    let q = d.join("r.qcow2");
    qcow2_of(&raw, &q, &["-o", "cluster_size=4096"]);
    // 4 KiB clusters: one L1 cluster maps 1 GiB; growing past it moves the
    // L1 table to the end of the file
    must(&["qemu-img", "resize", q.to_str().unwrap(), "1200M"]);
    let h = header(&q);
    let len = std::fs::metadata(&q).unwrap().len();
    assert!(
        h.l1_offset > len / 2,
        "L1 at {} of {len}: qemu-img resize did not move it",
        h.l1_offset
    );
    assert!(
        check(&d, &q),
        "the forward pass should have found the L1 behind the data"
    );
}

/// Scribbled L1/L2 entries (random, compressed anywhere, aliased): the
/// forward converter, the look at the tables and the prefetched mode end
/// with an error or a result, never a panic or a hang.
#[test]
fn hostile_tables_fail_cleanly() {
    need(&["qemu-img"]);
    let d = dir("qcow2-hostile");
    let raw = d.join("src.raw");
    make_raw(&raw, 8 << 20);
    let q = d.join("h.qcow2");
    qcow2_of(&raw, &q, &[]);
    let orig = std::fs::read(&q).unwrap();
    let h = header(&q);
    let cs = h.cluster_size() as usize;
    let l1 = h.l1_offset as usize;
    let l2 =
        (u64::from_be_bytes(orig[l1..l1 + 8].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00) as usize;
    let mut rng = fastrand::Rng::with_seed(11);
    let out = d.join("target");
    for round in 0..300 {
        let mut img = orig.clone();
        // scribble over the L1 entry and random L2 entries
        match round % 4 {
            0 => img[l1..l1 + 8].copy_from_slice(&rng.u64(..).to_be_bytes()),
            1 => {
                for _ in 0..8 {
                    let j = rng.usize(0..cs / 8) * 8;
                    img[l2 + j..l2 + j + 8].copy_from_slice(&rng.u64(..).to_be_bytes());
                }
            }
            2 => {
                // compressed entries pointing anywhere
                for _ in 0..8 {
                    let j = rng.usize(0..cs / 8) * 8;
                    let e = (1u64 << 62) | rng.u64(..1 << 62);
                    img[l2 + j..l2 + j + 8].copy_from_slice(&e.to_be_bytes());
                }
            }
            _ => {
                // many entries aliasing one host cluster
                let e = u64::from_be_bytes(img[l2..l2 + 8].try_into().unwrap());
                for j in (0..cs).step_by(8) {
                    img[l2 + j..l2 + j + 8].copy_from_slice(&e.to_be_bytes());
                }
            }
        }
        let p = d.join("h2.qcow2");
        std::fs::write(&p, &img).unwrap();
        let Ok(h) = qcow2::parse_header(&img) else {
            continue;
        };
        target_file(&out, h.size + (4 << 20));
        let mut t = target(&out, h.size + (4 << 20));
        let mut conv = Converter::new(h.clone());
        // any outcome but a panic or a hang is acceptable
        let _ = stream(&mut conv, &mut t, &p, None);
        drop(t);
        // the same for the look before streaming and the prefetched mode,
        // with Range requests served from the same bytes
        let mut rr = byte_ranges(&img);
        let _ = qcow2::tables_trail_data(&h, first_chunk(&img), &mut *rr);
        let mut t = target(&out, h.size + (4 << 20));
        let mut conv = Converter::new(h);
        if conv.prefetch(&mut t, &mut *rr).is_ok() {
            let _ = stream(&mut conv, &mut t, &p, Some(&mut *rr));
        }
    }
}

/// Prefetched mode: the tables drive the layout but come from Range
/// requests outside the checksummed stream, so each is compared with the
/// same bytes of the stream. A server that answers Range requests with
/// other tables (zeroed L2 entries: the disk would come out all zeroes
/// while the stream's checksum verifies) is caught, and so is an untouched
/// server (the honest case converts as before).
#[test]
fn prefetched_tables_must_match_the_checksummed_stream() {
    need(&["qemu-img"]);
    let d = dir("prefetch-tamper");
    let raw = d.join("src.raw");
    make_raw(&raw, 32 << 20);
    let img = d.join("img.qcow2");
    qcow2_of(&raw, &img, &["-f", "raw"]);
    let h = header(&img);
    let file = File::open(&img).unwrap();
    let l1 = (h.l1_offset, h.l1_size * 8);
    // none: honest; all: every L2 read zeroed; later: the first read of
    // each table honest (the digests), the read that loads it zeroed
    for tamper in ["none", "all", "later"] {
        let out = d.join(format!("target-{tamper}"));
        let disk = h.size + (4 << 20);
        target_file(&out, disk);
        let mut t = target(&out, disk);
        let mut conv = Converter::new(h.clone());
        let mut seen = std::collections::HashSet::new();
        let mut rr =
            |start: u64, len: u64, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvError>| {
                let mut b = vec![0u8; len as usize];
                let n = file.read_at(&mut b, start).unwrap();
                let again = !seen.insert(start);
                if (start, len) != l1 && (tamper == "all" || (tamper == "later" && again)) {
                    b[..n].fill(0);
                }
                sink(&b[..n])
            };
        conv.prefetch(&mut t, &mut rr).unwrap();
        let r = stream(&mut conv, &mut t, &img, Some(&mut rr));
        match tamper {
            "all" => {
                let e = format!("{:?}", r.expect_err("tampered tables accepted"));
                assert!(e.contains("differs between the Range request"), "{e}");
            }
            "later" => {
                let e = format!("{:?}", r.expect_err("tampered tables accepted"));
                assert!(e.contains("differs between two Range requests"), "{e}");
            }
            _ => {
                r.unwrap();
                t.commit().unwrap();
                assert_same(&raw, &out, 32 << 20);
            }
        }
    }
}

/// A hand-built image (no qemu-img needed) with more clusters than the
/// converter may hold events for, every L2 table behind the data it maps:
/// the layout `qemu-img convert -c` produces, at a scale where loading all
/// tables at once would hit `MAX_EVENTS` (what happened before the tables
/// were loaded as the stream reaches them). Converts in prefetched mode,
/// byte for byte.
#[test]
fn trailing_tables_beyond_the_event_limit_convert() {
    let d = dir("qcow2-trail-many");
    let (bits, cs) = (9u32, 512u64);
    let per_table = cs / 8;
    let clusters = qcow2::MAX_EVENTS as u64 + 40_000;
    let size = clusters * cs;
    let l1_size = clusters.div_ceil(per_table);
    let l1_offset = 3 * cs;
    let l1_clusters = (l1_size * 8).div_ceil(cs);
    let mut img = vec![0u8; ((3 + l1_clusters) * cs) as usize];
    img[..4].copy_from_slice(b"QFI\xfb");
    img[4..8].copy_from_slice(&3u32.to_be_bytes());
    img[20..24].copy_from_slice(&bits.to_be_bytes());
    img[24..32].copy_from_slice(&size.to_be_bytes());
    img[36..40].copy_from_slice(&(l1_size as u32).to_be_bytes());
    img[40..48].copy_from_slice(&l1_offset.to_be_bytes());
    img[48..56].copy_from_slice(&cs.to_be_bytes());
    img[96..100].copy_from_slice(&4u32.to_be_bytes());
    img[100..104].copy_from_slice(&104u32.to_be_bytes());
    let mut raw = Vec::with_capacity(size as usize);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut cluster = vec![0u8; cs as usize];
    for table in 0..l1_size {
        let n = per_table.min(clusters - table * per_table);
        let mut l2 = vec![0u8; cs as usize];
        for j in 0..n {
            let host = img.len() as u64;
            rng.fill(&mut cluster);
            img.extend_from_slice(&cluster);
            raw.extend_from_slice(&cluster);
            let e = host | (1 << 63); // COPIED
            l2[(j * 8) as usize..(j * 8 + 8) as usize].copy_from_slice(&e.to_be_bytes());
        }
        let l2_host = img.len() as u64;
        img.extend_from_slice(&l2);
        let at = (l1_offset + table * 8) as usize;
        img[at..at + 8].copy_from_slice(&(l2_host | (1 << 63)).to_be_bytes());
    }
    let path = d.join("trail.qcow2");
    std::fs::write(&path, &img).unwrap();
    let expected = d.join("expected.raw");
    std::fs::write(&expected, &raw).unwrap();
    drop(raw);

    let h = header(&path);
    let mut rr = byte_ranges(&img);
    let first = first_chunk(&img);
    assert!(qcow2::tables_trail_data(&h, first, &mut *rr).unwrap());
    let out = d.join("target");
    let disk = size + (4 << 20);
    target_file(&out, disk);
    let mut t = target(&out, disk);
    let mut conv = Converter::new(h.clone());
    conv.prefetch(&mut t, &mut *rr).unwrap();
    let most = stream(&mut conv, &mut t, &path, Some(&mut *rr)).unwrap();
    t.commit().unwrap();
    drop(t);
    assert_same(&expected, &out, size);
    // only the tables near the stream hold events
    assert!(most < qcow2::MAX_EVENTS / 4, "{most} events waited at once");
}

/// Two L1 entries naming one L2 table (legal: the clusters have refcount 2),
/// the table behind its data: prefetched mode reads the table once to learn
/// it and once to load it, not once per L1 entry, and both guest ranges get
/// the data.
#[test]
fn a_table_shared_by_two_l1_entries_is_read_once_per_use() {
    let d = dir("qcow2-shared-l2");
    let (bits, cs) = (9u32, 512u64);
    let per_table = cs / 8;
    let size = 2 * per_table * cs;
    let mut img = vec![0u8; (4 * cs) as usize];
    img[..4].copy_from_slice(b"QFI\xfb");
    img[4..8].copy_from_slice(&3u32.to_be_bytes());
    img[20..24].copy_from_slice(&bits.to_be_bytes());
    img[24..32].copy_from_slice(&size.to_be_bytes());
    img[36..40].copy_from_slice(&2u32.to_be_bytes());
    img[40..48].copy_from_slice(&(3 * cs).to_be_bytes());
    img[48..56].copy_from_slice(&cs.to_be_bytes());
    img[96..100].copy_from_slice(&4u32.to_be_bytes());
    img[100..104].copy_from_slice(&104u32.to_be_bytes());
    let mut rng = fastrand::Rng::with_seed(5);
    let mut data = vec![0u8; (per_table * cs) as usize];
    rng.fill(&mut data);
    let mut l2 = vec![0u8; cs as usize];
    for j in 0..per_table {
        let e = (img.len() as u64 + j * cs) | (1 << 63);
        l2[(j * 8) as usize..(j * 8 + 8) as usize].copy_from_slice(&e.to_be_bytes());
    }
    img.extend_from_slice(&data);
    let l2_host = img.len() as u64;
    img.extend_from_slice(&l2);
    for i in 0..2 {
        let at = (3 * cs + i * 8) as usize;
        img[at..at + 8].copy_from_slice(&(l2_host | (1 << 63)).to_be_bytes());
    }
    let path = d.join("shared.qcow2");
    std::fs::write(&path, &img).unwrap();
    let expected = d.join("expected.raw");
    std::fs::write(&expected, [data.clone(), data].concat()).unwrap();

    let h = header(&path);
    let mut reads = vec![];
    let mut rr = |start: u64, len: u64, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvError>| {
        reads.push(start);
        let end = (start + len).min(img.len() as u64);
        sink(&img[start as usize..end as usize])
    };
    assert!(qcow2::tables_trail_data(&h, &img, &mut rr).unwrap());
    let out = d.join("target");
    let disk = size + (4 << 20);
    target_file(&out, disk);
    let mut t = target(&out, disk);
    let mut conv = Converter::new(h.clone());
    conv.prefetch(&mut t, &mut rr).unwrap();
    stream(&mut conv, &mut t, &path, Some(&mut rr)).unwrap();
    t.commit().unwrap();
    drop(t);
    assert_same(&expected, &out, size);
    // the look, the prefetch and the load: once each
    let table_reads = reads.iter().filter(|&&r| r == l2_host).count();
    assert_eq!(table_reads, 3, "{reads:?}");
}

/// A chunk that cuts a cluster (data or table) anywhere but at the end of the file is
/// a bug in the caller (the stream sizes chunks by `chunk_size`): the
/// converter fails instead of writing the rest of the cluster as zeroes.
#[test]
fn a_data_cluster_cut_mid_stream_fails() {
    need(&["qemu-img"]);
    let d = dir("qcow2-cut");
    let raw = d.join("src.raw");
    make_raw(&raw, 12 << 20);
    let q = d.join("c2m.qcow2");
    qcow2_of(&raw, &q, &["-o", "cluster_size=2M"]);
    let img = std::fs::read(&q).unwrap();
    assert_eq!(chunk_size(&img[..CHUNK]), 2 << 20);
    let h = header(&q);
    let out = d.join("target");
    target_file(&out, h.size + (4 << 20));
    let mut t = target(&out, h.size + (4 << 20));
    let mut conv = Converter::new(h);
    let mut err = None;
    for (i, c) in img.chunks(CHUNK).enumerate() {
        if let Err(e) = conv.feed(&mut t, (i * CHUNK) as u64, c) {
            err = Some(e);
            break;
        }
    }
    match err {
        Some(ConvError::Invalid(m)) => assert!(m.details.contains("a cluster was cut"), "{m}"),
        other => panic!("1 MiB chunks of 2 MiB clusters: {other:?}"),
    }
}

/// `qemu-img convert -c` of `len` bytes of numbered text lines, in `d`:
/// every cluster compresses.
fn compressed_text(d: &Path, len: usize) -> PathBuf {
    let raw = d.join("src.raw");
    let text: Vec<u8> = (0..)
        .flat_map(|i: u32| format!("line {i} of compressible text\n").into_bytes())
        .take(len)
        .collect();
    std::fs::write(&raw, text).unwrap();
    let q = d.join("c.qcow2");
    qcow2_of(&raw, &q, &["-c"]);
    q
}

/// Compressed clusters are written on a helper thread while the next ones
/// inflate: a write that fails there (here: /dev/full, ENOSPC, in the
/// direct mode the agent uses on block devices) fails the conversion with
/// IPA's out-of-space error, without a hang or a panic.
#[test]
fn a_failed_write_behind_the_converter_is_reported() {
    need(&["qemu-img"]);
    let d = dir("qcow2-full");
    // compressible throughout: every cluster is a compressed one, so the
    // only device writes are the helper thread's
    let q = compressed_text(&d, 24 << 20);
    let h = header(&q);
    let full = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/full")
        .unwrap();
    let size = h.size + (4 << 20);
    let mut t = Target::new(
        full,
        "/dev/full",
        "img",
        IoMode::Direct,
        512,
        size,
        0,
        size,
        true,
    );
    let mut conv = Converter::new(h);
    match stream(&mut conv, &mut t, &q, None) {
        Err(ConvError::Write(e)) => {
            assert!(e.is(Kind::ImageDownloadOutofSpaceError), "{e}");
            assert!(e.to_string().contains("No space left on device"), "{e}");
        }
        other => panic!("writing to /dev/full: {other:?}"),
    }
}

/// A compressed cluster whose deflate stream is damaged fails the
/// conversion with its offsets, whether it inflates inline or on the
/// helper threads (where the error comes back with the job, later than
/// the cluster was met).
#[test]
fn a_damaged_compressed_cluster_is_named() {
    need(&["qemu-img"]);
    let d = dir("qcow2-damaged");
    let q = compressed_text(&d, 8 << 20);
    let mut img = std::fs::read(&q).unwrap();
    let h = header(&q);
    let l1 = h.l1_offset as usize;
    let l2 =
        (u64::from_be_bytes(img[l1..l1 + 8].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00) as usize;
    // the 60th cluster's entry: compressed, its bytes at the low bits
    let e = u64::from_be_bytes(img[l2 + 60 * 8..l2 + 61 * 8].try_into().unwrap());
    assert!(e & (1 << 62) != 0, "cluster 60 is not compressed");
    let x = 62 - (h.cluster_bits - 8);
    let host = (e & ((1u64 << x) - 1)) as usize;
    img[host..host + 64].fill(0xff);
    let bad = d.join("bad.qcow2");
    std::fs::write(&bad, &img).unwrap();
    for threads in [1, 2, 3] {
        let out = d.join("target");
        target_file(&out, h.size + (4 << 20));
        let mut t = target(&out, h.size + (4 << 20));
        let mut conv = Converter::new(h.clone()).with_inflate_threads(threads);
        match stream(&mut conv, &mut t, &bad, None) {
            Err(ConvError::Invalid(m)) => {
                let want = format!(
                    "the compressed cluster at host offset {host:#x} (guest {:#x}) does not \
                     inflate to a full cluster",
                    60u64 << h.cluster_bits
                );
                assert!(m.details.starts_with(&want), "{threads} threads: {m}");
            }
            other => panic!("{threads} threads: {other:?}"),
        }
    }
}
