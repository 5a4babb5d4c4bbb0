//! Topic names and filters (MQTT §4.7) from arbitrary text: validation, `$share/` parsing and matching must
//! not panic, and a valid topic name used as a filter matches itself.
#![no_main]

use ferrymq_mqtt_codec::topic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter, name) = text.split_once('\n').unwrap_or((text, text));
    let _ = topic::valid_filter(filter);
    let _ = topic::shared(filter);
    let _ = topic::matches(filter, name);
    if topic::valid_name(name) && topic::valid_filter(name) {
        assert!(topic::matches(name, name), "{name:?} as a filter matches itself");
    }
});
