//! Every HSMAP parser on arbitrary bytes: never panics, and whatever parses
//! emits back to the same bytes.
#![no_main]

use ipcs_common::wire::{Reply, Request, Response, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::parse_bytes(data) {
        assert_eq!(&request.to_bytes()[..], data);
    }
    if let Ok(reply) = Reply::parse_bytes(data) {
        if data.len() == 9 {
            assert_eq!(&reply.to_bytes()[..], data);
        }
    }
    if let Ok(status) = Status::parse_bytes(data) {
        assert_eq!(&status.to_bytes()[..], data);
    }
    let _ = Response::parse_bytes(data);
});
