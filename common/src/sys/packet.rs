//! A raw `AF_PACKET` socket bound to one interface and one EtherType, so the
//! kernel hands it only IPCS backend frames, never the rest of the traffic on
//! the bridge.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::iface::Interface;

/// A non-blocking `SOCK_RAW` packet socket: frames are sent and received with
/// their Ethernet header.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    interface: Interface,
}

/// Offset that makes a classic BPF load address the link-layer (Ethernet)
/// header, wherever the kernel's data pointer stands when the program runs.
const SKF_LL_OFF: i32 = -0x0020_0000;

impl PacketSocket {
    /// Opens a raw socket that receives only frames of `ethertype` arriving
    /// on `interface`, and sends frames out of it. Frames this socket (or any
    /// other on the host) transmits are not looped back to it.
    pub fn bind(interface: &Interface, ethertype: u16) -> io::Result<PacketSocket> {
        // Protocol 0 receives nothing until bind() names the EtherType and
        // interface together; opening with the EtherType would queue frames
        // from every interface in the window before bind().
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = PacketSocket {
            fd,
            interface: interface.clone(),
        };
        // Without this the socket would also see every frame it sends itself,
        // doubling the work on the hot path (Linux >= 4.20; older kernels
        // just keep the copies, which the parsers drop as not addressed to us).
        let _ = socket.set_int_option(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ethertype.to_be();
        addr.sll_ifindex = interface.index as i32;
        // SAFETY: addr is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    /// The interface the socket is bound to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Asks for kernel buffers of the given sizes. Tries the privileged
    /// `*BUFFORCE` options first so a root process is not capped by
    /// `net.core.rmem_max`.
    pub fn set_buffer_sizes(&self, recv: usize, send: usize) -> io::Result<()> {
        let recv = recv.min(i32::MAX as usize) as i32;
        let send = send.min(i32::MAX as usize) as i32;
        self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, recv)
            .or_else(|_| self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF, recv))?;
        self.set_int_option(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, send)
            .or_else(|_| self.set_int_option(libc::SOL_SOCKET, libc::SO_SNDBUF, send))
    }

    /// Joins `PACKET_FANOUT` group `group` in BPF mode: the kernel delivers
    /// each received frame to exactly one member, the one whose position in
    /// the group equals `frame[byte_offset] % members`. Members are numbered
    /// in the order they joined, so worker `i` must join `i`-th.
    ///
    /// A group id is shared by every socket of the network namespace, so a
    /// fixed or guessed id can merge two programs' groups: the first member
    /// should come from [`create_fanout_by_byte`](Self::create_fanout_by_byte)
    /// and the others join the id it returns.
    pub fn join_fanout_by_byte(
        &self,
        group: u16,
        byte_offset: u16,
        members: u32,
    ) -> io::Result<()> {
        self.join_fanout(group, 0, byte_offset, members)
    }

    /// Creates a new `PACKET_FANOUT` group with this socket as its first
    /// member, in the mode of [`join_fanout_by_byte`](Self::join_fanout_by_byte),
    /// and returns its id for the other members to join. The kernel picks an
    /// id no group of the namespace uses (`PACKET_FANOUT_FLAG_UNIQUEID`, see
    /// packet(7)), so two load balancers on one host never share a group.
    pub fn create_fanout_by_byte(&self, byte_offset: u16, members: u32) -> io::Result<u16> {
        self.join_fanout(
            0,
            libc::PACKET_FANOUT_FLAG_UNIQUEID as u16,
            byte_offset,
            members,
        )?;
        // The kernel answers id | type << 16 | flags << 24.
        let joined = self.int_option(libc::SOL_PACKET, libc::PACKET_FANOUT)?;
        Ok((joined & 0xffff) as u16)
    }

    fn join_fanout(
        &self,
        group: u16,
        flags: u16,
        byte_offset: u16,
        members: u32,
    ) -> io::Result<()> {
        if members == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fanout needs members",
            ));
        }
        let type_flags = libc::PACKET_FANOUT_CBPF as u16 | flags;
        let arg = (group as u32 | (type_flags as u32) << 16) as i32;
        self.set_int_option(libc::SOL_PACKET, libc::PACKET_FANOUT, arg)?;
        let mut program = [
            // A = frame[byte_offset], addressed from the Ethernet header.
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: (SKF_LL_OFF + byte_offset as i32) as u32,
            },
            // A %= members
            libc::sock_filter {
                code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: members,
            },
            // return A: the index of the member that gets the frame.
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_A) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: fprog points at `program`, which lives until the call returns;
        // the kernel copies the program.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT_DATA,
                &fprog as *const libc::sock_fprog as *const libc::c_void,
                mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one whole frame (Ethernet header included).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is a valid readable slice for its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Receives one frame into `buf`; returns its length (truncated to the
    /// buffer's) or `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid writable slice for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn int_option(&self, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: value and len are live locals; len tells the kernel how
        // many bytes value has room for, and the kernel writes no more.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(value)
        }
    }

    fn set_int_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: value is a live c_int and the length says so.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
