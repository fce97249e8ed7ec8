//! The server's answer to one backend frame, without any socket: given the
//! server's own MAC and id and the bytes of a received frame, the reply frame
//! to send back (a reply record for each request record, then the server's
//! capability record) or the reason the frame is dropped. The reactor feeds
//! it every frame the raw socket delivers.

use ipcs_common::wire::records::{emit_capability, records, Record, RecordError, MAX_RECORDS};
use ipcs_common::wire::{self, FrameBody, FramePacket, FrameRepr, MacAddr, Reply, Status};

/// Why a received frame gets no reply. Each reason is counted on its own
/// (see [`crate::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Addressed to another station: a bridge floods frames for unknown
    /// MACs to every port, and answering those would duplicate replies.
    NotForUs,
    /// Too short for the header or for its kind's body.
    Short,
    /// The `kind` byte is none of request, reply, error.
    UnknownKind,
    /// Not EtherType 0x88B5 (the socket is bound to it, so only a kernel
    /// that ignores the binding would deliver one).
    WrongEtherType,
    /// A well-formed reply or error frame: servers only answer requests.
    NotARequest,
    /// The source is a broadcast or multicast address, which no request
    /// can legitimately come from and no reply should go to.
    BadSource,
    /// A request record beyond the most one frame may carry (`MAX_RECORDS`,
    /// which this server announces); counted per record.
    TooManyRecords,
}

impl DropReason {
    /// Every reason, in the order stats report them.
    pub const ALL: [DropReason; 7] = [
        DropReason::NotForUs,
        DropReason::Short,
        DropReason::UnknownKind,
        DropReason::WrongEtherType,
        DropReason::NotARequest,
        DropReason::BadSource,
        DropReason::TooManyRecords,
    ];

    /// Position in [`ALL`](Self::ALL), for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Send this frame back (a reply, or an error frame for an unknown op).
    Reply(FrameRepr),
    /// Send nothing.
    Drop(DropReason),
}

/// Answers backend frames as server `id` at `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHandler {
    mac: MacAddr,
    id: u8,
}

impl FrameHandler {
    pub const fn new(mac: MacAddr, id: u8) -> FrameHandler {
        FrameHandler { mac, id }
    }

    pub const fn mac(&self) -> MacAddr {
        self.mac
    }

    pub const fn id(&self) -> u8 {
        self.id
    }

    /// Decides the answer to the first record of `frame` (the bytes as
    /// received, Ethernet header first; trailing bytes are allowed): the
    /// frame a peer that sends one request per frame gets back, without the
    /// capability record. [`answer_frame`](Self::answer_frame) is what the
    /// reactor uses; this view is for the unit tests.
    #[cfg(test)]
    pub(crate) fn handle(&self, frame: &[u8]) -> FrameOutcome {
        let mut first = None;
        let mut out = [0u8; ipcs_common::wire::records::MAX_RECORDS_FRAME_LEN];
        self.answer_frame(frame, &mut out, |outcome| {
            first.get_or_insert(*outcome);
        });
        first.unwrap_or(FrameOutcome::Drop(DropReason::Short))
    }

    /// Answers every request record of `frame` (see
    /// [`records`](ipcs_common::wire::records)) into `out`, which must hold
    /// [`MAX_RECORDS_FRAME_LEN`](ipcs_common::wire::records::MAX_RECORDS_FRAME_LEN) bytes: one reply frame to the sender with a
    /// reply (or error) record per request, in order, then this server's
    /// capability record. Returns its length, 0 when there is nothing to
    /// send. `record` is told the outcome of each record (or the one reason
    /// the whole frame is dropped), for the counters.
    pub fn answer_frame(
        &self,
        frame: &[u8],
        out: &mut [u8],
        mut record: impl FnMut(&FrameOutcome),
    ) -> usize {
        if let Some(reason) = self.check_frame(frame) {
            record(&FrameOutcome::Drop(reason));
            return 0;
        }
        let packet = FramePacket::new_unchecked(frame);
        let mut len = 0;
        let mut answered = 0u8;
        for (i, item) in records(frame).enumerate() {
            // Once the first record shows the frame is IPCS: no reply may go
            // to a broadcast or multicast address.
            if i == 0
                && !matches!(item, Err(RecordError { tag: None, .. }))
                && !packet.src().is_unicast()
            {
                record(&FrameOutcome::Drop(DropReason::BadSource));
                return 0;
            }
            let (tag, body) = match item {
                Ok(Record::Frame(FrameRepr {
                    tag,
                    body: FrameBody::Request(request),
                    ..
                })) => (
                    tag,
                    FrameBody::Reply(Reply {
                        result: request.answer(),
                        server_id: self.id,
                    }),
                ),
                Err(RecordError {
                    tag: Some(tag),
                    error: wire::Error::UnknownOp(_),
                }) => (tag, FrameBody::Error(Status::UnknownOp)),
                Ok(Record::Frame(_)) | Err(RecordError { tag: Some(_), .. }) => {
                    record(&FrameOutcome::Drop(DropReason::NotARequest));
                    continue;
                }
                // Nothing for a server to act on.
                Ok(Record::Capability { .. }) => continue,
                Err(RecordError { tag: None, error }) => {
                    record(&FrameOutcome::Drop(drop_reason(error)));
                    return 0;
                }
            };
            if answered == MAX_RECORDS {
                record(&FrameOutcome::Drop(DropReason::TooManyRecords));
                continue;
            }
            answered += 1;
            let reply = FrameRepr {
                dst: packet.src(),
                src: self.mac,
                tag,
                body,
            };
            record(&FrameOutcome::Reply(reply));
            len += if len == 0 {
                reply.emit_into(out).len()
            } else {
                reply.emit_record(&mut out[len..])
            };
        }
        if len > 0 {
            len += emit_capability(&mut out[len..], MAX_RECORDS);
        }
        len
    }

    /// Why the frame as a whole gets no answer, if it does not.
    fn check_frame(&self, frame: &[u8]) -> Option<DropReason> {
        // The destination is checked before anything else so that flooded
        // frames for other servers are never counted as malformed here.
        if frame.len() < wire::frame::HEADER_LEN {
            if frame.len() >= 6 && frame[..6] != self.mac.0 {
                return Some(DropReason::NotForUs);
            }
            return Some(DropReason::Short);
        }
        if FramePacket::new_unchecked(frame).dst() != self.mac {
            return Some(DropReason::NotForUs);
        }
        None
    }
}

/// The drop reason for a frame whose first record is not IPCS.
fn drop_reason(error: wire::Error) -> DropReason {
    match error {
        wire::Error::UnknownKind(_) => DropReason::UnknownKind,
        wire::Error::EtherType(_) => DropReason::WrongEtherType,
        _ => DropReason::Short,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcs_common::wire::records::MAX_RECORDS_FRAME_LEN;
    use ipcs_common::wire::{Request, ETHERTYPE};
    use ipcs_common::Op;

    const LB: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x10, 0xee, 0x01]);
    const ME: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x10, 0xee, 0x03]);
    const OTHER: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x10, 0xee, 0x04]);

    /// `50 * 1337` with tag 0xa1a2a3a401020304, from the LB to server 3. The byte
    /// layout itself is pinned by common's `frame_tests.rs`; here the frame
    /// comes from the one emitter.
    fn request_frame() -> [u8; 32] {
        frame(
            ME,
            LB,
            FrameBody::Request(Request {
                a: 50,
                b: 1337,
                op: Op::Mul,
            }),
        )
    }

    /// The answer: 66850 from server 3, same tag, back to the LB.
    fn reply_frame() -> [u8; 32] {
        frame(
            LB,
            ME,
            FrameBody::Reply(ipcs_common::wire::Reply {
                result: 66_850,
                server_id: 3,
            }),
        )
    }

    fn frame(dst: MacAddr, src: MacAddr, body: FrameBody) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        FrameRepr {
            dst,
            src,
            tag: 0xa1a2_a3a4_0102_0304,
            body,
        }
        .emit_into(&mut bytes);
        bytes
    }

    fn handler() -> FrameHandler {
        FrameHandler::new(ME, 3)
    }

    fn reply_bytes(outcome: FrameOutcome) -> Vec<u8> {
        match outcome {
            FrameOutcome::Reply(repr) => {
                let mut buf = [0u8; 64];
                repr.emit_into(&mut buf).to_vec()
            }
            FrameOutcome::Drop(reason) => panic!("dropped: {reason:?}"),
        }
    }

    fn request(a: u32, b: u32, op: Op, tag: u64) -> Vec<u8> {
        let repr = FrameRepr {
            dst: ME,
            src: LB,
            tag,
            body: FrameBody::Request(Request { a, b, op }),
        };
        let mut buf = [0u8; 64];
        repr.emit_into(&mut buf).to_vec()
    }

    #[test]
    fn request_gets_reply_bytes_to_sender_with_tag_and_id() {
        assert_eq!(
            reply_bytes(handler().handle(&request_frame())),
            reply_frame()
        );
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut padded = request_frame().to_vec();
        padded.resize(60, 0);
        assert_eq!(reply_bytes(handler().handle(&padded)), reply_frame());
    }

    #[test]
    fn boundary_operands_for_both_ops() {
        for op in Op::ALL {
            for a in [0, 1, u32::MAX] {
                for b in [0, 1, u32::MAX] {
                    let tag = u64::from(a ^ b.rotate_left(7) ^ op as u32) << 16 | 0xabcd;
                    let outcome = handler().handle(&request(a, b, op, tag));
                    let FrameOutcome::Reply(repr) = outcome else {
                        panic!("{a} {op} {b}: {outcome:?}");
                    };
                    assert_eq!(repr.dst, LB);
                    assert_eq!(repr.src, ME);
                    assert_eq!(repr.tag, tag);
                    assert_eq!(
                        repr.body,
                        FrameBody::Reply(Reply {
                            result: op.apply(a, b),
                            server_id: 3,
                        })
                    );
                }
            }
        }
        let max = FrameOutcome::Reply(FrameRepr {
            dst: LB,
            src: ME,
            tag: 0,
            body: FrameBody::Reply(Reply {
                result: 18_446_744_065_119_617_025,
                server_id: 3,
            }),
        });
        assert_eq!(
            handler().handle(&request(u32::MAX, u32::MAX, Op::Mul, 0)),
            max
        );
    }

    #[test]
    fn unknown_op_gets_error_frame_with_status_2() {
        for op in [0u8, 3, 0xff] {
            let mut frame = request_frame();
            frame[31] = op;
            let bytes = reply_bytes(handler().handle(&frame));
            assert_eq!(bytes.len(), 24);
            assert_eq!(&bytes[..6], &LB.0);
            assert_eq!(&bytes[6..12], &ME.0);
            assert_eq!(&bytes[12..14], &ETHERTYPE.to_be_bytes());
            assert_eq!(bytes[14], 3, "kind: error");
            assert_eq!(
                &bytes[15..23],
                &[0xa1, 0xa2, 0xa3, 0xa4, 1, 2, 3, 4],
                "tag echoed"
            );
            assert_eq!(bytes[23], 2, "status: unknown op");
        }
    }

    #[test]
    fn frames_for_other_macs_are_ignored_even_when_malformed() {
        let mut frame = request_frame();
        frame[..6].copy_from_slice(&OTHER.0);
        assert_eq!(
            handler().handle(&frame),
            FrameOutcome::Drop(DropReason::NotForUs)
        );
        frame[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        assert_eq!(
            handler().handle(&frame),
            FrameOutcome::Drop(DropReason::NotForUs)
        );
        assert_eq!(
            handler().handle(&frame[..10]),
            FrameOutcome::Drop(DropReason::NotForUs)
        );
    }

    #[test]
    fn short_frames_are_dropped_at_every_length() {
        for len in 0..request_frame().len() {
            assert_eq!(
                handler().handle(&request_frame()[..len]),
                FrameOutcome::Drop(DropReason::Short),
                "length {len}"
            );
        }
    }

    #[test]
    fn unknown_kind_and_non_requests_are_dropped() {
        for kind in [0u8, 4, 0x80, 0xff] {
            let mut frame = request_frame();
            frame[14] = kind;
            assert_eq!(
                handler().handle(&frame),
                FrameOutcome::Drop(DropReason::UnknownKind),
                "kind {kind}"
            );
        }
        let mut reply = reply_frame();
        reply[..6].copy_from_slice(&ME.0);
        assert_eq!(
            handler().handle(&reply),
            FrameOutcome::Drop(DropReason::NotARequest)
        );
        let mut error = [0u8; 24];
        error[..6].copy_from_slice(&ME.0);
        error[6..12].copy_from_slice(&LB.0);
        error[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        error[14] = 3;
        error[23] = 2;
        assert_eq!(
            handler().handle(&error),
            FrameOutcome::Drop(DropReason::NotARequest)
        );
    }

    #[test]
    fn wrong_ethertype_and_multicast_source_are_dropped() {
        let mut frame = request_frame();
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(
            handler().handle(&frame),
            FrameOutcome::Drop(DropReason::WrongEtherType)
        );
        let mut frame = request_frame();
        frame[6..12].copy_from_slice(&MacAddr::BROADCAST.0);
        assert_eq!(
            handler().handle(&frame),
            FrameOutcome::Drop(DropReason::BadSource)
        );
        frame[6] = 0x01;
        assert_eq!(
            handler().handle(&frame),
            FrameOutcome::Drop(DropReason::BadSource)
        );
    }

    proptest::proptest! {
        /// Any bytes at all: no panic; a reply only to a request for us,
        /// sent back to its source with its tag.
        #[test]
        fn any_bytes_are_answered_or_dropped_safely(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            for_us in proptest::prelude::any::<bool>(),
            like_request in proptest::prelude::any::<bool>(),
        ) {
            if for_us && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(&ME.0);
            }
            if like_request && bytes.len() >= 15 {
                bytes[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
                bytes[14] = 1;
            }
            match handler().handle(&bytes) {
                FrameOutcome::Reply(repr) => {
                    let request = FramePacket::new_checked(&bytes[..]).unwrap();
                    proptest::prop_assert_eq!(request.dst(), ME);
                    proptest::prop_assert_eq!(request.kind_byte(), 1);
                    proptest::prop_assert_eq!(repr.dst, request.src());
                    proptest::prop_assert_eq!(repr.src, ME);
                    proptest::prop_assert_eq!(repr.tag, request.tag());
                    let expected = match Request::parse_bytes(request.body()) {
                        Ok(r) => FrameBody::Reply(Reply { result: r.answer(), server_id: 3 }),
                        Err(_) => FrameBody::Error(Status::UnknownOp),
                    };
                    proptest::prop_assert_eq!(repr.body, expected);
                }
                FrameOutcome::Drop(DropReason::NotForUs) => {
                    proptest::prop_assert!(bytes.len() >= 6 && bytes[..6] != ME.0);
                }
                FrameOutcome::Drop(_) => {}
            }
        }
    }

    /// A frame from the LB with one request record per `(a, b, op, tag)`.
    fn multi_request(requests: &[(u32, u32, u8, u64)]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_RECORDS_FRAME_LEN * 2];
        let mut len = 0;
        for (i, &(a, b, op, tag)) in requests.iter().enumerate() {
            let repr = FrameRepr {
                dst: ME,
                src: LB,
                tag,
                body: FrameBody::Request(Request { a, b, op: Op::Add }),
            };
            len += if i == 0 {
                repr.emit_into(&mut buf).len()
            } else {
                repr.emit_record(&mut buf[len..])
            };
            buf[len - 1] = op; // the op byte, possibly unknown
        }
        buf.truncate(len);
        buf
    }

    fn answer(frame: &[u8]) -> (Vec<u8>, Vec<FrameOutcome>) {
        let mut out = [0u8; MAX_RECORDS_FRAME_LEN];
        let mut outcomes = Vec::new();
        let len = handler().answer_frame(frame, &mut out, |o| outcomes.push(*o));
        (out[..len].to_vec(), outcomes)
    }

    #[test]
    fn every_request_record_is_answered_in_order_then_the_capability() {
        let frame = multi_request(&[
            (50, 1337, 2, 0xa1a2_a3a4_0102_0304),
            (1, 2, 1, 2),
            (3, 4, 9, 3),
        ]);
        let (bytes, outcomes) = answer(&frame);
        let got: Vec<_> = records(&bytes).collect();
        let reply = |tag, result| {
            Ok(Record::Frame(FrameRepr {
                dst: LB,
                src: ME,
                tag,
                body: FrameBody::Reply(Reply {
                    result,
                    server_id: 3,
                }),
            }))
        };
        let unknown_op = Ok(Record::Frame(FrameRepr {
            dst: LB,
            src: ME,
            tag: 3,
            body: FrameBody::Error(Status::UnknownOp),
        }));
        let capability = Ok(Record::Capability {
            src: ME,
            max_records: MAX_RECORDS,
        });
        assert_eq!(
            got,
            [
                reply(0xa1a2_a3a4_0102_0304, 66_850),
                reply(2, 3),
                unknown_op,
                capability
            ]
        );
        assert_eq!(outcomes.len(), 3);
        // The first record is the one-record answer, byte for byte.
        assert_eq!(&bytes[..32], &reply_frame()[..]);
    }

    #[test]
    fn records_beyond_the_announced_most_are_dropped_and_counted() {
        let many: Vec<_> = (0..70u32).map(|i| (i, 1, 1, u64::from(i))).collect();
        let (bytes, outcomes) = answer(&multi_request(&many));
        let answered = records(&bytes)
            .filter(|r| matches!(r, Ok(Record::Frame(_))))
            .count();
        assert_eq!(answered, usize::from(MAX_RECORDS));
        let dropped = outcomes
            .iter()
            .filter(|o| **o == FrameOutcome::Drop(DropReason::TooManyRecords))
            .count();
        assert_eq!(dropped, 70 - usize::from(MAX_RECORDS));
        assert!(bytes.len() <= MAX_RECORDS_FRAME_LEN);
    }

    #[test]
    fn non_request_records_are_dropped_one_by_one() {
        let mut frame = multi_request(&[(1, 1, 1, 1), (2, 2, 1, 2)]);
        frame[32] = 2; // the second record becomes a reply
        let (bytes, outcomes) = answer(&frame);
        assert_eq!(records(&bytes).count(), 2, "one reply and the capability");
        assert_eq!(
            outcomes[1],
            FrameOutcome::Drop(DropReason::NotARequest),
            "{outcomes:?}"
        );
        // A frame that is all non-requests is not answered at all.
        let (bytes, _) = answer(&reply_frame());
        assert!(bytes.is_empty());
    }

    #[test]
    fn reason_indices_match_all() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
