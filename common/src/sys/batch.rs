//! Fixed buffers for batched datagram I/O (`recvmmsg`/`sendmmsg`), so that
//! one wake-up of a reactor moves many datagrams or frames with one system
//! call. Nothing is allocated after [`MsgBatch::new`].
//!
//! Coalesced receive: on a UDP socket with `UDP_GRO` on
//! ([`set_udp_gro`](super::udp::set_udp_gro)), the kernel may hand over
//! several datagrams of one sender as one message, with their size in a
//! control message; a batch made with
//! [`receive_segment_sizes`](MsgBatch::receive_segment_sizes) reads that
//! size, and [`Datagram::datagrams`] splits the message again.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

/// One received datagram or frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The bytes received (at most the slot length).
    pub data: &'a [u8],
    /// The sender, for IP sockets; `None` for raw packet sockets.
    pub addr: Option<SocketAddr>,
    /// The datagram was longer than the slot and was cut.
    pub truncated: bool,
    /// With coalesced receive: the message holds several datagrams of
    /// this many bytes each (the last may be shorter). `None`: one.
    pub segment: Option<usize>,
}

impl<'a> Datagram<'a> {
    /// The datagrams this message holds, in the order they were sent: one
    /// (possibly empty) unless it was [coalesced](Self::segment).
    pub fn datagrams(&self) -> Segments<'a> {
        Segments {
            rest: Some(self.data),
            size: self.segment.unwrap_or(usize::MAX).max(1),
        }
    }
}

/// Iterator over the datagrams of one received message
/// ([`Datagram::datagrams`]).
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    /// `None` once the last datagram was given out.
    rest: Option<&'a [u8]>,
    size: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        if rest.len() <= self.size {
            self.rest = None;
            return Some(rest);
        }
        let (head, tail) = rest.split_at(self.size);
        self.rest = Some(tail);
        Some(head)
    }
}

/// Room for one control message carrying an `int` (`CMSG_SPACE(4)` is 24
/// on 64-bit Linux), as 8-byte words so the buffer is aligned for
/// `cmsghdr`.
type ControlSlot = [u64; 4];

/// A control buffer per slot, and the segment size each received slot
/// reported (0: not coalesced).
struct SegmentSizes {
    buffers: Box<[ControlSlot]>,
    sizes: Box<[usize]>,
}
/// What one [`MsgBatch::send_to`] call achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Messages the kernel accepted.
    pub sent: usize,
    /// Messages the kernel refused with an error other than "try again";
    /// they are dropped so one bad destination cannot wedge the batch.
    pub failed: usize,
    /// The last such error, for logging.
    pub last_error: Option<io::ErrorKind>,
    /// Its errno, for callers that must tell `EIO` from `EINVAL`.
    pub last_os_error: Option<i32>,
    /// Datagrams in the refused messages: with a
    /// [segment size](MsgBatch::set_segment_size), a message of `n` bytes
    /// would have left as `ceil(n / size)` datagrams; else one each.
    pub failed_datagrams: usize,
}

/// `capacity` slots of `slot_len` bytes each, with the address and header
/// arrays `recvmmsg`/`sendmmsg` need, wired together once.
///
/// Receive: [`recv_from`](Self::recv_from) fills slots, read them with
/// [`get`](Self::get)/[`iter`](Self::iter). Send: [`push`](Self::push) or
/// [`push_with`](Self::push_with) fill slots, [`send_to`](Self::send_to)
/// flushes them; what the kernel could not take yet stays queued.
pub struct MsgBatch {
    slot_len: usize,
    buf: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Slots in use: received, or queued to send.
    filled: usize,
    /// Send side: slots before this one have been sent.
    sent: usize,
    /// The socket's UDP GSO segment size, if any (0: none), for counting.
    segment: usize,
    /// Coalesced receive only.
    control: Option<SegmentSizes>,
}

// SAFETY: the raw pointers inside `iovecs` and `hdrs` point only into this
// struct's own boxed slices (buffer, addresses, iovecs, control buffers),
// which move with it; nothing is shared.
unsafe impl Send for MsgBatch {}

impl MsgBatch {
    /// Allocates `capacity` slots of `slot_len` bytes.
    pub fn new(capacity: usize, slot_len: usize) -> MsgBatch {
        assert!(capacity > 0 && slot_len > 0, "empty batch");
        let capacity = capacity.min(1024);
        let mut buf = vec![0u8; capacity * slot_len].into_boxed_slice();
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data for
        // which all-zero bytes are a valid value.
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = (0..capacity)
            .map(|i| libc::iovec {
                iov_base: buf[i * slot_len..].as_mut_ptr() as *mut libc::c_void,
                iov_len: slot_len,
            })
            .collect();
        // SAFETY: as above, all-zero mmsghdr is valid.
        let mut hdrs: Box<[libc::mmsghdr]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            hdr.msg_hdr.msg_iov = &mut iovecs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name =
                &mut addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
        }
        MsgBatch {
            slot_len,
            buf,
            addrs,
            iovecs,
            hdrs,
            filled: 0,
            sent: 0,
            segment: 0,
            control: None,
        }
    }

    /// Makes [`recv_from`](Self::recv_from) read the `UDP_GRO` segment size
    /// of each message, for a socket with
    /// [`set_udp_gro`](super::udp::set_udp_gro) on. Size the slots for the
    /// longest coalesced message expected: what does not fit is cut and
    /// flagged [`truncated`](Datagram::truncated).
    pub fn receive_segment_sizes(&mut self) {
        let n = self.capacity();
        self.control = Some(SegmentSizes {
            buffers: vec![[0u64; 4]; n].into(),
            sizes: vec![0usize; n].into(),
        });
    }

    /// Tells the batch that the socket it sends on cuts messages into
    /// datagrams of `size` bytes (UDP GSO), so failures are counted in
    /// datagrams. 0: one datagram per message.
    pub fn set_segment_size(&mut self, size: usize) {
        self.segment = size;
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Slots in use (received, or queued and not yet sent).
    pub fn len(&self) -> usize {
        self.filled - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.filled == self.capacity()
    }

    /// Forgets every slot.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.sent = 0;
    }

    /// Receives as many datagrams as are queued, up to the capacity, without
    /// blocking. Returns how many (at least one) or `WouldBlock`.
    pub fn recv_from(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.clear();
        for i in 0..self.capacity() {
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_flags = 0;
            if let Some(control) = self.control.as_mut() {
                hdr.msg_control = control.buffers[i].as_mut_ptr() as *mut libc::c_void;
                hdr.msg_controllen = mem::size_of::<ControlSlot>();
            }
            self.iovecs[i].iov_len = self.slot_len;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at this batch's own iovec, buffer slot
        // and address storage, sized as the header says; they outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.capacity() as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        if let Some(control) = self.control.as_mut() {
            for (i, size) in control.sizes.iter_mut().enumerate().take(self.filled) {
                *size = gro_segment_size(&self.hdrs[i].msg_hdr);
            }
        }
        Ok(self.filled)
    }

    /// Received slot `i` (`i < len()`).
    pub fn get(&self, i: usize) -> Datagram<'_> {
        assert!(i < self.filled, "slot {i} not received");
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.slot_len);
        let start = i * self.slot_len;
        Datagram {
            data: &self.buf[start..start + len],
            addr: sockaddr_to_std(&self.addrs[i], hdr.msg_hdr.msg_namelen),
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            segment: match &self.control {
                Some(control) if control.sizes[i] > 0 => Some(control.sizes[i]),
                _ => None,
            },
        }
    }

    /// Every received slot, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.filled).map(move |i| self.get(i))
    }

    /// Queues a copy of `data` for `addr` (`None` for connected or raw
    /// sockets). Returns `false`, queuing nothing, when the batch is full or
    /// `data` does not fit a slot.
    pub fn push(&mut self, data: &[u8], addr: Option<SocketAddr>) -> bool {
        if data.len() > self.slot_len {
            return false;
        }
        self.push_with(addr, |slot| {
            slot[..data.len()].copy_from_slice(data);
            data.len()
        })
    }

    /// Queues a message written in place by `write`, which gets the whole
    /// slot and returns how many bytes it wrote. Returns `false` when full.
    pub fn push_with(
        &mut self,
        addr: Option<SocketAddr>,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        self.push_slot(addr, write, true)
    }

    /// As [`push_with`](Self::push_with), but a `write` that returns 0
    /// (nothing to send) queues nothing.
    pub fn push_unless_empty(
        &mut self,
        addr: Option<SocketAddr>,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        self.push_slot(addr, write, false)
    }

    fn push_slot(
        &mut self,
        addr: Option<SocketAddr>,
        write: impl FnOnce(&mut [u8]) -> usize,
        keep_empty: bool,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.filled;
        let start = i * self.slot_len;
        let len = write(&mut self.buf[start..start + self.slot_len]).min(self.slot_len);
        if len == 0 && !keep_empty {
            return true;
        }
        self.iovecs[i].iov_len = len;
        let hdr = &mut self.hdrs[i].msg_hdr;
        // A slot that received with a control buffer sends none.
        hdr.msg_control = ptr::null_mut();
        hdr.msg_controllen = 0;
        match addr {
            Some(addr) => {
                hdr.msg_name =
                    &mut self.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
                hdr.msg_namelen = std_to_sockaddr(addr, &mut self.addrs[i]);
            }
            None => {
                hdr.msg_name = ptr::null_mut();
                hdr.msg_namelen = 0;
            }
        }
        self.filled += 1;
        true
    }

    /// Appends `data` to queued slot `i`, which must still be unsent (with
    /// UDP GSO on the socket, several replies to one address then leave in
    /// one send). Returns `false`, changing nothing, when slot `i` is not
    /// queued or has no room left.
    pub fn append(&mut self, i: usize, data: &[u8]) -> bool {
        if i < self.sent || i >= self.filled {
            return false;
        }
        let len = self.iovecs[i].iov_len;
        if len + data.len() > self.slot_len {
            return false;
        }
        let start = i * self.slot_len + len;
        self.buf[start..start + data.len()].copy_from_slice(data);
        self.iovecs[i].iov_len = len + data.len();
        true
    }

    /// Index the next [`push`](Self::push) will fill.
    pub fn next_slot(&self) -> usize {
        self.filled
    }

    /// Sends what is queued without blocking. Stops at `WouldBlock`, leaving
    /// the rest queued (wait for the socket to be writable, then call again);
    /// once everything is out the batch is empty again.
    pub fn send_to(&mut self, socket: &impl AsRawFd) -> SendReport {
        let mut report = SendReport::default();
        while self.sent < self.filled {
            let pending = self.filled - self.sent;
            // SAFETY: headers sent..filled point at this batch's own slots,
            // iovecs and addresses, set up by push_with; they outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs[self.sent..].as_mut_ptr(),
                    pending as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                report.sent += n as usize;
                self.sent += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => continue,
                kind => {
                    // The first pending message is the one the kernel refused.
                    report.failed += 1;
                    report.last_error = Some(kind);
                    report.last_os_error = err.raw_os_error();
                    let len = self.iovecs[self.sent].iov_len;
                    report.failed_datagrams += match self.segment {
                        0 => 1,
                        size => len.div_ceil(size).max(1),
                    };
                    self.sent += 1;
                }
            }
        }
        if self.sent == self.filled {
            self.clear();
        }
        report
    }
}

/// The segment size in a received header's `UDP_GRO` control message, or 0
/// if it has none.
fn gro_segment_size(hdr: &libc::msghdr) -> usize {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return 0;
    }
    // SAFETY: the kernel filled `msg_control` (this batch's own aligned
    // buffer) with `msg_controllen` bytes of control messages; the CMSG
    // macros walk only within that length, and a data read happens only for
    // a UDP_GRO message, which carries one int (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_UDP
                && c.cmsg_type == libc::UDP_GRO
                && c.cmsg_len as usize
                    >= libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize
            {
                let size = ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                return usize::try_from(size).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    0
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET if len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family AF_INET with a long enough length: the storage
            // holds a sockaddr_in, and sockaddr_storage is aligned for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6)
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr type; we write a whole sockaddr_in.
            let sin =
                unsafe { &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6)
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn udp_batch_round_trip_keeps_order_addresses_and_lengths() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut out = MsgBatch::new(16, 64);
        for i in 0..10u8 {
            assert!(out.push(&vec![i; i as usize], Some(to)));
        }
        let report = out.send_to(&a);
        assert_eq!(report.sent, 10);
        assert!(out.is_empty());

        let mut inb = MsgBatch::new(16, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            match inb.recv_from(&b) {
                Ok(_) => got.extend(inb.iter().map(|d| (d.data.to_vec(), d.addr, d.truncated))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 10 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 10);
        for (i, (data, addr, truncated)) in got.into_iter().enumerate() {
            assert_eq!(data, vec![i as u8; i]);
            assert_eq!(addr, Some(a.local_addr().unwrap()));
            assert!(!truncated);
        }
    }

    #[test]
    fn oversized_datagram_is_cut_and_flagged() {
        let (a, b) = pair();
        a.send_to(&[7u8; 100], b.local_addr().unwrap()).unwrap();
        let mut inb = MsgBatch::new(4, 16);
        let mut n = 0;
        for _ in 0..100 {
            if let Ok(k) = inb.recv_from(&b) {
                n = k;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(n, 1);
        let d = inb.get(0);
        assert_eq!(d.data, &[7u8; 16]);
        assert!(d.truncated);
    }

    #[test]
    fn empty_socket_would_block_and_full_batch_refuses() {
        let (_a, b) = pair();
        let mut inb = MsgBatch::new(4, 16);
        assert_eq!(
            inb.recv_from(&b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let mut out = MsgBatch::new(2, 4);
        assert!(out.push(b"ab", None));
        assert!(!out.push(b"toolong", None));
        assert!(out.push(b"cd", None));
        assert!(!out.push(b"ef", None));
        assert!(out.is_full());
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn appended_messages_leave_as_separate_datagrams_with_gso() {
        let (tx, rx) = pair();
        crate::sys::set_udp_segment(&tx, 3).unwrap();
        let to = Some(rx.local_addr().unwrap());
        let mut batch = MsgBatch::new(4, 9);
        let first = batch.next_slot();
        assert!(batch.push(b"abc", to));
        assert!(
            batch.push(b"x", to),
            "shorter than the segment: one datagram"
        );
        assert!(batch.append(first, b"def"));
        assert!(batch.append(first, b"ghi"));
        assert!(!batch.append(first, b"jkl"), "slot full at 9 bytes");
        assert!(!batch.append(3, b"abc"), "slot 3 is not queued");
        assert_eq!(batch.send_to(&tx).sent, 2);
        assert!(!batch.append(first, b"z"), "sent slots take nothing more");
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        for _ in 0..4 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.sort();
        assert_eq!(got, ["abc", "def", "ghi", "x"]);
    }

    /// Receives until `want` messages arrived (or 2 s passed).
    fn receive_messages(
        inb: &mut MsgBatch,
        rx: &UdpSocket,
        want: usize,
    ) -> Vec<(Vec<u8>, Option<usize>)> {
        let mut got = Vec::new();
        for _ in 0..2000 {
            match inb.recv_from(rx) {
                Ok(_) => got.extend(inb.iter().map(|d| (d.data.to_vec(), d.segment))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() >= want {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn gso_send_arrives_coalesced_with_gro_and_splits_into_its_datagrams() {
        let (tx, rx) = pair();
        crate::sys::set_udp_gro(&rx, true).unwrap();
        let to = rx.local_addr().unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        plain.send_to(b"lone", to).unwrap();
        crate::sys::set_udp_segment(&tx, 9).unwrap();
        let payload: Vec<u8> = (0..31u8).collect();
        tx.send_to(&payload, to).unwrap();

        let mut inb = MsgBatch::new(4, 64);
        inb.receive_segment_sizes();
        let got = receive_messages(&mut inb, &rx, 2);
        assert_eq!(got.len(), 2, "one plain message, one coalesced: {got:?}");
        assert_eq!(got[0], (b"lone".to_vec(), None));
        assert_eq!(got[1], (payload.clone(), Some(9)));
        let d = Datagram {
            data: &got[1].0,
            addr: None,
            truncated: false,
            segment: got[1].1,
        };
        assert_eq!(
            d.datagrams().map(<[u8]>::len).collect::<Vec<_>>(),
            [9, 9, 9, 4]
        );
        assert_eq!(d.datagrams().collect::<Vec<_>>().concat(), payload);

        // Without asking for segment sizes the same message reads as one
        // datagram, which is why a GRO socket needs both.
        tx.send_to(&payload, to).unwrap();
        let mut blind = MsgBatch::new(4, 64);
        let got = receive_messages(&mut blind, &rx, 1);
        assert_eq!(got, [(payload, None)]);
    }

    #[test]
    fn a_message_splits_into_whole_segments_and_an_empty_one_is_one_datagram() {
        let split = |data: &[u8], segment| -> Vec<Vec<u8>> {
            Datagram {
                data,
                addr: None,
                truncated: false,
                segment,
            }
            .datagrams()
            .map(<[u8]>::to_vec)
            .collect()
        };
        assert_eq!(split(b"", None), [b"".to_vec()]);
        assert_eq!(split(b"abc", None), [b"abc".to_vec()]);
        assert_eq!(
            split(b"abcdef", Some(3)),
            [b"abc".to_vec(), b"def".to_vec()]
        );
        assert_eq!(split(b"abcdefg", Some(3)).len(), 3);
        assert_eq!(
            split(b"ab", Some(0)),
            [b"a".to_vec(), b"b".to_vec()],
            "0 is never a size the kernel reports; no panic"
        );
    }

    #[test]
    fn refused_message_is_dropped_not_retried_forever() {
        let (a, b) = pair();
        let mut out = MsgBatch::new(4, 16);
        // An IPv6 destination on an IPv4 socket: the kernel refuses it.
        assert!(out.push(b"x", Some("[::1]:9".parse().unwrap())));
        assert!(out.push(b"y", Some(b.local_addr().unwrap())));
        let report = out.send_to(&a);
        assert_eq!(report.failed, 1);
        assert_eq!(report.failed_datagrams, 1);
        assert!(report.last_os_error.is_some());
        assert_eq!(report.sent, 1);
        assert!(out.is_empty());

        // With a segment size, a refused message counts the datagrams it
        // would have become.
        out.set_segment_size(3);
        assert!(out.push(b"1234567", Some("[::1]:9".parse().unwrap())));
        assert!(out.push(b"z", Some("[::1]:9".parse().unwrap())));
        let report = out.send_to(&a);
        assert_eq!((report.failed, report.failed_datagrams), (2, 4));
    }
}
