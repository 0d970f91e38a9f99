//! Fixed-width integers read from byte buffers at an offset: the one
//! reader for every on-disk and on-wire format the agent parses (GPT, MBR,
//! FAT, qcow2, md superblocks, NVMe identify data, LLDP, ...).
//!
//! The readers are total: bytes past the end of the buffer read as zero,
//! so a parser fed a truncated or hostile buffer gets a wrong number, which
//! its own checks reject, never a panic.

fn get<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = o.checked_add(N).and_then(|e| b.get(o..e)) {
        a.copy_from_slice(s);
    }
    a
}

/// Little-endian u16 at `o`.
pub fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(get(b, o))
}

/// Little-endian u32 at `o`.
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(get(b, o))
}

/// Little-endian u64 at `o`.
pub fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(get(b, o))
}

/// Big-endian u16 at `o`.
pub fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes(get(b, o))
}

/// Big-endian u32 at `o`.
pub fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(get(b, o))
}

/// Big-endian u64 at `o`.
pub fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(get(b, o))
}

/// Whether `magic` sits at `o` (false when the buffer is too short).
pub fn at(b: &[u8], o: usize, magic: &[u8]) -> bool {
    o.checked_add(magic.len())
        .and_then(|e| b.get(o..e))
        .is_some_and(|s| s == magic)
}

/// Lower-case hex, as Python's `binascii.hexlify(...).decode()`.
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_orders() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(be16(&b, 1), 0x0203);
        assert_eq!(le32(&b, 0), 0x0403_0201);
        assert_eq!(be32(&b, 0), 0x0102_0304);
        assert_eq!(le64(&b, 1), 0x0908_0706_0504_0302);
        assert_eq!(be64(&b, 1), 0x0203_0405_0607_0809);
        assert!(at(&b, 7, &[8, 9]));
        assert!(!at(&b, 8, &[9, 10]));
    }

    #[test]
    fn past_the_end_reads_zero() {
        let b = [0xffu8; 3];
        assert_eq!(le32(&b, 0), 0);
        assert_eq!(be16(&b, 2), 0);
        assert_eq!(le64(&b, usize::MAX), 0);
        assert!(!at(&b, usize::MAX, b"x"));
    }
}
