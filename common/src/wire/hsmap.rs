//! HSMAP datagrams between a client and the load balancer (and, inside a
//! backend frame, between the load balancer and a server).
//!
//! ```text
//! request (9 bytes)      reply (9 bytes; 8 accepted)    error (1 byte)
//! +----+----+----+       +--------+----+                +--------+
//! | a  | b  | op |       | result | id |                | status |
//! +----+----+----+       +--------+----+                +--------+
//!  u32  u32  u8            u64     u8                     u8
//! ```

use core::fmt;

use super::{read_u32, read_u64, Error, Result};
use crate::arith::Op;

mod field {
    use crate::wire::Field;
    pub const A: Field = 0..4;
    pub const B: Field = 4..8;
    pub const OP: usize = 8;
    pub const RESULT: Field = 0..8;
    pub const SERVER_ID: usize = 8;
}

/// Length of an HSMAP request.
pub const REQUEST_LEN: usize = 9;
/// Length of an HSMAP reply as IPCS sends it.
pub const REPLY_LEN: usize = 9;
/// Length of a reply from a server that reports no id (accepted by clients).
pub const SHORT_REPLY_LEN: usize = 8;
/// Length of an HSMAP error reply.
pub const ERROR_LEN: usize = 1;

/// A typed view of an HSMAP request.
#[derive(Debug, Clone)]
pub struct RequestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short one.
    pub const fn new_unchecked(buffer: T) -> Self {
        RequestPacket { buffer }
    }

    /// Wraps a buffer that is exactly [`REQUEST_LEN`] bytes long.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fails unless the buffer is exactly one request long: a datagram with
    /// trailing bytes is malformed, not a request with padding.
    pub fn check_len(&self) -> Result<()> {
        match self.buffer.as_ref().len() {
            REQUEST_LEN => Ok(()),
            got => Err(Error::Length { expected: "9", got }),
        }
    }

    pub fn a(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::A)
    }

    pub fn b(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::B)
    }

    pub fn op_byte(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RequestPacket<T> {
    pub fn set_a(&mut self, value: u32) {
        self.buffer.as_mut()[field::A].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_b(&mut self, value: u32) {
        self.buffer.as_mut()[field::B].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_op_byte(&mut self, value: u8) {
        self.buffer.as_mut()[field::OP] = value;
    }
}

/// A well-formed HSMAP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    pub a: u32,
    pub b: u32,
    pub op: Op,
}

impl Request {
    /// Parses a checked request packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &RequestPacket<T>) -> Result<Request> {
        packet.check_len()?;
        let op = Op::from_u8(packet.op_byte()).ok_or(Error::UnknownOp(packet.op_byte()))?;
        Ok(Request {
            a: packet.a(),
            b: packet.b(),
            op,
        })
    }

    /// Parses a datagram: it must be exactly 9 bytes with a known op.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Request> {
        Self::parse(&RequestPacket::new_unchecked(bytes))
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        REQUEST_LEN
    }

    /// Writes the request into a buffer of exactly [`REQUEST_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut RequestPacket<T>) {
        packet.set_a(self.a);
        packet.set_b(self.b);
        packet.set_op_byte(self.op.to_u8());
    }

    /// The request as its 9 wire bytes.
    pub fn to_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut bytes = [0u8; REQUEST_LEN];
        self.emit(&mut RequestPacket::new_unchecked(&mut bytes[..]));
        bytes
    }

    /// The correct answer to this request.
    pub const fn answer(&self) -> u64 {
        self.op.apply(self.a, self.b)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.a, self.op, self.b)
    }
}

/// A typed view of an HSMAP reply.
#[derive(Debug, Clone)]
pub struct ReplyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReplyPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ReplyPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// A reply is 9 bytes, or 8 from a server that reports no id.
    pub fn check_len(&self) -> Result<()> {
        match self.buffer.as_ref().len() {
            SHORT_REPLY_LEN | REPLY_LEN => Ok(()),
            got => Err(Error::Length {
                expected: "8 or 9",
                got,
            }),
        }
    }

    pub fn result(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::RESULT)
    }

    /// The server's id; `0` when the reply carries none.
    pub fn server_id(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::SERVER_ID)
            .copied()
            .unwrap_or(0)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReplyPacket<T> {
    pub fn set_result(&mut self, value: u64) {
        self.buffer.as_mut()[field::RESULT].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_server_id(&mut self, value: u8) {
        self.buffer.as_mut()[field::SERVER_ID] = value;
    }
}

/// An HSMAP reply: the result and the id of the server that computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reply {
    pub result: u64,
    /// `0` means the server did not report an id.
    pub server_id: u8,
}

impl Reply {
    pub fn parse<T: AsRef<[u8]>>(packet: &ReplyPacket<T>) -> Result<Reply> {
        packet.check_len()?;
        Ok(Reply {
            result: packet.result(),
            server_id: packet.server_id(),
        })
    }

    pub fn parse_bytes(bytes: &[u8]) -> Result<Reply> {
        Self::parse(&ReplyPacket::new_unchecked(bytes))
    }

    pub const fn buffer_len(&self) -> usize {
        REPLY_LEN
    }

    /// Writes the 9-byte form into a buffer of exactly [`REPLY_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ReplyPacket<T>) {
        packet.set_result(self.result);
        packet.set_server_id(self.server_id);
    }

    pub fn to_bytes(&self) -> [u8; REPLY_LEN] {
        let mut bytes = [0u8; REPLY_LEN];
        self.emit(&mut ReplyPacket::new_unchecked(&mut bytes[..]));
        bytes
    }
}

/// The status code of an HSMAP error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// The request's length is not 9.
    Malformed = 1,
    /// The request's op byte is neither 1 nor 2.
    UnknownOp = 2,
    /// The load balancer knows no live server.
    NoServer = 3,
    /// No server answered within the retry budget.
    TimedOut = 4,
    /// The load balancer's table of requests in flight is full.
    Overloaded = 5,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Malformed,
        Status::UnknownOp,
        Status::NoServer,
        Status::TimedOut,
        Status::Overloaded,
    ];

    pub const fn from_u8(byte: u8) -> Option<Status> {
        match byte {
            1 => Some(Status::Malformed),
            2 => Some(Status::UnknownOp),
            3 => Some(Status::NoServer),
            4 => Some(Status::TimedOut),
            5 => Some(Status::Overloaded),
            _ => None,
        }
    }

    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// Parses a 1-byte error reply.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Status> {
        match bytes {
            [byte] => Status::from_u8(*byte).ok_or(Error::UnknownStatus(*byte)),
            _ => Err(Error::Length {
                expected: "1",
                got: bytes.len(),
            }),
        }
    }

    pub const fn to_bytes(self) -> [u8; ERROR_LEN] {
        [self as u8]
    }

    /// A short name, for metric labels and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Malformed => "malformed",
            Status::UnknownOp => "unknown_op",
            Status::NoServer => "no_server",
            Status::TimedOut => "timed_out",
            Status::Overloaded => "overloaded",
        }
    }

    /// What the status means, in words for a person.
    pub const fn describe(self) -> &'static str {
        match self {
            Status::Malformed => "the request was malformed (it must be exactly 9 bytes)",
            Status::UnknownOp => "the operation is not supported (only + and *)",
            Status::NoServer => "no server is available right now",
            Status::TimedOut => "no server answered in time",
            Status::Overloaded => "the service is overloaded, try again shortly",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Anything a client may receive in answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    Reply(Reply),
    Error(Status),
}

impl Response {
    /// Tells a reply (8 or 9 bytes) from an error (1 byte) by length.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Response> {
        match bytes.len() {
            ERROR_LEN => Status::parse_bytes(bytes).map(Response::Error),
            SHORT_REPLY_LEN | REPLY_LEN => Reply::parse_bytes(bytes).map(Response::Reply),
            got => Err(Error::Length {
                expected: "1, 8 or 9",
                got,
            }),
        }
    }
}

#[cfg(test)]
#[path = "hsmap_tests.rs"]
mod tests;
