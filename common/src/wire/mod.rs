//! Wire formats, in the style of smoltcp's `wire` module: for each format a
//! typed view `XxxPacket<T: AsRef<[u8]>>` over a caller's buffer, with a
//! `field` module of byte ranges and checked accessors, and a high-level
//! representation (`Request`, `Reply`, `FrameRepr`, ...) with `parse` and
//! `emit`. Parsing never panics and never allocates; emitting writes into the
//! caller's buffer. All integers are big-endian.
//!
//! * [`hsmap`]: the client-facing HSMAP datagrams (request, reply, error).
//! * [`frame`]: the backend Ethernet II frame (EtherType 0x88B5) that carries
//!   HSMAP between the load balancer and the servers.
//! * [`records`]: several records (requests, replies) in one backend frame.

pub mod frame;
pub mod hsmap;
pub mod records;

pub use frame::{FrameBody, FramePacket, FrameRepr, Kind, MacAddr, ETHERTYPE, TAG_LOW_BYTE_OFFSET};
pub use hsmap::{Reply, ReplyPacket, Request, RequestPacket, Response, Status};

/// A byte range inside a packet.
pub type Field = core::ops::Range<usize>;

/// Why a buffer is not a valid packet of the format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer's length is not one the format allows.
    #[error("bad length {got} (expected {expected})")]
    Length { expected: &'static str, got: usize },
    /// The operation byte names no known operation.
    #[error("unknown operation {0}")]
    UnknownOp(u8),
    /// The frame's `kind` byte names no known kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The status byte names no known status code.
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
    /// The Ethernet frame does not carry the IPCS EtherType.
    #[error("ethertype {0:#06x} is not 0x88b5")]
    EtherType(u16),
}

impl Error {
    /// The status a load balancer or server answers a malformed request with.
    pub fn status(self) -> Status {
        match self {
            Error::UnknownOp(_) => Status::UnknownOp,
            _ => Status::Malformed,
        }
    }
}

/// Result of parsing a packet.
pub type Result<T> = core::result::Result<T, Error>;

pub(crate) fn read_u32(bytes: &[u8], field: Field) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[field]);
    u32::from_be_bytes(raw)
}

pub(crate) fn read_u64(bytes: &[u8], field: Field) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[field]);
    u64::from_be_bytes(raw)
}
