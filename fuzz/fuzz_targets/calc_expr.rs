//! calc's expression parser on arbitrary text: never panics, every rejection
//! explains itself on one line, and what it accepts is within range.
#![no_main]

use ipcs_client::expr::parse_expr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_expr(text) {
        Ok(request) => assert_eq!(request.answer(), request.op.apply(request.a, request.b)),
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});
