//! The server's answer to one plain-UDP HSMAP datagram, without any socket:
//! a 9-byte request gets the 9-byte reply, anything else a 1-byte error
//! (wrong length: malformed; unknown op: unknown op), except an empty
//! datagram, which gets nothing: an error reply is never longer than the
//! request that caused it, so the server cannot amplify. This is what lets the
//! server sit behind a UDP load balancer (nginx) or across an L3 network.

use ipcs_common::wire::{self, hsmap::REPLY_LEN, Reply, Request, Status};

/// Bytes of a UDP answer: a 9-byte reply or a 1-byte error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpAnswer {
    bytes: [u8; REPLY_LEN],
    len: usize,
}

impl UdpAnswer {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Whether this is an error reply rather than a result.
    pub fn is_error(&self) -> bool {
        self.len == 1
    }

    /// Whether nothing is to be sent (the datagram was empty).
    pub fn is_silent(&self) -> bool {
        self.len == 0
    }
}

/// Answers HSMAP datagrams as server `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHandler {
    id: u8,
}

impl UdpHandler {
    pub const fn new(id: u8) -> UdpHandler {
        UdpHandler { id }
    }

    /// The answer to one datagram. The receive slot must be longer than a
    /// request, so a datagram cut to the slot still has the wrong length.
    pub fn handle(&self, datagram: &[u8]) -> UdpAnswer {
        if datagram.is_empty() {
            return UdpAnswer {
                bytes: [0; REPLY_LEN],
                len: 0,
            };
        }
        match Request::parse_bytes(datagram) {
            Ok(request) => UdpAnswer {
                bytes: Reply {
                    result: request.answer(),
                    server_id: self.id,
                }
                .to_bytes(),
                len: REPLY_LEN,
            },
            Err(err) => error_answer(err),
        }
    }
}

fn error_answer(err: wire::Error) -> UdpAnswer {
    let status: Status = err.status();
    let mut bytes = [0u8; REPLY_LEN];
    bytes[0] = status.to_u8();
    UdpAnswer { bytes, len: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcs_common::wire::Response;
    use ipcs_common::Op;

    fn answer(datagram: &[u8]) -> Response {
        Response::parse_bytes(UdpHandler::new(9).handle(datagram).as_bytes()).unwrap()
    }

    #[test]
    fn empty_datagram_gets_nothing() {
        let got = UdpHandler::new(9).handle(&[]);
        assert!(got.is_silent() && !got.is_error());
        assert!(got.as_bytes().is_empty());
    }

    #[test]
    fn request_gets_result_and_id() {
        let request = [0, 0, 0, 50, 0, 0, 5, 57, 2];
        let got = UdpHandler::new(9).handle(&request);
        assert_eq!(got.as_bytes(), &[0, 0, 0, 0, 0, 1, 5, 34, 9]);
        assert!(!got.is_error());
    }

    #[test]
    fn boundary_operands_for_both_ops() {
        for op in Op::ALL {
            for a in [0, u32::MAX] {
                for b in [0, u32::MAX] {
                    let bytes = Request { a, b, op }.to_bytes();
                    assert_eq!(
                        answer(&bytes),
                        Response::Reply(Reply {
                            result: op.apply(a, b),
                            server_id: 9
                        }),
                        "{a} {op} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn wrong_length_is_malformed() {
        let long = [1u8; 64];
        // Length 0 is the one exception: it gets nothing (see above).
        for len in (1..=64).filter(|&l| l != 9) {
            let got = UdpHandler::new(9).handle(&long[..len]);
            assert!(got.is_error());
            assert_eq!(got.as_bytes(), &[1], "length {len}");
        }
    }

    #[test]
    fn unknown_op_is_status_2() {
        for op in [0u8, 3, 0xff] {
            let mut bytes = [0, 0, 0, 1, 0, 0, 0, 2, op];
            bytes[8] = op;
            assert_eq!(answer(&bytes), Response::Error(Status::UnknownOp));
        }
    }
}
