//! A `POST /v1/commands` body as the API decodes it (`api::run_command`):
//! JSON read by `api::body` (long strings diverted as they arrive; here
//! from 1 to 48 bytes on, so small inputs take that path, and the body
//! arriving a few bytes a read), which must give serde_json's value or
//! fail where serde_json fails; `name` and `params`, the command looked
//! up (`commands::find`),
//! then the parameter readers that run before or at the start of a
//! command: a flow's tasks, `image_info` (standby.prepare_image and the
//! write_image deploy step's args), the node's root-device hints and skip
//! list, the instance's capabilities, and a lookup response's `config`.
#![no_main]

use ironic_agent::api::body;
use ironic_agent::commands::{self, flow};
use ironic_agent::config::{Config, LookupSettings};
use ironic_agent::hardware::hints;
use ironic_agent::image::info::ImageInfo;
use ironic_agent::image::partition::parse_capabilities;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::io::{self, Read};

/// The body as a connection may give it: at most `.1` bytes a read.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    // the split and the divert threshold from the input, so the corpus
    // stays plain JSON
    let divert = data.len() % 48 + 1;
    let step = data.first().map_or(1, |&b| usize::from(b) % 7 + 1);
    let ours = body::parse_diverting(Trickle(data, step), u64::MAX, divert);
    let reference = serde_json::from_slice::<Value>(data);
    let doc = match (ours, reference) {
        (Ok(a), Ok(b)) => {
            assert!(a == b, "api::body and serde_json read different values");
            a
        }
        (Err(_), Err(_)) => return,
        (a, b) => panic!("api::body: {:?}, serde_json: {:?}", a.err(), b.err()),
    };
    let (Some(name), Some(Value::Object(params))) = (doc.get("name"), doc.get("params")) else {
        return;
    };
    if let Some(name) = name.as_str() {
        let _ = commands::find(name);
    }
    if let Ok(tasks) = flow::tasks(params) {
        for (name, _) in tasks {
            assert!(commands::find(&name).is_ok() && name != "flow.start_flow");
        }
    }
    let step_args = params
        .get("step")
        .and_then(|s| s.get("args"))
        .and_then(Value::as_object);
    for info in [
        params.get("image_info").and_then(Value::as_object),
        step_args
            .and_then(|a| a.get("image_info"))
            .and_then(Value::as_object),
    ]
    .into_iter()
    .flatten()
    {
        let _ = ImageInfo::parse(info, true);
        let _ = ImageInfo::parse(info, false);
    }
    if let Some(node) = params.get("node") {
        if let Ok(Some(h)) = hints::root_device_hints(Some(node), None) {
            let _ = hints::parse_hints(&h);
        }
        let _ = hints::skip_list_hints(node);
        let _ = hints::skip_list_volume_names(node);
        let _ = parse_capabilities(node.get("instance_info"));
        let _ = hints::py_repr(node);
    }
    if let Some(Value::Object(cfg)) = params.get("config") {
        LookupSettings::from_config(&Config::default()).apply(cfg);
    }
});
