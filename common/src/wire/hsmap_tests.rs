use proptest::prelude::*;

use super::*;

/// `50 * 1337`, as Timmy's `calc` sends it.
const REQ_50_MUL_1337: [u8; 9] = [0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x05, 0x39, 0x02];
/// `66850` from server 3.
const REPLY_66850_S3: [u8; 9] = [0, 0, 0, 0, 0, 0x01, 0x05, 0x22, 0x03];

#[test]
fn request_parse_worked_example() {
    let req = Request::parse_bytes(&REQ_50_MUL_1337).unwrap();
    assert_eq!(
        req,
        Request {
            a: 50,
            b: 1337,
            op: Op::Mul
        }
    );
    assert_eq!(req.answer(), 66_850);
    assert_eq!(req.to_bytes(), REQ_50_MUL_1337);
}

#[test]
fn request_boundaries_round_trip() {
    for a in [0, 1, u32::MAX - 1, u32::MAX] {
        for b in [0, 1, u32::MAX - 1, u32::MAX] {
            for op in Op::ALL {
                let req = Request { a, b, op };
                assert_eq!(Request::parse_bytes(&req.to_bytes()), Ok(req));
            }
        }
    }
    let max = Request {
        a: u32::MAX,
        b: u32::MAX,
        op: Op::Mul,
    };
    assert_eq!(
        max.to_bytes(),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]
    );
    assert_eq!(max.answer(), 18_446_744_065_119_617_025);
    let max_add = Request { op: Op::Add, ..max };
    assert_eq!(max_add.answer(), 8_589_934_590);
}

#[test]
fn request_every_wrong_length_is_malformed() {
    let bytes = [0x01u8; 65];
    for len in (0..=64).filter(|l| *l != REQUEST_LEN) {
        let err = Request::parse_bytes(&bytes[..len]).unwrap_err();
        assert_eq!(
            err,
            Error::Length {
                expected: "9",
                got: len
            },
            "len {len}"
        );
        assert_eq!(err.status(), Status::Malformed);
    }
}

#[test]
fn request_every_unknown_op_is_rejected() {
    for op in (0..=u8::MAX).filter(|b| *b != 1 && *b != 2) {
        let mut bytes = REQ_50_MUL_1337;
        bytes[8] = op;
        let err = Request::parse_bytes(&bytes).unwrap_err();
        assert_eq!(err, Error::UnknownOp(op));
        assert_eq!(err.status(), Status::UnknownOp);
    }
}

#[test]
fn reply_parse_worked_example() {
    let reply = Reply::parse_bytes(&REPLY_66850_S3).unwrap();
    assert_eq!(
        reply,
        Reply {
            result: 66_850,
            server_id: 3
        }
    );
    assert_eq!(reply.to_bytes(), REPLY_66850_S3);
}

#[test]
fn reply_of_eight_bytes_has_no_server_id() {
    let reply = Reply::parse_bytes(&REPLY_66850_S3[..8]).unwrap();
    assert_eq!(
        reply,
        Reply {
            result: 66_850,
            server_id: 0
        }
    );
}

#[test]
fn reply_boundaries_round_trip() {
    for result in [0, 1, u64::MAX - 1, u64::MAX, 18_446_744_065_119_617_025] {
        for server_id in [0, 1, 255] {
            let reply = Reply { result, server_id };
            assert_eq!(Reply::parse_bytes(&reply.to_bytes()), Ok(reply));
        }
    }
}

#[test]
fn reply_every_wrong_length_is_rejected() {
    let bytes = [0u8; 65];
    for len in (0..=64).filter(|l| *l != 8 && *l != 9) {
        assert!(
            matches!(Reply::parse_bytes(&bytes[..len]), Err(Error::Length { got, .. }) if got == len)
        );
    }
}

#[test]
fn status_codes() {
    for (code, status) in (1u8..=5).zip(Status::ALL) {
        assert_eq!(Status::parse_bytes(&[code]), Ok(status));
        assert_eq!(status.to_bytes(), [code]);
        assert!(!status.describe().is_empty());
    }
    for code in [0u8, 6, 7, 0x80, 0xff] {
        assert_eq!(
            Status::parse_bytes(&[code]),
            Err(Error::UnknownStatus(code))
        );
    }
    for len in [0usize, 2, 9, 64] {
        assert!(matches!(
            Status::parse_bytes(&vec![1; len]),
            Err(Error::Length { .. })
        ));
    }
}

#[test]
fn error_reply_is_never_longer_than_a_request() {
    for status in Status::ALL {
        assert!(status.to_bytes().len() <= REQUEST_LEN);
    }
}

#[test]
fn response_tells_reply_from_error() {
    assert_eq!(
        Response::parse_bytes(&REPLY_66850_S3),
        Ok(Response::Reply(Reply {
            result: 66_850,
            server_id: 3
        }))
    );
    assert_eq!(
        Response::parse_bytes(&[3]),
        Ok(Response::Error(Status::NoServer))
    );
    assert_eq!(Response::parse_bytes(&[9]), Err(Error::UnknownStatus(9)));
    for len in [0usize, 2, 7, 10, 64] {
        assert!(Response::parse_bytes(&vec![0; len]).is_err(), "len {len}");
    }
}

proptest! {
    #[test]
    fn request_round_trips(a: u32, b: u32, mul: bool) {
        let req = Request { a, b, op: if mul { Op::Mul } else { Op::Add } };
        prop_assert_eq!(Request::parse_bytes(&req.to_bytes()), Ok(req));
    }

    #[test]
    fn reply_round_trips(result: u64, server_id: u8) {
        let reply = Reply { result, server_id };
        prop_assert_eq!(Reply::parse_bytes(&reply.to_bytes()), Ok(reply));
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = Request::parse_bytes(&bytes);
        let _ = Reply::parse_bytes(&bytes);
        let _ = Status::parse_bytes(&bytes);
        let _ = Response::parse_bytes(&bytes);
    }
}
