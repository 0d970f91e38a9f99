//! The one GUID type: GPT type and partition GUIDs, EFI variable vendor
//! GUIDs, md array UUIDs, filesystem UUIDs and the agent's own ids.
//!
//! A [`Guid`] keeps the bytes in the order GPT and UEFI store them (the
//! first three fields little-endian, "mixed-endian"); filesystems and md
//! store UUIDs in RFC 4122 (big-endian) order, which
//! [`Guid::from_rfc4122`] converts from. Text is always the canonical
//! 8-4-4-4-12 form.

use std::fmt;
use std::io;

/// A GUID in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parse "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" at compile time (for
    /// the constants above; panics on a malformed literal, which a test
    /// would catch at once).
    pub const fn from_str_const(s: &str) -> Guid {
        match Self::parse_bytes(s.as_bytes()) {
            Some(g) => g,
            None => panic!("bad GUID literal"),
        }
    }

    pub fn parse(s: &str) -> Option<Guid> {
        Self::parse_bytes(s.trim().as_bytes())
    }

    const fn parse_bytes(s: &[u8]) -> Option<Guid> {
        if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
            return None;
        }
        // text order of the 16 bytes
        let mut text = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < 36 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                i += 1;
                continue;
            }
            let (hi, lo) = match (hex(s[i]), hex(s[i + 1])) {
                (Some(h), Some(l)) => (h, l),
                _ => return None,
            };
            text[n] = hi << 4 | lo;
            n += 1;
            i += 2;
        }
        // the first three fields are little-endian on disk
        let b = [
            text[3], text[2], text[1], text[0], text[5], text[4], text[7], text[6], text[8],
            text[9], text[10], text[11], text[12], text[13], text[14], text[15],
        ];
        Some(Guid(b))
    }

    /// A random (version 4) GUID from the kernel's CSPRNG, as
    /// `uuidutils.generate_uuid()` / sgdisk's `-u 0:R` produce.
    pub fn random() -> io::Result<Guid> {
        let mut b = [0u8; 16];
        crate::sys::getrandom(&mut b)?;
        // version 4 lives in the high nibble of the third field, which is
        // stored little-endian: byte 7 on disk.
        b[7] = (b[7] & 0x0F) | 0x40;
        b[8] = (b[8] & 0x3F) | 0x80;
        Ok(Guid(b))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Lower-case text, as lsblk/blkid print PARTUUIDs.
    pub fn to_lower(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }
}

const fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Guid {
    /// A GUID from 16 on-disk (mixed-endian) bytes; `None` when `b` is
    /// shorter.
    pub fn from_slice(b: &[u8]) -> Option<Guid> {
        Some(Guid(b.get(..16)?.try_into().ok()?))
    }

    /// A UUID stored in RFC 4122 byte order (ext4, XFS, btrfs, swap, md),
    /// so that it prints as blkid prints it.
    pub fn from_rfc4122(b: [u8; 16]) -> Guid {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }

    /// The bytes in RFC 4122 order (the inverse of [`Guid::from_rfc4122`]).
    pub fn to_rfc4122(&self) -> [u8; 16] {
        Guid::from_rfc4122(self.0).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let g = Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").unwrap();
        assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(g.to_lower(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        let be = Guid::from_rfc4122([
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 9, 10, 11, 12, 13, 14, 15, 16,
        ]);
        assert_eq!(be.to_lower(), "11223344-5566-7788-090a-0b0c0d0e0f10");
        assert_eq!(Guid::from_rfc4122(be.to_rfc4122()), be);
        assert_eq!(Guid::from_slice(&g.0), Some(g));
        assert_eq!(Guid::from_slice(&[0; 15]), None);
    }

    #[test]
    fn random_is_version_4() {
        let t = Guid::random().unwrap().to_lower();
        assert_eq!(&t[14..15], "4");
        assert!(matches!(&t[19..20], "8" | "9" | "a" | "b"));
    }
}
