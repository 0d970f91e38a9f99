//! `image_info` as Ironic sends it (`image::info::ImageInfo::parse`, IPA's
//! `_validate_image_info`), then the checksum it names
//! (`image::checksum::resolve_with`), with the input's
//! `"_checksum_file"` string standing for a fetched checksum file.
#![no_main]

use ironic_agent::error::AgentError;
use ironic_agent::image::checksum;
use ironic_agent::image::info::ImageInfo;
use ironic_agent_fuzz::json_object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(m) = json_object(data) else {
        return;
    };
    let file = m.get("_checksum_file").and_then(|v| v.as_str());
    for md5 in [true, false] {
        let Ok(info) = ImageInfo::parse(&m, md5) else {
            continue;
        };
        let _ = info.is_partition();
        let mut fetch = |_url: &str| -> Result<String, AgentError> {
            file.map(str::to_string)
                .ok_or_else(|| AgentError::download("fuzz", "no checksum file"))
        };
        if let Ok(e) = checksum::resolve_with(&info, md5, &mut fetch) {
            let _ = e.matches("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        }
    }
});
