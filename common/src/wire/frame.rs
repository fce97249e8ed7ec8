//! The backend frame: how HSMAP travels between the load balancer and a
//! server, as an Ethernet II frame on the backend bridge.
//!
//! ```text
//!  0      6      12     14     15     23
//! +------+------+------+------+------+----------------------------+
//! | dst  | src  | type | kind | tag  | body                       |
//! +------+------+------+------+------+----------------------------+
//!  MAC    MAC    88b5    u8    u64    request 9 | reply 9 | status 1
//! ```
//!
//! `kind` is 1 (request), 2 (reply) or 3 (error). The `tag` is chosen by the
//! load balancer and echoed verbatim by the server, so the load balancer can
//! match a reply to the request it sent. It is 64 bits wide so that it can
//! carry, besides the slot it names, 32 bits keyed with a secret of the load
//! balancer: a frame forged by someone on the bridge who has not seen the
//! request cannot guess them (docs/SECURITY.md). Bytes after the body are ignored:
//! Ethernet pads short frames to 60 bytes on real links.

use core::fmt;
use core::str::FromStr;

use super::hsmap::{Reply, ReplyPacket, Request, RequestPacket, Status, REPLY_LEN, REQUEST_LEN};
use super::{read_u64, Error, Result};

mod field {
    use crate::wire::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const KIND: usize = 14;
    pub const TAG: Field = 15..23;
    pub const BODY: usize = 23;
}

/// The IPCS EtherType (IEEE 802 local experimental range).
pub const ETHERTYPE: u16 = 0x88B5;
/// Bytes before the body: Ethernet header, kind and tag.
pub const HEADER_LEN: usize = field::BODY;
/// The Ethernet header alone: where the first record starts.
pub const ETHERNET_LEN: usize = field::KIND;
/// A record's kind and tag, before its body.
pub const RECORD_HEADER_LEN: usize = field::BODY - field::KIND;
/// Where the tag's last (least significant, big-endian) byte sits in a
/// frame: the load balancer puts its worker index there, and the kernel's
/// fanout hands each reply to the worker that byte names.
pub const TAG_LOW_BYTE_OFFSET: usize = field::TAG.end - 1;
/// The longest frame of one record (a request or reply); frames of several
/// records are longer (see [`records`](super::records)).
pub const MAX_FRAME_LEN: usize = HEADER_LEN + REQUEST_LEN;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Whether frames to this address reach exactly one station: neither
    /// broadcast nor multicast (low bit of the first octet clear).
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex octets like aa:bb:cc:dd:ee:ff)")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Accepts exactly six colon-separated two-digit hex octets.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacParseError);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        match parts.next() {
            None => Ok(MacAddr(octets)),
            Some(_) => Err(MacParseError),
        }
    }
}

/// What a backend frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Reply = 2,
    Error = 3,
}

impl Kind {
    pub const fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            _ => None,
        }
    }

    /// Length of the body this kind carries.
    pub const fn body_len(self) -> usize {
        match self {
            Kind::Request => REQUEST_LEN,
            Kind::Reply => REPLY_LEN,
            Kind::Error => 1,
        }
    }
}

/// A typed view of a backend frame.
#[derive(Debug, Clone)]
pub struct FramePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FramePacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        FramePacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fails unless the buffer holds the header, a known kind and that
    /// kind's whole body. Trailing bytes are allowed (Ethernet padding).
    /// After this, every accessor is in bounds.
    pub fn check_len(&self) -> Result<()> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(Error::Length {
                expected: "at least 23",
                got: bytes.len(),
            });
        }
        let kind =
            Kind::from_u8(bytes[field::KIND]).ok_or(Error::UnknownKind(bytes[field::KIND]))?;
        if bytes.len() < HEADER_LEN + kind.body_len() {
            return Err(Error::Length {
                expected: match kind {
                    Kind::Request | Kind::Reply => "at least 32",
                    Kind::Error => "at least 24",
                },
                got: bytes.len(),
            });
        }
        Ok(())
    }

    pub fn dst(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(mac)
    }

    pub fn src(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(mac)
    }

    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn kind_byte(&self) -> u8 {
        self.buffer.as_ref()[field::KIND]
    }

    pub fn tag(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::TAG)
    }

    /// The body, exactly as long as the kind requires (padding cut off).
    pub fn body(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        let len = Kind::from_u8(bytes[field::KIND]).map_or(0, Kind::body_len);
        &bytes[field::BODY..field::BODY + len]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FramePacket<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_kind(&mut self, kind: Kind) {
        self.buffer.as_mut()[field::KIND] = kind as u8;
    }

    pub fn set_tag(&mut self, tag: u64) {
        self.buffer.as_mut()[field::TAG].copy_from_slice(&tag.to_be_bytes());
    }

    /// The body region for `len` bytes; the caller has sized the buffer.
    pub fn body_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY..field::BODY + len]
    }
}

/// What a backend frame carries, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameBody {
    Request(Request),
    Reply(Reply),
    Error(Status),
}

impl FrameBody {
    pub const fn kind(&self) -> Kind {
        match self {
            FrameBody::Request(_) => Kind::Request,
            FrameBody::Reply(_) => Kind::Reply,
            FrameBody::Error(_) => Kind::Error,
        }
    }
}

/// A well-formed backend frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub tag: u64,
    pub body: FrameBody,
}

impl FrameRepr {
    /// Parses a frame. A request with an unknown op yields
    /// [`Error::UnknownOp`]; the caller can still read `src` and `tag` from
    /// the packet to answer it with an error frame.
    pub fn parse<T: AsRef<[u8]>>(packet: &FramePacket<T>) -> Result<FrameRepr> {
        packet.check_len()?;
        if packet.ethertype() != ETHERTYPE {
            return Err(Error::EtherType(packet.ethertype()));
        }
        let body = packet.body();
        let body = match Kind::from_u8(packet.kind_byte()) {
            Some(Kind::Request) => {
                FrameBody::Request(Request::parse(&RequestPacket::new_unchecked(body))?)
            }
            // A server always reports its id, so a reply body is the 9-byte form.
            Some(Kind::Reply) => FrameBody::Reply(Reply::parse(&ReplyPacket::new_unchecked(body))?),
            Some(Kind::Error) => FrameBody::Error(Status::parse_bytes(body)?),
            None => return Err(Error::UnknownKind(packet.kind_byte())),
        };
        Ok(FrameRepr {
            dst: packet.dst(),
            src: packet.src(),
            tag: packet.tag(),
            body,
        })
    }

    /// Parses a frame straight from bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<FrameRepr> {
        Self::parse(&FramePacket::new_unchecked(bytes))
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.kind().body_len()
    }

    /// Writes the frame into a buffer of at least
    /// [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FramePacket<T>) {
        packet.set_dst(self.dst);
        packet.set_src(self.src);
        packet.set_ethertype(ETHERTYPE);
        self.emit_record(&mut packet.buffer.as_mut()[field::KIND..]);
    }

    /// The length of this frame's record (kind, tag, body) without the
    /// Ethernet header: what appending it to another frame adds (see
    /// [`records`](super::records)).
    pub const fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body.kind().body_len()
    }

    /// Writes just the record (kind, tag, body) at the start of `buf`, which
    /// must hold [`record_len`](Self::record_len) bytes; returns that length.
    pub fn emit_record(&self, buf: &mut [u8]) -> usize {
        let len = self.record_len();
        let record = &mut buf[..len];
        record[0] = self.body.kind() as u8;
        record[1..RECORD_HEADER_LEN].copy_from_slice(&self.tag.to_be_bytes());
        let body = &mut record[RECORD_HEADER_LEN..];
        match self.body {
            FrameBody::Request(request) => request.emit(&mut RequestPacket::new_unchecked(body)),
            FrameBody::Reply(reply) => reply.emit(&mut ReplyPacket::new_unchecked(body)),
            FrameBody::Error(status) => body[0] = status.to_u8(),
        }
        len
    }

    /// Emits into `buf` and returns the frame's bytes.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit_into<'a>(&self, buf: &'a mut [u8]) -> &'a [u8] {
        let len = self.buffer_len();
        self.emit(&mut FramePacket::new_unchecked(&mut buf[..len]));
        &buf[..len]
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
pub(crate) mod tests;
