//! Building the few netlink requests portsyncd and `flood` send.
//!
//! Pure byte builders into a fixed buffer, so they are tested without
//! sockets and cost no allocation.

use super::parse::{
    align4, IFF_UP, IFINFOMSG_LEN, IFLA_EXT_MASK, IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO,
    IFLA_MTU, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RTA_HDRLEN, RTM_GETLINK,
    RTM_NEWLINK,
};

/// Ask the kernel to leave statistics out of dump replies: portsyncd does not
/// read them and they are most of a link message's size.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// Create flags of `linux/netlink.h` (the daemons themselves never create
/// links or neighbors; `flood` does).
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// `IFLA_INFO_DATA` of `linux/if_link.h`; `VETH_INFO_PEER` of `linux/veth.h`.
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `IFNAMSIZ`: a link name and its NUL.
pub const IFNAMSIZ: usize = 16;

/// Largest request built here, the veth creation: header, ifinfomsg,
/// `IFLA_IFNAME`, `IFLA_LINKINFO` { `IFLA_INFO_KIND` "veth", `IFLA_INFO_DATA`
/// { `VETH_INFO_PEER` { ifinfomsg, `IFLA_IFNAME` } } }.
pub const MAX_REQUEST_LEN: usize =
    NLMSG_HDRLEN + 2 * (IFINFOMSG_LEN + RTA_HDRLEN + IFNAMSIZ) + 4 * RTA_HDRLEN + 4;

/// A link name longer than the kernel accepts (`IFNAMSIZ - 1` bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTooLong(pub String);

impl std::fmt::Display for NameTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "link name {:?} is longer than {} bytes",
            self.0,
            IFNAMSIZ - 1
        )
    }
}

impl std::error::Error for NameTooLong {}

/// A request assembled in place.
pub struct Request {
    buf: [u8; MAX_REQUEST_LEN],
    len: usize,
}

impl Request {
    fn new(msg_type: u16, flags: u16, seq: u32) -> Request {
        Request::with_body(msg_type, flags, seq, IFINFOMSG_LEN)
    }

    /// A request whose fixed body (`ifinfomsg`, `ndmsg`…) is `body` zero bytes.
    fn with_body(msg_type: u16, flags: u16, seq: u32, body: usize) -> Request {
        let mut req = Request {
            buf: [0; MAX_REQUEST_LEN],
            len: NLMSG_HDRLEN + body,
        };
        req.buf[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        req.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        req.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in our port id.
        req.set_len();
        req
    }

    fn ifinfomsg(&mut self, ifindex: i32, flags: u32, change: u32) {
        let at = NLMSG_HDRLEN;
        // ifi_family AF_UNSPEC (0), pad, ifi_type 0.
        self.buf[at + 4..at + 8].copy_from_slice(&ifindex.to_ne_bytes());
        self.buf[at + 8..at + 12].copy_from_slice(&flags.to_ne_bytes());
        self.buf[at + 12..at + 16].copy_from_slice(&change.to_ne_bytes());
    }

    /// An attribute at the end holding `value`, padded to 4 bytes (the
    /// buffer starts zeroed, so the padding is already there).
    fn attr(&mut self, rta_type: u16, value: &[u8]) {
        let at = self.len;
        let rta_len = RTA_HDRLEN + value.len();
        self.buf[at..at + 2].copy_from_slice(&(rta_len as u16).to_ne_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&rta_type.to_ne_bytes());
        self.buf[at + RTA_HDRLEN..at + rta_len].copy_from_slice(value);
        self.len = align4(at + rta_len);
        self.set_len();
    }

    fn attr_u32(&mut self, rta_type: u16, value: u32) {
        self.attr(rta_type, &value.to_ne_bytes());
    }

    /// `IFLA_IFNAME`: the name and its NUL.
    fn attr_name(&mut self, name: &str) -> Result<(), NameTooLong> {
        if name.len() >= IFNAMSIZ {
            return Err(NameTooLong(name.to_string()));
        }
        let mut value = [0u8; IFNAMSIZ];
        value[..name.len()].copy_from_slice(name.as_bytes());
        self.attr(IFLA_IFNAME, &value[..=name.len()]);
        Ok(())
    }

    /// Open a nested attribute; [`Request::nest_end`] writes its length.
    fn nest_start(&mut self, rta_type: u16) -> usize {
        let at = self.len;
        self.attr(rta_type, &[]);
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = (self.len - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn set_len(&mut self) {
        let len = self.len as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
    }

    /// The request's bytes, ready for `send`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `RTM_GETLINK` dump of every link.
pub fn getlink_dump(seq: u32) -> Request {
    let mut req = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq);
    req.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    req
}

/// `RTM_GETNEIGH` dump of every ARP and ND entry: an `ndmsg` of family
/// `AF_UNSPEC` (the kernel walks its IPv4 and IPv6 neighbor tables; the
/// bridge's FDB answers only to `AF_BRIDGE`).
pub fn getneigh_dump(seq: u32) -> Request {
    use super::neigh::{NDMSG_LEN, RTM_GETNEIGH};
    Request::with_body(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, NDMSG_LEN)
}

/// Set the link flags selected by `change` to their values in `flags`
/// (`RTM_NEWLINK`, acked); other flags stay as they are.
pub fn set_flags(seq: u32, ifindex: i32, flags: u32, change: u32) -> Request {
    let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    req.ifinfomsg(ifindex, flags, change);
    req
}

/// [`set_flags`] for the link called `name` (ifindex 0, `IFLA_IFNAME`),
/// for a link whose index the caller has not learnt.
pub fn set_flags_by_name(
    seq: u32,
    name: &str,
    flags: u32,
    change: u32,
) -> Result<Request, NameTooLong> {
    let mut req = set_flags(seq, 0, flags, change);
    req.attr_name(name)?;
    Ok(req)
}

/// Set a link administratively up or down (`RTM_NEWLINK`, acked).
pub fn set_admin(seq: u32, ifindex: i32, up: bool) -> Request {
    set_flags(seq, ifindex, if up { IFF_UP } else { 0 }, IFF_UP)
}

/// Set a link's MTU (`RTM_NEWLINK` with `IFLA_MTU`, acked).
pub fn set_mtu(seq: u32, ifindex: i32, mtu: u32) -> Request {
    let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    req.ifinfomsg(ifindex, 0, 0);
    req.attr_u32(IFLA_MTU, mtu);
    req
}

/// `ip link add NAME type veth peer name PEER`, acked: both ends down (a
/// veth cannot be created up: it has no peer yet when it opens).
pub fn create_veth(seq: u32, name: &str, peer: &str) -> Result<Request, NameTooLong> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let mut req = Request::new(RTM_NEWLINK, flags, seq);
    req.attr_name(name)?;
    let linkinfo = req.nest_start(IFLA_LINKINFO);
    req.attr(IFLA_INFO_KIND, b"veth");
    let data = req.nest_start(IFLA_INFO_DATA);
    let peer_at = req.nest_start(VETH_INFO_PEER);
    // The peer's own ifinfomsg, all zero.
    req.len += IFINFOMSG_LEN;
    req.set_len();
    req.attr_name(peer)?;
    req.nest_end(peer_at);
    req.nest_end(data);
    req.nest_end(linkinfo);
    Ok(req)
}

/// `ip neigh replace DST lladdr LLADDR dev IFINDEX nud permanent`, acked:
/// `RTM_NEWNEIGH` with `NLM_F_CREATE | NLM_F_REPLACE`, an `ndmsg` of
/// `family` (`AF_INET` or `AF_INET6`, as `dst` is 4 or 16 bytes),
/// `NDA_DST` and `NDA_LLADDR` (6 bytes).
pub fn replace_neigh(seq: u32, family: u8, ifindex: i32, dst: &[u8], lladdr: &[u8; 6]) -> Request {
    use super::neigh::{NDA_DST, NDA_LLADDR, NDMSG_LEN, NUD_PERMANENT, RTM_NEWNEIGH};
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut req = Request::with_body(RTM_NEWNEIGH, flags, seq, NDMSG_LEN);
    let at = NLMSG_HDRLEN;
    req.buf[at] = family;
    req.buf[at + 4..at + 8].copy_from_slice(&ifindex.to_ne_bytes());
    req.buf[at + 8..at + 10].copy_from_slice(&NUD_PERMANENT.to_ne_bytes());
    // ndm_flags 0, ndm_type 0 (the kernel takes RTN_UNICAST).
    req.attr(NDA_DST, &dst[..dst.len().min(16)]);
    req.attr(NDA_LLADDR, lladdr);
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::neigh::{parse_neigh, NeighChange, AF_INET6, NUD_PERMANENT};
    use crate::engine::netlink::parse::{messages, parse_link, LinkChange, NLMSG_HDRLEN};

    #[test]
    fn neighbor_replace_parses_back_as_the_neighbor_it_sets() {
        let dst = [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        let mac = [2, 0, 1, 0, 0, 5];
        let req = replace_neigh(4, AF_INET6, 7, &dst, &mac);
        let (hdr, payload) = messages(req.as_bytes()).next().unwrap().unwrap();
        // header 16, ndmsg 12, NDA_DST 4 + 16, NDA_LLADDR 4 + 6 + 2 padding.
        assert_eq!(hdr.len, 60);
        assert_eq!(hdr.flags, NLM_F_REQUEST | NLM_F_ACK | 0x400 | 0x100);
        let m = parse_neigh(NeighChange::New, payload).unwrap();
        assert_eq!((m.family, m.ifindex, m.state), (AF_INET6, 7, NUD_PERMANENT));
        assert_eq!((m.dst, m.lladdr), (Some(&dst[..]), Some(&mac[..])));
    }

    #[test]
    fn dump_request_is_header_ifinfomsg_and_ext_mask() {
        let req = getlink_dump(7);
        let bytes = req.as_bytes();
        assert_eq!(bytes.len(), 40);
        let (hdr, payload) = messages(bytes).next().unwrap().unwrap();
        assert_eq!(hdr.len, 40);
        assert_eq!(hdr.msg_type, RTM_GETLINK);
        assert_eq!(hdr.flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(hdr.seq, 7);
        assert_eq!(payload.len(), 40 - NLMSG_HDRLEN);
        // IFLA_EXT_MASK attribute after the ifinfomsg.
        assert_eq!(&payload[16..20], &[8, 0, 29, 0]);
        assert_eq!(u32::from_ne_bytes(payload[20..24].try_into().unwrap()), 8);
    }

    #[test]
    fn admin_down_request_changes_only_iff_up() {
        let req = set_admin(9, 42, false);
        let (hdr, payload) = messages(req.as_bytes()).next().unwrap().unwrap();
        assert_eq!(hdr.msg_type, RTM_NEWLINK);
        assert_eq!(hdr.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(i32::from_ne_bytes(payload[4..8].try_into().unwrap()), 42);
        assert_eq!(u32::from_ne_bytes(payload[8..12].try_into().unwrap()), 0);
        assert_eq!(
            u32::from_ne_bytes(payload[12..16].try_into().unwrap()),
            IFF_UP
        );
        let up = set_admin(9, 42, true);
        let (_, payload) = messages(up.as_bytes()).next().unwrap().unwrap();
        assert_eq!(
            u32::from_ne_bytes(payload[8..12].try_into().unwrap()),
            IFF_UP
        );
    }

    #[test]
    fn mtu_request_carries_ifla_mtu() {
        let req = set_mtu(1, 5, 9100);
        let (_, payload) = messages(req.as_bytes()).next().unwrap().unwrap();
        // No IFLA_IFNAME: the parser refuses it as a link message, which is
        // what it should do with a request.
        assert!(parse_link(LinkChange::New, payload).is_err());
        assert_eq!(&payload[16..20], &[8, 0, 4, 0]);
        assert_eq!(
            u32::from_ne_bytes(payload[20..24].try_into().unwrap()),
            9100
        );
    }

    #[test]
    fn veth_creation_request_byte_for_byte() {
        // `ip link add Ethernet4 type veth peer name Ethernet4p`, as flood's
        // own builder wrote it before it moved here (little-endian).
        #[rustfmt::skip]
        let want: [u8; 100] = [
            100, 0, 0, 0, 16, 0, // nlmsg_len 100, RTM_NEWLINK
            0x05, 0x06, // REQUEST | ACK | EXCL | CREATE
            3, 0, 0, 0, 0, 0, 0, 0, // seq 3, pid 0
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg: all zero
            14, 0, 3, 0, b'E', b't', b'h', b'e', b'r', b'n', b'e', b't', b'4', 0, 0, 0, // IFLA_IFNAME
            52, 0, 18, 0, // IFLA_LINKINFO, to the end
            8, 0, 1, 0, b'v', b'e', b't', b'h', // IFLA_INFO_KIND "veth"
            40, 0, 2, 0, // IFLA_INFO_DATA
            36, 0, 1, 0, // VETH_INFO_PEER
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // the peer's ifinfomsg
            15, 0, 3, 0, b'E', b't', b'h', b'e', b'r', b'n', b'e', b't', b'4', b'p', 0, 0, // IFLA_IFNAME
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(
                create_veth(3, "Ethernet4", "Ethernet4p")
                    .unwrap()
                    .as_bytes(),
                want
            );
        }
        // The request parses as a link message named Ethernet4.
        let req = create_veth(3, "Ethernet4", "Ethernet4p").unwrap();
        let (hdr, payload) = messages(req.as_bytes()).next().unwrap().unwrap();
        assert_eq!(hdr.len as usize, req.as_bytes().len());
        assert_eq!(
            parse_link(LinkChange::New, payload).unwrap().name,
            b"Ethernet4"
        );
    }

    #[test]
    fn set_flags_by_name_names_the_link_and_leaves_ifindex_zero() {
        let req = set_flags_by_name(5, "veth0", IFF_UP, IFF_UP).unwrap();
        let (hdr, payload) = messages(req.as_bytes()).next().unwrap().unwrap();
        assert_eq!(hdr.msg_type, RTM_NEWLINK);
        assert_eq!(hdr.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(hdr.len, 44);
        let link = parse_link(LinkChange::New, payload).unwrap();
        assert_eq!((link.name, link.ifindex), (&b"veth0"[..], 0));
        assert_eq!(link.flags, IFF_UP);
        assert_eq!(
            &payload[16..26],
            &[10, 0, 3, 0, b'v', b'e', b't', b'h', b'0', 0]
        );
    }

    #[test]
    fn names_the_kernel_would_refuse_are_refused_here() {
        let longest = "a".repeat(IFNAMSIZ - 1);
        let long = "a".repeat(IFNAMSIZ);
        assert!(create_veth(1, &longest, &longest).is_ok());
        assert_eq!(
            create_veth(1, &long, "p").err(),
            Some(NameTooLong(long.clone()))
        );
        assert!(create_veth(1, "p", &long).is_err());
        assert!(set_flags_by_name(1, &long, 0, 0).is_err());
    }
}
