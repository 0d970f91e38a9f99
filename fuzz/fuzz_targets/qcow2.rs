//! A qcow2 image streamed into the converter (`image::qcow2`) the way
//! `image::stream::write_qcow2` drives it: the header vetted, the look at
//! the tables (`tables_trail_data`), forward mode, and on
//! `ConvError::Backward` prefetched mode with the tables read by "Range
//! requests" over the same bytes; the guest written to a 32 MiB target on
//! a memfd. Chunks are whole clusters, as the stream cuts them, once the
//! stream's own chunk size and once a cluster each (so that compressed
//! clusters straddle chunks). Memory and time must stay bounded whatever
//! the header and tables claim. Each pass runs twice, once writing whole
//! data runs through `take_run` as the agent does and once feeding every
//! chunk: the outcomes, and the guest bytes after a taken run, must agree.
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

/// Two targets: the agent's way (whole data runs through `take_run`) and
/// every chunk fed, compared whenever a run was taken.
static FILES: OnceLock<[File; 2]> = OnceLock::new();

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

/// Feed the image chunk by chunk; `take`: a chunk that is one run of data
/// clusters is written whole at its guest offset, as `image::stream` does.
/// Counts the chunks taken in `taken`.
fn run(
    conv: &mut Converter,
    t: &mut Target,
    data: &[u8],
    chunk: usize,
    rr: Option<&mut RangeReader>,
    take: bool,
    taken: &mut usize,
) -> Result<(), ConvError> {
    let mut rr = rr;
    let mut off = 0usize;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        if let Some(r) = rr.as_mut() {
            conv.load_due(t, end as u64, &mut **r)?;
        }
        let bytes = &data[off..end];
        match take.then(|| conv.take_run(off as u64, bytes)).transpose()? {
            Some(Some(guest)) => {
                t.write_at(guest, bytes)?;
                *taken += 1;
            }
            _ => conv.feed(t, off as u64, bytes)?,
        }
        off = end;
    }
    conv.finish(t)
}

/// One pass into `file`: `None` when prefetched mode could not read the
/// tables. The target is committed after a successful pass.
fn pass(
    h: &Header,
    data: &[u8],
    chunk: usize,
    file: &File,
    take: bool,
    prefetched: bool,
    taken: &mut usize,
) -> Option<Result<(), ConvError>> {
    let mut t = image_target(file, DISK);
    let mut rr = ranges(data);
    let mut conv = Converter::new(h.clone()).with_inflate_threads(0);
    let r = if prefetched {
        conv.prefetch(&mut t, &mut rr).ok()?;
        run(&mut conv, &mut t, data, chunk, Some(&mut rr), take, taken)
    } else {
        run(&mut conv, &mut t, data, chunk, None, take, taken)
    };
    assert!(conv.waiting() <= qcow2::MAX_EVENTS);
    if r.is_ok() {
        t.commit().expect("commit to the memfd");
    }
    Some(r)
}

/// The agent's way and the all-fed way must agree: the same outcome, and
/// the same guest bytes when a run was taken.
fn both(h: &Header, data: &[u8], chunk: usize, prefetched: bool) -> Option<Result<(), ConvError>> {
    let files = FILES.get_or_init(|| [memfd(), memfd()]);
    let mut taken = 0;
    let a = pass(h, data, chunk, &files[0], true, prefetched, &mut taken);
    let b = pass(h, data, chunk, &files[1], false, prefetched, &mut 0);
    let kind = |r: &Option<Result<(), ConvError>>| {
        r.as_ref()
            .map(|r| r.as_ref().err().map(std::mem::discriminant))
    };
    assert_eq!(kind(&a), kind(&b), "take_run changed the outcome");
    if taken > 0 && matches!(a, Some(Ok(()))) {
        use std::os::unix::fs::FileExt;
        let mut x = vec![0u8; 1 << 20];
        let mut y = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < h.size {
            let n = (h.size - off).min(1 << 20) as usize;
            files[0].read_exact_at(&mut x[..n], off).unwrap();
            files[1].read_exact_at(&mut y[..n], off).unwrap();
            assert!(x[..n] == y[..n], "take_run wrote other bytes near {off}");
            off += n as u64;
        }
    }
    a
}

fn convert(h: &Header, data: &[u8], chunk: usize) {
    let mut rr = ranges(data);
    let first = &data[..chunk.min(data.len())];
    let trailing = matches!(qcow2::tables_trail_data(h, first, &mut rr), Ok(true));
    if !trailing
        && !matches!(
            both(h, data, chunk, false),
            Some(Err(ConvError::Backward { .. }))
        )
    {
        return;
    }
    // prefetched mode never goes back
    assert!(
        !matches!(
            both(h, data, chunk, true),
            Some(Err(ConvError::Backward { .. }))
        ),
        "prefetched mode reported Backward"
    );
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
