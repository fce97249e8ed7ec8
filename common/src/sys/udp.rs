//! UDP socket options that socket2 does not offer.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

/// Most segments Linux accepts in one UDP GSO send (`UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most datagrams Linux hands over as one coalesced message on a socket
/// with [`set_udp_gro`] (`UDP_MAX_SEGMENTS`: 64 in older kernels, 128 in
/// newer ones; 6.18 takes a 128-segment GSO send and refuses 129). The
/// larger, so a receive slot sized by it is never short.
pub const MAX_GRO_SEGMENTS: usize = 128;

/// Turns on UDP generic segmentation offload (`UDP_SEGMENT`) for every send
/// on `socket`: one send of `n * size` bytes leaves as `n` datagrams of
/// `size` bytes (the last may be shorter), at most [`MAX_GSO_SEGMENTS`] per
/// send, at a fraction of the cost of sending them one by one. The receiver
/// sees ordinary datagrams. `size` 0 turns it off again. Fails on kernels
/// older than 4.18 or sockets that are not UDP.
pub fn set_udp_segment(socket: &impl AsRawFd, size: u16) -> io::Result<()> {
    set_udp_option(socket, libc::UDP_SEGMENT, libc::c_int::from(size))
}

/// Turns on coalesced receive (`UDP_GRO`) for `socket`: datagrams of one
/// sender that travel together (a GSO send that reached this host whole, or
/// datagrams the kernel merged) are handed over as one message of up to
/// the kernel's segment limit, with the segment size in a control message
/// (read it with [`MsgBatch::receive_segment_sizes`](super::MsgBatch::receive_segment_sizes)).
/// Saves the kernel cutting them apart and queueing each on its own, on the
/// sender's CPU time. Fails on kernels older than 5.0 or non-UDP sockets.
pub fn set_udp_gro(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    set_udp_option(socket, libc::UDP_GRO, libc::c_int::from(on))
}

/// Applies `set` to every socket of a group that must behave alike (the
/// workers of one listener, the sockets of one loadgen thread): if one
/// refuses, `undo` runs on all of them and that error is returned.
pub fn set_on_every<S>(
    sockets: &[S],
    set: impl Fn(&S) -> io::Result<()>,
    undo: impl Fn(&S),
) -> io::Result<()> {
    if let Err(e) = sockets.iter().try_for_each(&set) {
        sockets.iter().for_each(undo);
        return Err(e);
    }
    Ok(())
}

/// Sets the `SOL_UDP` option `name` to the int `value`.
fn set_udp_option(socket: &impl AsRawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size;
    // the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            name,
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
    fn one_refusal_undoes_the_option_on_every_socket() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = [&a, &b];
        set_on_every(
            &udp,
            |s| set_udp_gro(&s.as_raw_fd(), true),
            |s| drop(set_udp_gro(*s, false)),
        )
        .unwrap();
        let mixed: [&dyn AsRawFd; 3] = [&a, &tcp, &b];
        let undone = std::cell::Cell::new(0);
        let err = set_on_every(
            &mixed,
            |s| set_udp_gro(&s.as_raw_fd(), true),
            |_| undone.set(undone.get() + 1),
        );
        assert!(err.is_err(), "the TCP socket refuses UDP_GRO");
        assert_eq!(undone.get(), 3, "undone on all, not just those before it");
    }

    #[test]
    fn refused_on_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(set_udp_segment(&listener, 9).is_err());
    }
}
