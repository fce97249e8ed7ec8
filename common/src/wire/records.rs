//! Several HSMAP records in one backend frame.
//!
//! A backend frame is an Ethernet header followed by one or more records,
//! each `kind | tag | body` exactly as the single-record frame of
//! [`frame`](super::frame) lays out after its Ethernet header:
//!
//! ```text
//!  0      14                    14+r1                  ...
//! +------+---------------------+----------------------+-----+---------+
//! | eth  | kind tag body (r1)  | kind tag body (r2)   | ... | 0 0 0 ..|
//! +------+---------------------+----------------------+-----+---------+
//! ```
//!
//! The list ends at the end of the frame, at a kind byte of 0 (Ethernet
//! pads short frames with zeros), or at anything that is not a whole record
//! of a known kind: such trailing bytes are ignored, as the single-record
//! format always allowed. So a frame with one record is exactly the old
//! frame, and a peer that knows only the old format reads the first record
//! and ignores the rest.
//!
//! Because such a peer would silently answer only the first of several
//! requests, a load balancer sends several request records to a server only
//! after the server said it reads them: a server appends a **capability
//! record** (kind [`CAPABILITY_KIND`], tag 0, one body byte: the most
//! request records it reads from one frame) to every reply frame it sends.
//! The first record of a frame is never a capability record.
//!
//! Why: each frame costs a trip through the bridge, a veth pair, a socket
//! wake-up and a system call on both ends; on a busy balancer that per-frame
//! work is most of its time (docs/BENCHMARKS.md). Records that share a frame
//! share that cost.

use super::frame::{FramePacket, FrameRepr, Kind, MacAddr, ETHERNET_LEN, RECORD_HEADER_LEN};
use super::hsmap::{Reply, Request, Status};
use super::{read_u64, Error, FrameBody};

/// The kind byte of a capability record.
pub const CAPABILITY_KIND: u8 = 4;
/// A capability record's length: kind, tag, one byte.
pub const CAPABILITY_RECORD_LEN: usize = RECORD_HEADER_LEN + 1;
/// The most request records an IPCS server reads from one frame (and so
/// announces). A frame of that many requests is 14 + 64 * 18 = 1166 bytes.
pub const MAX_RECORDS: u8 = 64;
/// The longest Ethernet frame (1500-byte MTU) without the FCS: what a
/// receiver must make room for to see a frame whole.
pub const MAX_ETHERNET_FRAME_LEN: usize = 1514;
/// The longest frame IPCS sends with records: a full frame of
/// [`MAX_RECORDS`] request or reply records and a capability record.
pub const MAX_RECORDS_FRAME_LEN: usize =
    ETHERNET_LEN + MAX_RECORDS as usize * (RECORD_HEADER_LEN + 9) + CAPABILITY_RECORD_LEN;

/// One record of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A request, reply or error, with the frame's addresses.
    Frame(FrameRepr),
    /// The sender reads up to `max_records` request records from a frame.
    Capability { src: MacAddr, max_records: u8 },
}

/// A record that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError {
    /// The record's tag, when the record got that far (a request with an
    /// unknown operation is answered with an error record for this tag).
    pub tag: Option<u64>,
    pub error: Error,
}

/// The records of a frame, in order (see the module documentation).
///
/// The first record is checked as [`FrameRepr::parse`] checks a frame: an
/// error there in the header (short, unknown kind, wrong EtherType) is
/// yielded and ends the iteration, since the frame is not IPCS. A record,
/// first or later, whose body does not parse (an unknown operation or
/// status) is yielded as an error with its tag and the iteration goes on;
/// trailing bytes that are not a whole record of a known kind (or a
/// capability record with a tag other than 0) end it quietly.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
    dst: MacAddr,
    src: MacAddr,
    done: bool,
}

/// Iterates over the records of `frame` (the bytes as received).
pub fn records(frame: &[u8]) -> Records<'_> {
    let (dst, src) = if frame.len() >= ETHERNET_LEN {
        let packet = FramePacket::new_unchecked(frame);
        (packet.dst(), packet.src())
    } else {
        (MacAddr::default(), MacAddr::default())
    };
    Records {
        bytes: frame,
        offset: ETHERNET_LEN,
        dst,
        src,
        done: false,
    }
}

impl Records<'_> {
    fn first(&mut self) -> Result<Record, RecordError> {
        match FrameRepr::parse_bytes(self.bytes) {
            Ok(repr) => {
                self.offset += repr.record_len();
                Ok(Record::Frame(repr))
            }
            // A body that does not parse (an unknown op or status): parse
            // checked the header, the kind and the body's length first, so
            // the tag is known and the list goes on, as for later records.
            Err(error @ (Error::UnknownOp(_) | Error::UnknownStatus(_))) => {
                let packet = FramePacket::new_unchecked(self.bytes);
                let kind = Kind::from_u8(packet.kind_byte()).unwrap_or(Kind::Request);
                self.offset += RECORD_HEADER_LEN + kind.body_len();
                Err(RecordError {
                    tag: Some(packet.tag()),
                    error,
                })
            }
            Err(error) => {
                self.done = true;
                Err(RecordError { tag: None, error })
            }
        }
    }

    fn later(&mut self) -> Option<Result<Record, RecordError>> {
        let rest = &self.bytes[self.offset..];
        let kind_byte = *rest.first()?;
        if kind_byte == CAPABILITY_KIND {
            let record = rest.get(..CAPABILITY_RECORD_LEN)?;
            // Its tag is always 0: anything else is not a capability record
            // (non-zero Ethernet padding, say) and ends the list.
            if record[1..RECORD_HEADER_LEN].iter().any(|b| *b != 0) {
                return None;
            }
            self.offset += CAPABILITY_RECORD_LEN;
            return Some(Ok(Record::Capability {
                src: self.src,
                max_records: record[RECORD_HEADER_LEN],
            }));
        }
        // Kind 0 (padding) and unknown kinds end the list.
        let kind = Kind::from_u8(kind_byte)?;
        let record = rest.get(..RECORD_HEADER_LEN + kind.body_len())?;
        self.offset += record.len();
        let tag = read_u64(record, 1..RECORD_HEADER_LEN);
        let body = &record[RECORD_HEADER_LEN..];
        let body = match kind {
            Kind::Request => Request::parse_bytes(body).map(FrameBody::Request),
            Kind::Reply => Reply::parse_bytes(body).map(FrameBody::Reply),
            Kind::Error => Status::parse_bytes(body).map(FrameBody::Error),
        };
        Some(match body {
            Ok(body) => Ok(Record::Frame(FrameRepr {
                dst: self.dst,
                src: self.src,
                tag,
                body,
            })),
            Err(error) => Err(RecordError {
                tag: Some(tag),
                error,
            }),
        })
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = if self.offset == ETHERNET_LEN {
            Some(self.first())
        } else {
            self.later()
        };
        if item.is_none() {
            self.done = true;
        }
        item
    }
}

/// Writes a capability record announcing `max_records` at the start of
/// `buf` (at least [`CAPABILITY_RECORD_LEN`] bytes); returns its length.
pub fn emit_capability(buf: &mut [u8], max_records: u8) -> usize {
    let record = &mut buf[..CAPABILITY_RECORD_LEN];
    record[0] = CAPABILITY_KIND;
    record[1..RECORD_HEADER_LEN].fill(0);
    record[RECORD_HEADER_LEN] = max_records;
    CAPABILITY_RECORD_LEN
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
