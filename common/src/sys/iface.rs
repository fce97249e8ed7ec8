//! Interface look-up: what a server learns about itself at start-up (its MAC
//! and IPv4 on the backend interface), what the load balancer needs to
//! bind its raw socket (the index), and what both must keep every frame
//! within (the MTU: 1500 on a plain bridge, 1450 on a VXLAN overlay).

use std::ffi::{CStr, CString};
use std::io;
use std::net::Ipv4Addr;

use crate::wire::MacAddr;

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: MacAddr,
    /// The first IPv4 address on the interface, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// The interface's MTU at look-up: the most bytes a frame may carry
    /// after its Ethernet header. A longer frame is dropped on the way
    /// (silently, by a bridge port or a tunnel with a smaller MTU).
    pub mtu: usize,
}

impl Interface {
    /// Looks an interface up by name in the calling thread's network
    /// namespace.
    pub fn lookup(name: &str) -> io::Result<Interface> {
        let c_name = CString::new(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        // SAFETY: c_name is a valid NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface named {name:?}"),
            ));
        }
        let mut mac = None;
        let mut ipv4 = None;
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cursor = head;
        while !cursor.is_null() {
            // SAFETY: cursor is a non-null node of the list getifaddrs returned,
            // which stays valid until freeifaddrs.
            let entry = unsafe { &*cursor };
            cursor = entry.ifa_next;
            if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
                continue;
            }
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            if unsafe { CStr::from_ptr(entry.ifa_name) }.to_bytes() != name.as_bytes() {
                continue;
            }
            // SAFETY: ifa_addr is non-null and points at a sockaddr whose
            // family field tells which concrete type it is.
            let family = unsafe { (*entry.ifa_addr).sa_family } as i32;
            match family {
                libc::AF_PACKET if mac.is_none() => {
                    // SAFETY: family AF_PACKET means the address is a sockaddr_ll.
                    let ll = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_ll) };
                    if ll.sll_halen == 6 {
                        let mut octets = [0u8; 6];
                        octets.copy_from_slice(&ll.sll_addr[..6]);
                        mac = Some(MacAddr(octets));
                    }
                }
                libc::AF_INET if ipv4.is_none() => {
                    // SAFETY: family AF_INET means the address is a sockaddr_in.
                    let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                    ipv4 = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                }
                _ => {}
            }
        }
        // SAFETY: head came from a successful getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(head) };
        let mac = mac.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface {name:?} has no Ethernet address"),
            )
        })?;
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
            ipv4,
            mtu: mtu(name)?,
        })
    }
}

/// The MTU of interface `name` in the calling thread's network namespace,
/// asked with the `SIOCGIFMTU` ioctl. (Not `/sys/class/net/<if>/mtu`: sysfs
/// shows the namespace it was mounted in, not the thread's, so a thread
/// that entered a namespace with `setns` would read another interface's.)
pub fn mtu(name: &str) -> io::Result<usize> {
    let mut req: libc::ifreq = ifreq_for(name)?;
    // SAFETY: a plain datagram socket only serves as the handle the ioctl
    // needs; it is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: req is a valid, NUL-terminated ifreq that outlives the call;
    // SIOCGIFMTU writes only its ifru_mtu member.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req as *mut libc::ifreq) };
    let error = io::Error::last_os_error();
    // SAFETY: fd is the socket opened above, closed exactly once.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(io::Error::new(
            error.kind(),
            format!("reading the MTU of {name:?}: {error}"),
        ));
    }
    // SAFETY: a successful SIOCGIFMTU has set the union's ifru_mtu member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("interface {name:?} reports MTU {mtu}"),
        )
    })
}

/// An `ifreq` naming `name` (at most `IFNAMSIZ - 1` bytes), the rest zero.
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain old data (a name array and a union of integers
    // and addresses), for which all zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_address() {
        let lo = Interface::lookup("lo").expect("lo exists in every namespace");
        assert!(lo.index > 0);
        assert_eq!(lo.mac, MacAddr([0; 6]));
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        // Loopback's MTU is 65536 by default; whatever it is set to, it is
        // what the kernel reports for the name.
        assert!(lo.mtu >= 1280, "loopback MTU {}", lo.mtu);
        assert_eq!(mtu("lo").unwrap(), lo.mtu);
    }

    #[test]
    fn mtu_of_a_missing_or_bad_name_is_a_clear_error() {
        let err = mtu("ipcs-nonexist0").unwrap_err();
        assert!(err.to_string().contains("ipcs-nonexist0"), "{err}");
        assert_eq!(
            mtu("a-name-far-too-long-for-linux").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(mtu("bad\0name").is_err());
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let err = Interface::lookup("ipcs-nonexistent0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("ipcs-nonexistent0"));
        assert!(Interface::lookup("bad\0name").is_err());
    }
}
