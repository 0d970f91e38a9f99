//! A qcow2 image streamed into the converter (`image::qcow2`) the way
//! `image::stream::write_qcow2` drives it: the header vetted, the look at
//! the tables (`tables_trail_data`), forward mode, and on
//! `ConvError::Backward` prefetched mode with the tables read by "Range
//! requests" over the same bytes; the guest written to a 32 MiB target on
//! a memfd. Chunks are whole clusters, as the stream cuts them, once the
//! stream's own chunk size and once a cluster each (so that compressed
//! clusters straddle chunks). Memory and time must stay bounded whatever
//! the header and tables claim.
#![no_main]

use ironic_agent::image::qcow2::{self, ConvError, Converter, Header, RangeReader};
use ironic_agent::image::stream::chunk_size;
use ironic_agent::image::writer::Target;
use ironic_agent_fuzz::{image_target, memfd};
use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::sync::OnceLock;

/// The target disk: guests larger than this are refused before any
/// conversion, as `write_qcow2` refuses a virtual size over the disk's.
const DISK: u64 = 32 << 20;

static FILE: OnceLock<File> = OnceLock::new();

fn ranges(
    data: &[u8],
) -> impl FnMut(u64, u64, &mut dyn FnMut(&[u8]) -> Result<(), ConvError>) -> Result<(), ConvError> + '_
{
    move |start, len, sink| {
        // a server answers what it has: fewer bytes past the end
        let s = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
        let e = usize::try_from(start.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(data.len());
        for piece in data[s..e].chunks(64 * 1024) {
            sink(piece)?;
        }
        Ok(())
    }
}

fn run(
    conv: &mut Converter,
    t: &mut Target,
    data: &[u8],
    chunk: usize,
    rr: Option<&mut RangeReader>,
) -> Result<(), ConvError> {
    let mut rr = rr;
    let mut off = 0usize;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        if let Some(r) = rr.as_mut() {
            conv.load_due(t, end as u64, &mut **r)?;
        }
        conv.feed(t, off as u64, &data[off..end])?;
        off = end;
    }
    conv.finish(t)
}

fn convert(h: &Header, data: &[u8], chunk: usize) {
    let file = FILE.get_or_init(memfd);
    let mut t = image_target(file, DISK);
    let mut rr = ranges(data);
    let first = &data[..chunk.min(data.len())];
    let trailing = matches!(qcow2::tables_trail_data(h, first, &mut rr), Ok(true));
    if !trailing {
        let mut conv = Converter::new(h.clone()).with_inflate_threads(0);
        let r = run(&mut conv, &mut t, data, chunk, None);
        assert!(conv.waiting() <= qcow2::MAX_EVENTS);
        if !matches!(r, Err(ConvError::Backward { .. })) {
            return;
        }
        t = image_target(file, DISK);
    }
    let mut conv = Converter::new(h.clone()).with_inflate_threads(0);
    if conv.prefetch(&mut t, &mut rr).is_ok() {
        let r = run(&mut conv, &mut t, data, chunk, Some(&mut rr));
        // prefetched mode never goes back
        assert!(
            !matches!(r, Err(ConvError::Backward { .. })),
            "prefetched mode reported Backward"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(h) = qcow2::parse_header(data) else {
        return;
    };
    assert!((9..=21).contains(&h.cluster_bits));
    for e in [0u64, 1, 1 << 62, u64::MAX, h.l1_offset, (1 << 62) | h.size] {
        let _ = qcow2::decode_l2(&h, e);
    }
    if h.size > DISK {
        return;
    }
    let cs = h.cluster_size() as usize;
    convert(&h, data, chunk_size(data));
    if cs < chunk_size(data) && data.len() > cs {
        convert(&h, data, cs);
    }
});
