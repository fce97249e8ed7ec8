//! The registry's line parsers and the incremental list reader on arbitrary
//! bytes: never panic, and whatever parses formats back to a line that
//! parses to the same value (lines with a proof included).
#![no_main]

use ipcs_common::registry_client::ListReader;
use ipcs_common::registry_proto::{ClientLine, RegistryLine, SignedLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = ClientLine::parse_bytes(data) {
        assert_eq!(ClientLine::parse(&line.to_string()), Ok(line));
    }
    if let Ok(line) = SignedLine::parse_bytes(data) {
        assert_eq!(SignedLine::parse(&line.to_string()), Ok(line));
    }
    if let Ok(line) = RegistryLine::parse_bytes(data) {
        assert_eq!(RegistryLine::parse(&line.to_string()), Ok(line));
    }
    let mut reader = ListReader::new(255);
    for chunk in data.chunks(7) {
        let _ = reader.feed(chunk);
    }
});
