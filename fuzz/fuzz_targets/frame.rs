//! The backend frame parser on arbitrary bytes: never panics, and a parsed
//! frame emits back to the bytes it came from (padding aside).
#![no_main]

use ipcs_common::wire::{FramePacket, FrameRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = FramePacket::new_checked(data) {
        let _ = (packet.dst(), packet.src(), packet.tag(), packet.body());
    }
    if let Ok(repr) = FrameRepr::parse_bytes(data) {
        let mut buf = [0u8; 64];
        let emitted = repr.emit_into(&mut buf);
        assert_eq!(emitted, &data[..emitted.len()]);
    }
});
