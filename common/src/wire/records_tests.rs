use super::*;
use crate::arith::Op;
use crate::wire::frame::tests::{LB, SERVER};
use crate::wire::frame::ETHERTYPE;

/// Two requests to server 3 in one frame: `50 * 1337` (tag 0xa1a2a3a401020304) and
/// `1 + 2` (tag 0xb1b2b3b40a0b0c0d), then Ethernet's zero padding.
const TWO_REQUESTS: [u8; 60] = [
    0x02, 0x42, 0xac, 0x10, 0xee, 0x03, // dst
    0x02, 0x42, 0xac, 0x10, 0xee, 0x01, // src
    0x88, 0xb5, // ethertype
    0x01, 0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x02, 0x03, 0x04, // request, tag
    0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x05, 0x39, 0x02, // 50 * 1337
    0x01, 0xb1, 0xb2, 0xb3, 0xb4, 0x0a, 0x0b, 0x0c, 0x0d, // request, tag
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, // 1 + 2
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
];

/// Server 3's answer: a reply, an error, and its capability record (64).
const ANSWER: [u8; 52] = [
    0x02, 0x42, 0xac, 0x10, 0xee, 0x01, // dst
    0x02, 0x42, 0xac, 0x10, 0xee, 0x03, // src
    0x88, 0xb5, // ethertype
    0x02, 0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x02, 0x03, 0x04, // reply, tag
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05, 0x22, 0x03, // 66850, server 3
    0x03, 0xb1, 0xb2, 0xb3, 0xb4, 0x0a, 0x0b, 0x0c, 0x0d, // error, tag
    0x02, // status 2: unknown operation
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // capability, tag 0
    0x40, // 64 records
];

fn request(tag: u64, a: u32, b: u32, op: Op) -> FrameRepr {
    FrameRepr {
        dst: SERVER,
        src: LB,
        tag,
        body: FrameBody::Request(Request { a, b, op }),
    }
}

fn all(frame: &[u8]) -> Vec<Result<Record, RecordError>> {
    records(frame).collect()
}

#[test]
fn two_requests_then_padding() {
    assert_eq!(
        all(&TWO_REQUESTS),
        [
            Ok(Record::Frame(request(
                0xa1a2_a3a4_0102_0304,
                50,
                1337,
                Op::Mul
            ))),
            Ok(Record::Frame(request(0xb1b2_b3b4_0a0b_0c0d, 1, 2, Op::Add))),
        ]
    );
    // A peer that knows one record per frame reads the first.
    assert_eq!(
        FrameRepr::parse_bytes(&TWO_REQUESTS),
        Ok(request(0xa1a2_a3a4_0102_0304, 50, 1337, Op::Mul))
    );
}

#[test]
fn emitting_records_one_after_another_builds_the_frame() {
    let mut buf = [0u8; 60];
    let first = request(0xa1a2_a3a4_0102_0304, 50, 1337, Op::Mul);
    let mut len = first.emit_into(&mut buf).len();
    len += request(0xb1b2_b3b4_0a0b_0c0d, 1, 2, Op::Add).emit_record(&mut buf[len..]);
    assert_eq!(len, 50);
    assert_eq!(buf, TWO_REQUESTS);
}

#[test]
fn an_answer_with_an_error_and_a_capability() {
    let reply = FrameRepr {
        dst: LB,
        src: SERVER,
        tag: 0xa1a2_a3a4_0102_0304,
        body: FrameBody::Reply(Reply {
            result: 66_850,
            server_id: 3,
        }),
    };
    let error = FrameRepr {
        tag: 0xb1b2_b3b4_0a0b_0c0d,
        body: FrameBody::Error(Status::UnknownOp),
        ..reply
    };
    assert_eq!(
        all(&ANSWER),
        [
            Ok(Record::Frame(reply)),
            Ok(Record::Frame(error)),
            Ok(Record::Capability {
                src: SERVER,
                max_records: 64
            }),
        ]
    );
    let mut buf = [0u8; 52];
    let mut len = reply.emit_into(&mut buf).len();
    len += error.emit_record(&mut buf[len..]);
    len += emit_capability(&mut buf[len..], MAX_RECORDS);
    assert_eq!(len, ANSWER.len());
    assert_eq!(buf, ANSWER);
}

#[test]
fn unknown_ops_are_errors_with_their_tags_and_the_list_goes_on() {
    let mut frame = TWO_REQUESTS;
    frame[31] = 9; // first record's op
    frame[49] = 7; // second record's op
    assert_eq!(
        all(&frame),
        [
            Err(RecordError {
                tag: Some(0xa1a2_a3a4_0102_0304),
                error: Error::UnknownOp(9)
            }),
            Err(RecordError {
                tag: Some(0xb1b2_b3b4_0a0b_0c0d),
                error: Error::UnknownOp(7)
            }),
        ]
    );
}

#[test]
fn a_first_error_record_with_an_unknown_status_does_not_hide_the_rest() {
    // An error record with status 9 first, then the answer's records.
    let mut frame = ANSWER[..14].to_vec();
    frame.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 0, 0, 7, 9]);
    frame.extend_from_slice(&ANSWER[14..]);
    let got = all(&frame);
    assert_eq!(
        got[0],
        Err(RecordError {
            tag: Some(7),
            error: Error::UnknownStatus(9)
        })
    );
    assert_eq!(got.len(), 4, "{got:?}");
}

#[test]
fn a_bad_first_record_ends_everything() {
    assert_eq!(
        all(&TWO_REQUESTS[..24]),
        [Err(RecordError {
            tag: None,
            error: Error::Length {
                expected: "at least 32",
                got: 24
            }
        })]
    );
    let mut frame = TWO_REQUESTS;
    frame[14] = 9; // unknown kind
    assert_eq!(all(&frame).len(), 1);
    frame[14] = CAPABILITY_KIND; // a capability record never comes first
    assert!(matches!(
        all(&frame)[..],
        [Err(RecordError {
            error: Error::UnknownKind(4),
            ..
        })]
    ));
    frame = TWO_REQUESTS;
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    assert!(matches!(
        all(&frame)[..],
        [Err(RecordError {
            error: Error::EtherType(0x0800),
            ..
        })]
    ));
    assert!(all(&[]).len() == 1);
}

#[test]
fn trailing_bytes_that_are_not_a_whole_record_are_ignored() {
    // Cut inside the second record: only the first is read.
    for cut in 32..50 {
        assert_eq!(all(&TWO_REQUESTS[..cut]).len(), 1, "cut at {cut}");
    }
    // Garbage (an unknown kind) after the first record.
    let mut frame = TWO_REQUESTS;
    frame[32] = 0xee;
    assert_eq!(all(&frame).len(), 1);
    // A capability record cut short, or with a tag other than 0.
    assert_eq!(all(&ANSWER[..ANSWER.len() - 1]).len(), 2);
    let mut answer = ANSWER;
    answer[44] = 1;
    assert_eq!(all(&answer).len(), 2);
    assert_eq!(ETHERTYPE, 0x88b5);
}

#[test]
fn the_biggest_frame_fits_its_bound() {
    let mut buf = vec![0u8; MAX_RECORDS_FRAME_LEN];
    let first = request(1, 1, 1, Op::Add);
    let mut len = first.emit_into(&mut buf).len();
    for tag in 2..=u64::from(MAX_RECORDS) {
        len += request(tag, 1, 1, Op::Add).emit_record(&mut buf[len..]);
    }
    len += emit_capability(&mut buf[len..], MAX_RECORDS);
    assert_eq!(len, MAX_RECORDS_FRAME_LEN);
    assert_eq!(all(&buf).len(), usize::from(MAX_RECORDS) + 1);
}
