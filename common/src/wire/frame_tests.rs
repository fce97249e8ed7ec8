use proptest::prelude::*;

use super::*;
use crate::arith::Op;

/// The test MACs, also used by the records tests.
pub(crate) const LB: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x10, 0xee, 0x01]);
pub(crate) const SERVER: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x10, 0xee, 0x03]);

/// `50 * 1337` with tag 0xa1a2a3a401020304, from the LB to server 3.
const REQUEST_FRAME: [u8; 32] = [
    0x02, 0x42, 0xac, 0x10, 0xee, 0x03, // dst
    0x02, 0x42, 0xac, 0x10, 0xee, 0x01, // src
    0x88, 0xb5, // ethertype
    0x01, // kind: request
    0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x02, 0x03, 0x04, // tag
    0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x05, 0x39, 0x02, // 50 * 1337
];

/// The answer, `66850` from server 3, same tag.
const REPLY_FRAME: [u8; 32] = [
    0x02, 0x42, 0xac, 0x10, 0xee, 0x01, // dst
    0x02, 0x42, 0xac, 0x10, 0xee, 0x03, // src
    0x88, 0xb5, // ethertype
    0x02, // kind: reply
    0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x02, 0x03, 0x04, // tag
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05, 0x22, 0x03, // 66850, server 3
];

fn request_repr() -> FrameRepr {
    FrameRepr {
        dst: SERVER,
        src: LB,
        tag: 0xa1a2_a3a4_0102_0304,
        body: FrameBody::Request(Request {
            a: 50,
            b: 1337,
            op: Op::Mul,
        }),
    }
}

#[test]
fn request_frame_parse_and_emit() {
    assert_eq!(FrameRepr::parse_bytes(&REQUEST_FRAME), Ok(request_repr()));
    let mut buf = [0u8; 64];
    assert_eq!(request_repr().emit_into(&mut buf), &REQUEST_FRAME[..]);
}

#[test]
fn reply_frame_parse_and_emit() {
    let repr = FrameRepr {
        dst: LB,
        src: SERVER,
        tag: 0xa1a2_a3a4_0102_0304,
        body: FrameBody::Reply(Reply {
            result: 66_850,
            server_id: 3,
        }),
    };
    assert_eq!(FrameRepr::parse_bytes(&REPLY_FRAME), Ok(repr));
    let mut buf = [0u8; 32];
    assert_eq!(repr.emit_into(&mut buf), &REPLY_FRAME[..]);
}

#[test]
fn error_frame_round_trip() {
    for status in Status::ALL {
        let repr = FrameRepr {
            dst: LB,
            src: SERVER,
            tag: u64::MAX,
            body: FrameBody::Error(status),
        };
        let mut buf = [0u8; 24];
        let bytes = repr.emit_into(&mut buf);
        assert_eq!(bytes.len(), 24);
        assert_eq!(bytes[14], 3);
        assert_eq!(bytes[23], status.to_u8());
        assert_eq!(FrameRepr::parse_bytes(bytes), Ok(repr));
    }
}

#[test]
fn trailing_padding_is_accepted() {
    let mut padded = [0xeeu8; 60];
    padded[..32].copy_from_slice(&REQUEST_FRAME);
    assert_eq!(FrameRepr::parse_bytes(&padded), Ok(request_repr()));
    let packet = FramePacket::new_checked(&padded[..]).unwrap();
    assert_eq!(packet.body().len(), 9);
}

#[test]
fn every_truncation_is_rejected() {
    for len in 0..REQUEST_FRAME.len() {
        let err = FrameRepr::parse_bytes(&REQUEST_FRAME[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Length { got, .. } if got == len),
            "len {len}: {err:?}"
        );
        let err = FrameRepr::parse_bytes(&REPLY_FRAME[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Length { got, .. } if got == len),
            "len {len}: {err:?}"
        );
    }
    let mut error_frame = [0u8; 24];
    FrameRepr {
        dst: LB,
        src: SERVER,
        tag: 7,
        body: FrameBody::Error(Status::UnknownOp),
    }
    .emit_into(&mut error_frame);
    assert!(FrameRepr::parse_bytes(&error_frame[..23]).is_err());
    let parsed = FrameRepr::parse_bytes(&error_frame).unwrap();
    assert_eq!(parsed.body, FrameBody::Error(Status::UnknownOp));
    assert_eq!(parsed.tag, 7);
}

#[test]
fn every_unknown_kind_is_rejected() {
    for kind in (0..=u8::MAX).filter(|k| !(1..=3).contains(k)) {
        let mut frame = [0u8; 64];
        frame[..32].copy_from_slice(&REQUEST_FRAME);
        frame[14] = kind;
        assert_eq!(
            FrameRepr::parse_bytes(&frame),
            Err(Error::UnknownKind(kind))
        );
    }
}

#[test]
fn unknown_op_keeps_src_and_tag_readable() {
    let mut frame = REQUEST_FRAME;
    frame[31] = 9;
    assert_eq!(FrameRepr::parse_bytes(&frame), Err(Error::UnknownOp(9)));
    let packet = FramePacket::new_checked(&frame[..]).unwrap();
    assert_eq!(packet.src(), LB);
    assert_eq!(packet.tag(), 0xa1a2_a3a4_0102_0304);
}

#[test]
fn unknown_status_and_ethertype_are_rejected() {
    let mut frame = [0u8; 24];
    FrameRepr {
        dst: LB,
        src: SERVER,
        tag: 7,
        body: FrameBody::Error(Status::UnknownOp),
    }
    .emit_into(&mut frame);
    frame[23] = 0;
    assert_eq!(FrameRepr::parse_bytes(&frame), Err(Error::UnknownStatus(0)));
    let mut frame = REQUEST_FRAME;
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(
        FrameRepr::parse_bytes(&frame),
        Err(Error::EtherType(0x0800))
    );
}

#[test]
fn mac_addresses() {
    assert_eq!("02:42:ac:10:ee:03".parse(), Ok(SERVER));
    assert_eq!("02:42:AC:10:EE:03".parse(), Ok(SERVER));
    assert_eq!(SERVER.to_string(), "02:42:ac:10:ee:03");
    for bad in [
        "",
        "02:42:ac:10:ee",
        "02:42:ac:10:ee:03:04",
        "2:42:ac:10:ee:03",
        "02-42-ac-10-ee-03",
        "0g:42:ac:10:ee:03",
        "+2:42:ac:10:ee:03",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
    assert!(SERVER.is_unicast());
    assert!(!MacAddr::BROADCAST.is_unicast());
}

fn any_body() -> impl Strategy<Value = FrameBody> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            prop::sample::select(Op::ALL.to_vec())
        )
            .prop_map(|(a, b, op)| FrameBody::Request(Request { a, b, op })),
        (any::<u64>(), any::<u8>())
            .prop_map(|(result, server_id)| FrameBody::Reply(Reply { result, server_id })),
        prop::sample::select(Status::ALL.to_vec()).prop_map(FrameBody::Error),
    ]
}

proptest! {
    #[test]
    fn frame_round_trips(dst: [u8; 6], src: [u8; 6], tag: u64, body in any_body(), pad in 0usize..40) {
        let repr = FrameRepr { dst: MacAddr(dst), src: MacAddr(src), tag, body };
        let mut buf = [0u8; 80];
        let len = repr.emit_into(&mut buf).len();
        prop_assert_eq!(FrameRepr::parse_bytes(&buf[..len + pad]), Ok(repr));
    }

    #[test]
    fn frame_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(packet) = FramePacket::new_checked(&bytes[..]) {
            let _ = (packet.dst(), packet.src(), packet.tag(), packet.body());
        }
        let _ = FrameRepr::parse_bytes(&bytes);
    }
}

#[test]
fn the_tag_low_byte_offset_names_the_last_tag_byte() {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut repr = request_repr();
    repr.tag = 0x0506_0708_0102_03fe;
    repr.emit_into(&mut buf);
    assert_eq!(TAG_LOW_BYTE_OFFSET, 22);
    assert_eq!(buf[TAG_LOW_BYTE_OFFSET], 0xfe);
}
