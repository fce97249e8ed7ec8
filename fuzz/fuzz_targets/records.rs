//! The records of a backend frame on arbitrary bytes: never panics, never
//! yields more records than the bytes can hold, and a frame whose records
//! all parse emits back to the bytes it came from (trailing bytes aside).
#![no_main]

use ipcs_common::wire::frame::{ETHERNET_LEN, RECORD_HEADER_LEN};
use ipcs_common::wire::records::{emit_capability, records, Record, CAPABILITY_RECORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let items: Vec<_> = records(data).collect();
    // The shortest record (an error, or a capability) is 6 bytes.
    assert!(items.len() <= 1 + data.len().saturating_sub(ETHERNET_LEN) / (RECORD_HEADER_LEN + 1));
    if items.is_empty() || items.iter().any(|r| r.is_err()) {
        return;
    }
    let mut buf = vec![0u8; data.len() + 64];
    let mut len = 0;
    for item in &items {
        match item {
            Ok(Record::Frame(repr)) if len == 0 => len = repr.emit_into(&mut buf).len(),
            Ok(Record::Frame(repr)) => len += repr.emit_record(&mut buf[len..]),
            Ok(Record::Capability { max_records, .. }) => {
                assert!(len > 0, "a capability record never comes first");
                len += emit_capability(&mut buf[len..], *max_records);
                // Its tag is not kept: compare everything but those 8 bytes.
                let start = len - CAPABILITY_RECORD_LEN;
                buf[start + 1..start + RECORD_HEADER_LEN]
                    .copy_from_slice(&data[start + 1..start + RECORD_HEADER_LEN]);
            }
            Err(_) => unreachable!(),
        }
    }
    assert_eq!(&buf[..len], &data[..len]);
});
