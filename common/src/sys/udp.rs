//! UDP socket options that socket2 does not offer.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

/// Most segments Linux accepts in one UDP GSO send (`UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Turns on UDP generic segmentation offload (`UDP_SEGMENT`) for every send
/// on `socket`: one send of `n * size` bytes leaves as `n` datagrams of
/// `size` bytes (the last may be shorter), at most [`MAX_GSO_SEGMENTS`] per
/// send, at a fraction of the cost of sending them one by one. The receiver
/// sees ordinary datagrams. `size` 0 turns it off again. Fails on kernels
/// older than 4.18 or sockets that are not UDP.
pub fn set_udp_segment(socket: &impl AsRawFd, size: u16) -> io::Result<()> {
    let value = libc::c_int::from(size);
    // SAFETY: `value` is a live c_int and the length passed is its size;
    // the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    super::check_rc(rc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn one_send_leaves_as_many_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        set_udp_segment(&tx, 9).unwrap();
        let payload: Vec<u8> = (0..31u8).collect();
        assert_eq!(tx.send(&payload).unwrap(), 31);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lens, [9, 9, 9, 4]);
        assert_eq!(got.concat(), payload);
        // Off again: one send, one datagram.
        set_udp_segment(&tx, 0).unwrap();
        tx.send(&payload).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 31);
    }

    #[test]
    fn refused_on_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(set_udp_segment(&listener, 9).is_err());
    }
}
