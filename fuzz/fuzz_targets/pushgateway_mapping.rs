//! The whole Pushgateway ingest path short of the store: grouping key from the path,
//! body parsed as text or protobuf, the group checked, then `map_group` onto pools.
//!
//! Input layout: `format_byte path NUL body`; an even first byte picks the text format,
//! an odd one delimited protobuf. A path that does not parse falls back to a fixed key,
//! so bodies are mapped either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::pushgateway::group::Group;
use poolwatch::ingest::pushgateway::mapping::map_group;
use poolwatch::ingest::pushgateway::path::{parse_push_path, GroupingKey};
use poolwatch::ingest::pushgateway::{parse_body, BodyFormat, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (path, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let format = if selector % 2 == 0 {
        BodyFormat::Text
    } else {
        BodyFormat::ProtobufDelimited
    };
    let key = parse_push_path(&String::from_utf8_lossy(path))
        .unwrap_or_else(|_| GroupingKey::new("fuzz", &[("instance", "pod-1")]));
    let Ok(families) = parse_body(format, body, &Limits::default()) else {
        return;
    };
    let group = Group::new(families);
    let _ = group.check_consistent();
    if let Ok(mapped) = map_group(&key, group.families(), "fuzz-default", 1000) {
        assert!(
            mapped.pools.windows(2).all(|w| w[0].key < w[1].key),
            "pools not sorted and unique by key"
        );
    }
});
