//! `RTM_NEWNEIGH` / `RTM_DELNEIGH` parsed in place: the `ndmsg` header and
//! the two attributes a neighbor syncer needs (`NDA_DST`, `NDA_LLADDR`),
//! every length checked, nothing copied.

use super::parse::{u16_at, u32_at, Attributes, ParseError};

pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;
/// `struct ndmsg`: family, 3 pad bytes, ifindex, state, flags, type.
pub const NDMSG_LEN: usize = 12;
pub const NDA_DST: u16 = 1;
pub const NDA_LLADDR: u16 = 2;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const AF_BRIDGE: u8 = 7;

pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;
/// `ndm_flags`: installed by a control plane (EVPN, zebra), not learned.
pub const NTF_EXT_LEARNED: u8 = 0x10;

/// Whether a neighbor message announces or removes an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighChange {
    New,
    Del,
}

/// One neighbor message, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighMessage<'a> {
    pub change: NeighChange,
    /// `ndm_family`: `AF_INET`, `AF_INET6`, `AF_BRIDGE` (FDB), …
    pub family: u8,
    pub ifindex: i32,
    /// `ndm_state`, compared by equality as SONiC does.
    pub state: u16,
    /// `ndm_flags`.
    pub flags: u8,
    /// `NDA_DST`: the neighbor's address (4 or 16 bytes for IP families).
    pub dst: Option<&'a [u8]>,
    /// `NDA_LLADDR`: its link-layer address (6 bytes on Ethernet).
    pub lladdr: Option<&'a [u8]>,
}

/// Parse the payload of a `RTM_NEWNEIGH` or `RTM_DELNEIGH`.
pub fn parse_neigh(change: NeighChange, payload: &[u8]) -> Result<NeighMessage<'_>, ParseError> {
    if payload.len() < NDMSG_LEN {
        return Err(ParseError::ShortNdmsg {
            payload: payload.len(),
        });
    }
    let mut msg = NeighMessage {
        change,
        family: payload[0],
        ifindex: u32_at(payload, 4).map_or(0, |v| v as i32),
        state: u16_at(payload, 8).unwrap_or(0),
        flags: payload[10],
        dst: None,
        lladdr: None,
    };
    for attr in (Attributes {
        rest: &payload[NDMSG_LEN..],
    }) {
        let (rta_type, value) = attr?;
        match rta_type {
            NDA_DST => msg.dst = Some(value),
            NDA_LLADDR => msg.lladdr = Some(value),
            _ => {}
        }
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_NEWNEIGH` payload as the kernel builds it for
    /// `ip neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud reachable`
    /// (ifindex 5): ndmsg, NDA_DST (4 bytes), NDA_LLADDR (6 bytes, padded).
    fn reachable_v4() -> Vec<u8> {
        let mut p = vec![
            2, 0, 0, 0, // ndm_family AF_INET, pad
            5, 0, 0, 0, // ndm_ifindex 5
            2, 0, // ndm_state NUD_REACHABLE
            0, // ndm_flags
            1, // ndm_type RTN_UNICAST
        ];
        p.extend_from_slice(&[8, 0, 1, 0, 10, 0, 0, 2]); // NDA_DST 10.0.0.2
        p.extend_from_slice(&[10, 0, 2, 0, 2, 0, 0, 0, 0, 2, 0, 0]); // NDA_LLADDR, padded
        p
    }

    #[test]
    fn a_neighbor_message_is_read_in_place() {
        let p = reachable_v4();
        let m = parse_neigh(NeighChange::New, &p).unwrap();
        assert_eq!(m.family, AF_INET);
        assert_eq!(m.ifindex, 5);
        assert_eq!(m.state, NUD_REACHABLE);
        assert_eq!(m.dst, Some(&[10, 0, 0, 2][..]));
        assert_eq!(m.lladdr, Some(&[2, 0, 0, 0, 0, 2][..]));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_never_a_panic() {
        let p = reachable_v4();
        for cut in 0..p.len() {
            if let Ok(m) = parse_neigh(NeighChange::Del, &p[..cut]) {
                assert!(cut >= NDMSG_LEN, "{cut}: {m:?}");
            }
        }
        assert!(matches!(
            parse_neigh(NeighChange::New, &p[..4]),
            Err(ParseError::ShortNdmsg { payload: 4 })
        ));
    }
}
