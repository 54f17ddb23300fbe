//! Building the few netlink requests portsyncd (and `flood`) send.
//!
//! Pure byte builders into a caller-owned buffer, so they are tested without
//! sockets and cost no allocation.

use super::parse::{
    align4, IFF_UP, IFINFOMSG_LEN, IFLA_EXT_MASK, IFLA_MTU, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST, RTA_HDRLEN, RTM_GETLINK, RTM_NEWLINK,
};

/// Ask the kernel to leave statistics out of dump replies: portsyncd does not
/// read them and they are most of a link message's size.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

/// Largest request built here: header, ifinfomsg and one u32 attribute.
pub const MAX_REQUEST_LEN: usize = NLMSG_HDRLEN + IFINFOMSG_LEN + RTA_HDRLEN + 4;

/// A request assembled in place.
pub struct Request {
    buf: [u8; MAX_REQUEST_LEN],
    len: usize,
}

impl Request {
    fn new(msg_type: u16, flags: u16, seq: u32) -> Request {
        let mut req = Request {
            buf: [0; MAX_REQUEST_LEN],
            len: NLMSG_HDRLEN + IFINFOMSG_LEN,
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

    fn attr_u32(&mut self, rta_type: u16, value: u32) {
        let at = self.len;
        let rta_len = (RTA_HDRLEN + 4) as u16;
        self.buf[at..at + 2].copy_from_slice(&rta_len.to_ne_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&rta_type.to_ne_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&value.to_ne_bytes());
        self.len = align4(at + RTA_HDRLEN + 4);
        self.set_len();
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

/// Set a link administratively up or down (`RTM_NEWLINK`, acked).
pub fn set_admin(seq: u32, ifindex: i32, up: bool) -> Request {
    let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    req.ifinfomsg(ifindex, if up { IFF_UP } else { 0 }, IFF_UP);
    req
}

/// Set a link's MTU (`RTM_NEWLINK` with `IFLA_MTU`, acked).
pub fn set_mtu(seq: u32, ifindex: i32, mtu: u32) -> Request {
    let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    req.ifinfomsg(ifindex, 0, 0);
    req.attr_u32(IFLA_MTU, mtu);
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::parse::{messages, parse_link, LinkChange, NLMSG_HDRLEN};

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
}
