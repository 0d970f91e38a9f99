//! gzip (RFC 1952) around flate2's raw deflate, for the config drive Ironic
//! sends (base64 of gzip, decoded as it is read, inline or downloaded) and
//! the log bundle (tar.gz).
//!
//! flate2's own gzip types (`GzEncoder`, `MultiGzDecoder`) check the CRC
//! with crc32fast, whose slice-by-16 table (16 KiB) and SIMD code come with
//! them: replacing them saved 28,800 bytes of the static binary
//! (2026-12-06). The agent's inputs are at most tens of MiB, so the
//! bytewise CRC the GPT already needs (`super::crc32_update`) is fast
//! enough.
//! The members, header fields and trailer checks are flate2's: any number
//! of members, FEXTRA/FNAME/FCOMMENT skipped, FHCRC checked, CRC-32 and
//! ISIZE of every member checked, anything after a member that is not
//! another member an error.

use super::crc32_update as crc_update;
use flate2::{Decompress, FlushDecompress, Status};
use std::io::{self, Read, Write};

const RESERVED: u8 = 0xe0;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {what}"))
}

/// The length of the member header at the start of `b` (RFC 1952 §2.3).
fn header_len(b: &[u8]) -> io::Result<usize> {
    let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "gzip: truncated header");
    if b.len() < 10 {
        return Err(if b.len() >= 2 && b[..2] != [0x1f, 0x8b] {
            bad("invalid header")
        } else {
            short()
        });
    }
    if b[..3] != [0x1f, 0x8b, 8] || b[3] & RESERVED != 0 {
        return Err(bad("invalid header"));
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let xlen = b.get(at..at + 2).ok_or_else(short)?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = b.get(at..).and_then(|r| r.iter().position(|&c| c == 0));
            at += nul.ok_or_else(short)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = b.get(at..at + 2).ok_or_else(short)?;
        if u32::from(u16::from_le_bytes([stored[0], stored[1]])) != crc32(&b[..at]) & 0xffff {
            return Err(bad("header CRC mismatch"));
        }
        at += 2;
    }
    if at > b.len() {
        return Err(short());
    }
    Ok(at)
}

/// CRC-32 of `data` (IEEE, the gzip and GPT one).
fn crc32(data: &[u8]) -> u32 {
    !crc_update(!0, data)
}

/// Input read from the source at a time.
const CHUNK: usize = 64 << 10;
/// A member header longer than this (a FNAME, FCOMMENT or FEXTRA that
/// never ends) is an error, not a reason to keep reading into memory.
const MAX_HEADER: usize = 1 << 20;

/// Decompresses every member of a gzip stream read from `R` (a slice, or
/// a download through a base64 decoder), holding at most [`CHUNK`] of its
/// input (a header up to [`MAX_HEADER`]).
pub struct Decoder<R: Read> {
    inner: R,
    /// Input read and not yet used: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// `inner` has no more.
    eof: bool,
    inflate: Decompress,
    /// Inside a member (after its header).
    in_member: bool,
    /// A member was read: an empty input is an error, as in flate2.
    members: usize,
    /// The running CRC register and size of the current member.
    crc: u32,
    size: u32,
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R) -> Self {
        Decoder {
            inner,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            inflate: Decompress::new(false),
            in_member: false,
            members: 0,
            crc: !0,
            size: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The source; what the decoder has read from it but not used is lost.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn input(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn used(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads more input after what is left; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(have + CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(have + n);
        self.eof = n == 0;
        Ok(n > 0)
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_member {
                if self.input().is_empty() && !self.fill()? && self.members > 0 {
                    return Ok(0);
                }
                let n = loop {
                    match header_len(self.input()) {
                        Ok(n) => break n,
                        Err(e)
                            if e.kind() == io::ErrorKind::UnexpectedEof
                                && self.input().len() < MAX_HEADER
                                && self.fill()? => {}
                        Err(e) => return Err(e),
                    }
                };
                self.members += 1;
                self.used(n);
                self.inflate.reset(false);
                (self.in_member, self.crc, self.size) = (true, !0, 0);
            }
            if self.input().is_empty() {
                self.fill()?;
            }
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&self.buf[self.pos..], out, FlushDecompress::None)
                .map_err(|e| bad(&e.to_string()))?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            self.used(used);
            self.crc = crc_update(self.crc, &out[..made]);
            self.size = self.size.wrapping_add(made as u32);
            if status == Status::StreamEnd {
                while self.input().len() < 8 && self.fill()? {}
                let t = self.input().get(..8).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "gzip: truncated trailer")
                })?;
                let word = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
                if word(0) != !self.crc {
                    return Err(bad("CRC mismatch"));
                }
                if word(4) != self.size {
                    return Err(bad("length mismatch"));
                }
                self.used(8);
                self.in_member = false;
            } else if made == 0 && used == 0 && !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "gzip: truncated data",
                ));
            }
            if made > 0 {
                return Ok(made);
            }
        }
    }
}

/// Compresses what is written into one gzip member on `W`.
pub struct Encoder<W: Write> {
    deflate: flate2::write::DeflateEncoder<W>,
    crc: u32,
    size: u32,
}

impl<W: Write> Encoder<W> {
    pub fn new(mut inner: W, level: flate2::Compression) -> io::Result<Self> {
        // no flags, no mtime, no extra flags, OS 255 (unknown), as flate2
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        Ok(Encoder {
            deflate: flate2::write::DeflateEncoder::new(inner, level),
            crc: !0,
            size: 0,
        })
    }

    /// Ends the member: the rest of the deflate stream and the trailer.
    pub fn finish(self) -> io::Result<W> {
        let mut inner = self.deflate.finish()?;
        inner.write_all(&(!self.crc).to_le_bytes())?;
        inner.write_all(&self.size.to_le_bytes())?;
        Ok(inner)
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.deflate.write(buf)?;
        self.crc = crc_update(self.crc, &buf[..n]);
        self.size = self.size.wrapping_add(n as u32);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.deflate.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that gives at most 3 bytes a read, so headers, deflate
    /// data and trailers all arrive in pieces.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Ours, read whole and read in pieces (which must agree).
    fn ours(gz: &[u8]) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        let whole = Decoder::new(gz).read_to_end(&mut v).map(|_| v);
        let mut d = Vec::new();
        let pieces = Decoder::new(Dribble(gz)).read_to_end(&mut d).map(|_| d);
        match (&whole, &pieces) {
            (Ok(a), Ok(b)) => assert!(a == b, "read in pieces, different data"),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "read in pieces: {:?} against {:?}",
                pieces.is_ok(),
                whole.is_ok()
            ),
        }
        whole
    }

    /// flate2's own reader, the reference.
    fn flate2s(gz: &[u8]) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut v)
            .map(|_| v)
    }

    fn flate2_gz(data: &[u8], b: flate2::GzBuilder) -> Vec<u8> {
        let mut e = b.write(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn our_gz(data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), flate2::Compression::default()).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn agrees_with_flate2() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let plain = flate2_gz(&data, flate2::GzBuilder::new());
        let named = flate2_gz(
            b"hello",
            flate2::GzBuilder::new()
                .filename("f.iso")
                .comment("c")
                .extra(vec![1, 2, 3])
                .operating_system(3),
        );
        let two = [plain.clone(), named.clone()].concat();
        let mut bad_crc = plain.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        let mut bad_len = plain.clone();
        bad_len[n - 2] ^= 1;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("plain", plain.clone()),
            ("named", named.clone()),
            ("two members", two),
            ("empty data", flate2_gz(b"", flate2::GzBuilder::new())),
            ("ours", our_gz(&data)),
            ("truncated", plain[..plain.len() / 2].to_vec()),
            ("no trailer", plain[..plain.len() - 8].to_vec()),
            ("short trailer", plain[..plain.len() - 3].to_vec()),
            ("bad crc", bad_crc),
            ("bad length", bad_len),
            ("junk", b"not gzip".to_vec()),
            ("trailing junk", [plain.clone(), b"xyz".to_vec()].concat()),
            ("header only", named[..12].to_vec()),
            ("nothing", Vec::new()),
        ];
        for (what, gz) in cases {
            match (ours(&gz), flate2s(&gz)) {
                (Ok(a), Ok(b)) => assert!(a == b, "{what}: different data"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{what}: ours {:?}, flate2 {:?}", a.map(|v| v.len()), b),
            }
        }
        assert_eq!(ours(&our_gz(&data)).unwrap(), data);
        assert_eq!(flate2s(&our_gz(&data)).unwrap(), data);
    }

    #[test]
    fn header_crc_is_checked() {
        // FHCRC set, CRC of the 10 header bytes' low 16 bits
        let mut h = vec![0x1f, 0x8b, 8, FHCRC, 0, 0, 0, 0, 0, 3];
        let c = (crc32(&h) & 0xffff) as u16;
        let body = &flate2_gz(b"abc", flate2::GzBuilder::new())[10..];
        let mut good = h.clone();
        good.extend(c.to_le_bytes());
        good.extend_from_slice(body);
        assert_eq!(ours(&good).unwrap(), b"abc");
        h.extend((c ^ 1).to_le_bytes());
        h.extend_from_slice(body);
        assert!(ours(&h).is_err());
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(ours(b"").is_err());
    }
}
