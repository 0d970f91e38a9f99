//! Image format detection from the first bytes, never from names or from
//! what Ironic declares (the fix for CVE-2024-44082, Launchpad bug 2071740).
//!
//! The signatures and safety checks are those of oslo.utils'
//! `imageutils/format_inspector.py`, which IPA's
//! `disk_utils.get_and_validate_image_format` runs: every inspector looks
//! at the same bytes; more than one match is refused ("an image hiding one
//! header in another"); nothing specific matching means raw. On top of
//! oslo's list, compressed containers (gzip, xz, zstd, bzip2) are named so
//! that they are refused with a clear message instead of being written to
//! the disk as if they were raw.
//!
//! The policy (`check`) is IPA's: the detected format must be in the
//! lookup's `permitted_image_formats` and agree with a declared
//! `disk_format` (raw and gpt are one family: IPA writes both without
//! conversion), unless `disable_deep_image_inspection` is set, in which
//! case only what qemu-img itself would detect is used (qcow2 magic or
//! raw), as IPA's old `qemu-img info` path did. Whatever the policy, this
//! agent writes only raw and qcow2.

use crate::error::{AgentError, Kind, Result};
use crate::util::bytes::{be32, le32};

/// How many leading bytes detection wants: the ISO 9660/UDF volume
/// descriptor at 32 KiB plus its 2 KiB (oslo's `ISOInspector`).
pub const SNIFF_LEN: usize = 34 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    /// A raw disk image with an MBR or GPT (oslo's `gpt` inspector).
    Gpt,
    Qcow2,
    Qed,
    Vhd,
    Vhdx,
    Vmdk,
    Vdi,
    Iso,
    Luks,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Format {
    /// oslo.utils' / Glance's `disk_format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Gpt => "gpt",
            Format::Qcow2 => "qcow2",
            Format::Qed => "qed",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vmdk => "vmdk",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Luks => "luks",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Bzip2 => "bzip2",
        }
    }

    /// Raw-like: written byte for byte.
    pub fn is_raw(self) -> bool {
        matches!(self, Format::Raw | Format::Gpt)
    }
}

fn starts(b: &[u8], off: usize, sig: &[u8]) -> bool {
    b.get(off..off + sig.len()) == Some(sig)
}

/// oslo's `GPTInspector.format_match`: the 0x55AA boot signature, unless
/// the sector is a FAT volume boot record (2 FATs, fixed-disk media).
fn is_mbr(b: &[u8]) -> bool {
    if b.len() < 512 || b[510] != 0x55 || b[511] != 0xaa {
        return false;
    }
    let is_fat = b[0x10] == 2 && b[0x15] == 0xf8;
    !is_fat
}

/// A text VMDK descriptor file (qemu's `vmdk_probe`).
fn is_vmdk_descriptor(b: &[u8]) -> bool {
    starts(b, 0, b"# Disk DescriptorFile")
}

/// Every format whose signature is in `head`. `head` should hold at least
/// [`SNIFF_LEN`] bytes unless the image is shorter.
pub fn matches(head: &[u8]) -> Vec<Format> {
    let mut m = vec![];
    if starts(head, 0, b"QFI\xfb") {
        m.push(Format::Qcow2);
    }
    if starts(head, 0, b"QED\0") {
        m.push(Format::Qed);
    }
    if starts(head, 0, b"conectix") {
        m.push(Format::Vhd);
    }
    if starts(head, 0, b"vhdxfile") {
        m.push(Format::Vhdx);
    }
    if starts(head, 0, b"KDMV") || is_vmdk_descriptor(head) {
        m.push(Format::Vmdk);
    }
    if head.len() >= 512 && le32(head, 0x40) == 0xbeda_107f {
        m.push(Format::Vdi);
    }
    if let Some(id) = head.get(32 * 1024 + 1..32 * 1024 + 6) {
        if id == b"CD001" || id == b"NSR02" || id == b"NSR03" {
            m.push(Format::Iso);
        }
    }
    if starts(head, 0, b"LUKS\xba\xbe") {
        m.push(Format::Luks);
    }
    if is_mbr(head) {
        m.push(Format::Gpt);
    }
    if starts(head, 0, b"\x1f\x8b") {
        m.push(Format::Gzip);
    }
    if starts(head, 0, b"\xfd7zXZ\0") {
        m.push(Format::Xz);
    }
    if starts(head, 0, b"\x28\xb5\x2f\xfd") {
        m.push(Format::Zstd);
    }
    if starts(head, 0, b"BZh") && head.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        m.push(Format::Bzip2);
    }
    m
}

/// oslo's `ImageFormatError` "Multiple formats detected": the formats that
/// matched.
#[derive(Debug, PartialEq, Eq)]
pub struct Ambiguous(pub Vec<Format>);

/// oslo's `InspectWrapper.format`: exactly one specific match, or raw.
pub fn detect(head: &[u8]) -> std::result::Result<Format, Ambiguous> {
    let m = matches(head);
    match m.as_slice() {
        [] => Ok(Format::Raw),
        [one] => Ok(*one),
        _ => Err(Ambiguous(m)),
    }
}

/// A failed safety check, with oslo's reason.
fn failed(reason: impl Into<String>) -> AgentError {
    AgentError::new(Kind::InvalidImage, reason)
}

/// oslo's `GPTInspector.check_mbr_partitions`.
pub fn check_mbr(sector: &[u8]) -> Result<(), AgentError> {
    if sector.len() < 512 {
        return Err(failed("the MBR is truncated"));
    }
    let mut valid = vec![];
    let mut found_gpt = false;
    for i in 0..4 {
        let pte = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        let boot = pte[0];
        let (starth, starts, startt) = (pte[1], pte[2], pte[3]);
        let ostype = pte[4];
        let startlba = le32(pte, 8);
        if boot != 0x00 && boot != 0x80 {
            return Err(failed(format!("MBR PTE {i} has invalid boot flag")));
        }
        if ostype != 0 {
            valid.push(i);
        }
        if ostype == 0xee {
            found_gpt = true;
            if (starth, starts, startt) != (0x00, 0x02, 0x00) {
                return Err(failed("GPT MBR has invalid start CHS"));
            }
            if startlba != 1 {
                return Err(failed("GPT MBR has invalid start LBA"));
            }
        }
    }
    if found_gpt && valid != [0] {
        return Err(failed("GPT MBR defines invalid extra partitions"));
    }
    if valid.is_empty() {
        return Err(failed("GPT MBR has no partitions defined"));
    }
    Ok(())
}

/// oslo's `QcowInspector` checks on the first 104 bytes (the converter in
/// `qcow2.rs` checks much more before it trusts a single offset).
pub fn check_qcow2(head: &[u8]) -> Result<(), AgentError> {
    if head.len() < 104 {
        return Err(failed("qcow2 header is truncated"));
    }
    if u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()) != 0 {
        return Err(failed("Image has a backing file"));
    }
    match be32(head, 4) {
        2 => return Ok(()),
        3 => {}
        _ => return Err(failed("Unsupported qcow2 version")),
    }
    let incompat = u64::from_be_bytes(head[72..80].try_into().unwrap_or_default());
    // bit 2: external data file
    if incompat & 0x4 != 0 {
        return Err(failed("Image has data_file set"));
    }
    // oslo knows bits 0-3 (dirty, corrupt, data file, compression type)
    if incompat & !0xf != 0 {
        return Err(failed("Unknown QCOW2 features found"));
    }
    Ok(())
}

/// The safety check of a detected format (oslo's `safety_check`).
pub fn safety_check(fmt: Format, head: &[u8]) -> Result<(), AgentError> {
    match fmt {
        Format::Gpt => check_mbr(head),
        Format::Qcow2 => check_qcow2(head),
        Format::Qed => Err(failed("This file format is not allowed")),
        // oslo checks the VMDK descriptor and LUKS version; neither format is
        // written by this agent, so they are refused further down anyway.
        _ => Ok(()),
    }
}

/// The lookup's image policy.
pub struct Policy<'a> {
    pub permitted: &'a [String],
    pub declared: Option<&'a str>,
    pub deep_inspection: bool,
}

fn invalid(details: String) -> AgentError {
    crate::util::log_at!(Error, "{details}");
    AgentError::new(Kind::InvalidImage, details)
}

/// Detect and vet the image whose first bytes are `head`; returns the
/// format to write (raw-like or qcow2). Errors are `InvalidImage` with
/// IPA's texts (`disk_utils._image_inspection`,
/// `get_and_validate_image_format`), followed by the specific reason.
pub fn check(head: &[u8], policy: &Policy) -> Result<Format> {
    let fmt = if policy.deep_inspection {
        let fmt = match detect(head) {
            Ok(f) => f,
            Err(Ambiguous(m)) => {
                let names: Vec<&str> = m.iter().map(|f| f.name()).collect();
                return Err(invalid(format!(
                    "Security: Image matched multiple potential formats (Multiple formats \
                     detected: {})",
                    names.join(",")
                )));
            }
        };
        if !policy.permitted.iter().any(|p| p == fmt.name()) {
            return Err(invalid(format!(
                "Security: Detected image format was {}, but only {} are allowed",
                fmt.name(),
                policy.permitted.join(", ")
            )));
        }
        if let Some(declared) = policy.declared.filter(|d| !d.is_empty() && *d != "unknown") {
            let same_family = declared == fmt.name()
                || (fmt.is_raw() && (declared == "raw" || declared == "gpt"));
            if !same_family {
                return Err(invalid(format!(
                    "Security: Expected format was {declared}, but image was actually {}",
                    fmt.name()
                )));
            }
        }
        // IPA never inspects an image declared raw or gpt (it is written
        // byte for byte, no qemu-img involved), so the MBR sanity check that
        // guards qemu-img's probing is skipped for those: a hybrid-MBR raw
        // image IPA deploys deploys here too.
        let declared_raw = matches!(policy.declared, Some("raw") | Some("gpt"));
        let checked = !(fmt.is_raw() && declared_raw);
        let verdict = if checked {
            safety_check(fmt, head)
        } else {
            Ok(())
        };
        if let Err(why) = verdict {
            return Err(invalid(format!(
                "Security: Image failed safety check ({})",
                why.details
            )));
        }
        fmt
    } else {
        // IPA's old path trusted `qemu-img info`, which probes the formats
        // qemu converts and calls everything else raw.
        match matches(head).into_iter().find(|f| {
            matches!(
                f,
                Format::Qcow2
                    | Format::Qed
                    | Format::Vhd
                    | Format::Vhdx
                    | Format::Vmdk
                    | Format::Vdi
                    | Format::Luks
            )
        }) {
            Some(f) => f,
            None => Format::Raw,
        }
    };
    match fmt {
        f if f.is_raw() || f == Format::Qcow2 => Ok(f),
        Format::Iso => Err(invalid(
            "The image is an ISO 9660/UDF image, which cannot be written as a root disk; \
             use a raw or qcow2 disk image"
                .into(),
        )),
        Format::Gzip | Format::Xz | Format::Zstd | Format::Bzip2 => Err(invalid(format!(
            "The image is {}-compressed; this agent writes raw and qcow2 images as they are \
             served, so serve the image uncompressed (or as a compressed qcow2)",
            fmt.name()
        ))),
        f => Err(invalid(format!(
            "Cannot write a {} image: this agent converts only raw and qcow2 images",
            f.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permitted() -> Vec<String> {
        vec!["raw".into(), "gpt".into(), "qcow2".into()]
    }

    fn policy<'a>(p: &'a [String], declared: Option<&'a str>) -> Policy<'a> {
        Policy {
            permitted: p,
            declared,
            deep_inspection: true,
        }
    }

    fn protective_mbr() -> Vec<u8> {
        let mut b = vec![0u8; 64 * 1024];
        b[446 + 1..446 + 4].copy_from_slice(&[0, 2, 0]);
        b[446 + 4] = 0xee;
        b[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        b[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    fn qcow2_head(version: u32, incompat: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 * 1024];
        b[..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[72..80].copy_from_slice(&incompat.to_be_bytes());
        b
    }

    #[test]
    fn sniffs_signatures() {
        assert_eq!(detect(&[0u8; 40000]), Ok(Format::Raw));
        assert_eq!(detect(&[]), Ok(Format::Raw));
        assert_eq!(detect(&protective_mbr()), Ok(Format::Gpt));
        assert_eq!(detect(&qcow2_head(3, 0)), Ok(Format::Qcow2));
        let mut vdi = vec![0u8; 512];
        vdi[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
        assert_eq!(detect(&vdi), Ok(Format::Vdi));
        for (sig, f) in [
            (&b"QED\0"[..], Format::Qed),
            (b"conectix", Format::Vhd),
            (b"vhdxfile", Format::Vhdx),
            (b"KDMV", Format::Vmdk),
            (b"# Disk DescriptorFile\n", Format::Vmdk),
            (b"LUKS\xba\xbe", Format::Luks),
            (b"\x1f\x8b\x08", Format::Gzip),
            (b"\xfd7zXZ\0", Format::Xz),
            (b"\x28\xb5\x2f\xfd", Format::Zstd),
            (b"BZh9", Format::Bzip2),
        ] {
            let mut b = sig.to_vec();
            b.resize(1024, 0);
            assert_eq!(detect(&b), Ok(f), "{sig:?}");
        }
        // a FAT boot sector carries 0x55AA too but is not a partition table
        let mut fat = protective_mbr();
        fat[0x10] = 2;
        fat[0x15] = 0xf8;
        assert_eq!(detect(&fat), Ok(Format::Raw));
    }

    #[test]
    fn hybrid_iso_is_ambiguous() {
        let mut b = protective_mbr();
        b[32 * 1024 + 1..32 * 1024 + 6].copy_from_slice(b"CD001");
        assert_eq!(detect(&b), Err(Ambiguous(vec![Format::Iso, Format::Gpt])));
        let e = check(&b, &policy(&permitted(), Some("raw"))).unwrap_err();
        assert!(e.is(Kind::InvalidImage));
        assert!(e
            .details
            .starts_with("Security: Image matched multiple potential formats"));
    }

    #[test]
    fn policy_like_ipa() {
        let p = permitted();
        assert_eq!(
            check(&protective_mbr(), &policy(&p, Some("raw"))).unwrap(),
            Format::Gpt
        );
        assert_eq!(
            check(&[0u8; 4096], &policy(&p, Some("gpt"))).unwrap(),
            Format::Raw
        );
        assert_eq!(
            check(&qcow2_head(3, 0), &policy(&p, None)).unwrap(),
            Format::Qcow2
        );
        assert_eq!(
            check(&qcow2_head(2, 0), &policy(&p, Some("unknown"))).unwrap(),
            Format::Qcow2
        );
        // CVE-2024-44082: a qcow2 declared raw (or the reverse) is refused
        let e = check(&qcow2_head(3, 0), &policy(&p, Some("raw"))).unwrap_err();
        assert_eq!(
            e.details,
            "Security: Expected format was raw, but image was actually qcow2"
        );
        let e = check(&protective_mbr(), &policy(&p, Some("qcow2"))).unwrap_err();
        assert_eq!(
            e.details,
            "Security: Expected format was qcow2, but image was actually gpt"
        );
        let raw_only = vec!["raw".to_string()];
        let e = check(&qcow2_head(3, 0), &policy(&raw_only, None)).unwrap_err();
        assert_eq!(
            e.details,
            "Security: Detected image format was qcow2, but only raw are allowed"
        );
        let mut vmdk = b"KDMV".to_vec();
        vmdk.resize(1024, 0);
        let e = check(&vmdk, &policy(&p, Some("vmdk"))).unwrap_err();
        assert!(e.details.contains("was vmdk, but only raw, gpt, qcow2"));
        // permitted by policy but not writable
        let mut all = p.clone();
        all.push("vmdk".into());
        all.push("iso".into());
        let e = check(&vmdk, &policy(&all, Some("vmdk"))).unwrap_err();
        assert!(e.details.contains("converts only raw and qcow2"));
        let mut iso = vec![0u8; SNIFF_LEN];
        iso[32 * 1024 + 1..32 * 1024 + 6].copy_from_slice(b"CD001");
        let e = check(&iso, &policy(&all, None)).unwrap_err();
        assert!(e.details.contains("cannot be written as a root disk"));
    }

    #[test]
    fn safety_checks() {
        let p = permitted();
        let mut bf = qcow2_head(3, 0);
        bf[8..16].copy_from_slice(&4096u64.to_be_bytes());
        let e = check(&bf, &policy(&p, None)).unwrap_err();
        assert_eq!(
            e.details,
            "Security: Image failed safety check (Image has a backing file)"
        );
        let e = check(&qcow2_head(3, 0x4), &policy(&p, None)).unwrap_err();
        assert!(e.details.contains("data_file"));
        let e = check(&qcow2_head(3, 0x10), &policy(&p, None)).unwrap_err();
        assert!(e.details.contains("Unknown QCOW2 features"));
        let e = check(&qcow2_head(1, 0), &policy(&p, None)).unwrap_err();
        assert!(e.details.contains("Unsupported qcow2 version"));
        let mut m = protective_mbr();
        m[446] = 0x7f;
        assert!(check_mbr(&m)
            .unwrap_err()
            .details
            .contains("invalid boot flag"));
        let mut m = protective_mbr();
        m[446 + 16 + 4] = 0x83;
        assert_eq!(
            check_mbr(&m).unwrap_err().details,
            "GPT MBR defines invalid extra partitions"
        );
        // IPA writes raw-declared images without inspecting them
        assert_eq!(check(&m, &policy(&p, Some("raw"))).unwrap(), Format::Gpt);
        assert!(check(&m, &policy(&p, None)).is_err());
        let mut m = vec![0u8; 512];
        m[510] = 0x55;
        m[511] = 0xaa;
        assert_eq!(
            check_mbr(&m).unwrap_err().details,
            "GPT MBR has no partitions defined"
        );
        // a head shorter than a sector is refused, not indexed past its end
        // (the fuzz target `image_format`: 64 bytes of a gzip header)
        for short in [&m[..0], &m[..64], &m[..511]] {
            assert_eq!(
                check_mbr(short).unwrap_err().details,
                "the MBR is truncated"
            );
        }
        let mut qed = b"QED\0".to_vec();
        qed.resize(512, 0);
        let mut all = p.clone();
        all.push("qed".into());
        assert!(check(&qed, &policy(&all, None)).is_err());
    }

    #[test]
    fn without_deep_inspection_only_qemu_probes() {
        let p = vec![];
        let pol = Policy {
            permitted: &p,
            declared: Some("raw"),
            deep_inspection: false,
        };
        // qemu-img would call an ISO or a gzip file raw
        let mut iso = protective_mbr();
        iso[32 * 1024 + 1..32 * 1024 + 6].copy_from_slice(b"CD001");
        assert_eq!(check(&iso, &pol).unwrap(), Format::Raw);
        assert_eq!(check(&qcow2_head(3, 0), &pol).unwrap(), Format::Qcow2);
        let mut vhd = b"conectix".to_vec();
        vhd.resize(512, 0);
        assert!(check(&vhd, &pol).is_err());
    }
}
