//! SONiC's per-message neighbor rules (`NeighSync::onMsg`, release
//! branches; `shared/sonic/NEIGH_CONTRACT.md` §4) as one pure function, in
//! the contract's order. Where the C++ daemon aborts (no destination, a
//! link-layer address that is not a MAC on an add), the message is skipped
//! and counted instead.

use crate::engine::netlink::neigh::{
    NeighChange, NeighMessage, AF_INET, AF_INET6, NTF_EXT_LEARNED, NUD_FAILED, NUD_INCOMPLETE,
    NUD_NOARP,
};
use crate::neigh::text::{self, Text};

/// What the rules need to know besides the message: learned at start-up
/// and followed through keyspace notifications, never read per message.
pub trait NeighContext {
    /// CONFIG_DB has at least one `PEER_SWITCH|*` key.
    fn dual_tor(&self) -> bool;
    /// `ipv6_use_link_local_only` is `enable` for this interface in
    /// CONFIG_DB `INTERFACE`, `VLAN_INTERFACE` or `PORTCHANNEL_INTERFACE`.
    fn link_local_enabled(&self, ifname: &[u8]) -> bool;
}

/// Why a message writes nothing (each has a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Neither IPv4 nor IPv6 (bridge FDB events among them).
    Family,
    /// No `NDA_DST`, or one of the wrong length for the family.
    BadDestination,
    /// IPv4 link-local (169.254/16) on a dual-ToR switch.
    Ipv4LinkLocalDualTor,
    /// An IPv6 link-local add on an interface without the link-local mode.
    Ipv6LinkLocalModeOff,
    /// IPv6 link-local-scope multicast (ff02::/16, ff12::/16, …).
    Ipv6LinkLocalMulticast,
    /// `NUD_NOARP` without `NTF_EXT_LEARNED` (adds and deletes).
    NoArp,
    /// An add with no link-layer address (`none`).
    MacNone,
    /// An add whose link-layer address is not a 6-byte MAC (the C++
    /// daemon aborts on these).
    MacNotEthernet,
    /// An add with the broadcast MAC.
    Broadcast,
}

/// What one message asks of APPL_DB `NEIGH_TABLE:<ifname>:<ip>`. The
/// address is raw (IPv4 in its first four bytes); its text is written when
/// the neighbor is encoded, once per write rather than once per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip(Skip),
    /// ProducerStateTable set: fields `neigh` = `mac`, then `family`.
    Set {
        addr: [u8; 16],
        mac: [u8; 6],
        family: &'static str,
    },
    /// ProducerStateTable del.
    Del {
        addr: [u8; 16],
    },
}

/// The `family` field's value for an address family.
pub fn family_text(family: u8) -> &'static str {
    if family == AF_INET6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The address text SONiC writes for `addr` of `family`.
pub fn ip_text(family: u8, addr: &[u8; 16]) -> Text {
    if family == AF_INET6 {
        text::ipv6(*addr)
    } else {
        text::ipv4([addr[0], addr[1], addr[2], addr[3]])
    }
}

const ZERO_MAC: [u8; 6] = [0; 6];
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// SONiC's rules for one message on the interface named `ifname`.
pub fn decide(msg: &NeighMessage<'_>, ifname: &[u8], ctx: &impl NeighContext) -> Decision {
    let family = match msg.family {
        AF_INET => "IPv4",
        AF_INET6 => "IPv6",
        _ => return Decision::Skip(Skip::Family),
    };
    let dst = msg.dst.unwrap_or_default();
    let mut addr = [0u8; 16];
    match (msg.family, dst.len()) {
        (AF_INET, 4) => {
            if dst[0] == 169 && dst[1] == 254 && ctx.dual_tor() {
                return Decision::Skip(Skip::Ipv4LinkLocalDualTor);
            }
            addr[..4].copy_from_slice(dst);
        }
        (AF_INET6, 16) => {
            let a: [u8; 16] = std::array::from_fn(|i| dst[i]);
            let link_local = a[0] == 0xfe && a[1] & 0xc0 == 0x80;
            if link_local && msg.change == NeighChange::New && !ctx.link_local_enabled(ifname) {
                return Decision::Skip(Skip::Ipv6LinkLocalModeOff);
            }
            if a[0] == 0xff && a[1] & 0x0f == 2 {
                return Decision::Skip(Skip::Ipv6LinkLocalMulticast);
            }
            addr = a;
        }
        _ => return Decision::Skip(Skip::BadDestination),
    }
    if msg.state == NUD_NOARP && msg.flags & NTF_EXT_LEARNED == 0 {
        return Decision::Skip(Skip::NoArp);
    }
    let unresolved = msg.state == NUD_INCOMPLETE || msg.state == NUD_FAILED;
    let (delete, mac) = if ctx.dual_tor() && unresolved {
        // Dual-ToR: an unresolved neighbor is kept, with a zero MAC.
        (msg.change == NeighChange::Del, Some(&ZERO_MAC[..]))
    } else {
        (msg.change == NeighChange::Del || unresolved, msg.lladdr)
    };
    if delete {
        return Decision::Del { addr };
    }
    match mac {
        None | Some([]) => Decision::Skip(Skip::MacNone),
        Some(m) if m.len() != 6 => Decision::Skip(Skip::MacNotEthernet),
        Some(m) if m == BROADCAST_MAC => Decision::Skip(Skip::Broadcast),
        Some(m) => Decision::Set {
            addr,
            mac: [m[0], m[1], m[2], m[3], m[4], m[5]],
            family,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::neigh::{
        AF_BRIDGE, NUD_PERMANENT, NUD_PROBE, NUD_REACHABLE, NUD_STALE,
    };

    struct Ctx {
        dual_tor: bool,
        link_local_on: &'static [&'static [u8]],
    }

    impl NeighContext for Ctx {
        fn dual_tor(&self) -> bool {
            self.dual_tor
        }
        fn link_local_enabled(&self, ifname: &[u8]) -> bool {
            self.link_local_on.contains(&ifname)
        }
    }

    const PLAIN: Ctx = Ctx {
        dual_tor: false,
        link_local_on: &[],
    };
    const DUAL_TOR: Ctx = Ctx {
        dual_tor: true,
        link_local_on: &[],
    };
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];

    fn msg(
        change: NeighChange,
        family: u8,
        dst: &'static [u8],
        state: u16,
        lladdr: Option<&'static [u8]>,
    ) -> NeighMessage<'static> {
        NeighMessage {
            change,
            family,
            ifindex: 5,
            state,
            flags: 0,
            dst: Some(dst),
            lladdr,
        }
    }

    fn v4(state: u16) -> NeighMessage<'static> {
        msg(NeighChange::New, AF_INET, &[10, 0, 0, 2], state, Some(&MAC))
    }

    fn v6(dst: &'static [u8; 16], change: NeighChange) -> NeighMessage<'static> {
        msg(change, AF_INET6, dst, NUD_REACHABLE, Some(&MAC))
    }

    fn set(d: Decision) -> (String, String, &'static str) {
        match d {
            Decision::Set { addr, mac, family } => (
                String::from_utf8(
                    ip_text(if family == "IPv6" { AF_INET6 } else { AF_INET }, &addr)
                        .as_bytes()
                        .to_vec(),
                )
                .unwrap(),
                String::from_utf8(text::lladdr(Some(&mac)).as_bytes().to_vec()).unwrap(),
                family,
            ),
            other => panic!("expected a set, got {other:?}"),
        }
    }

    #[test]
    fn row_3_only_ip_families() {
        let m = msg(NeighChange::New, AF_BRIDGE, &MAC, NUD_PERMANENT, Some(&MAC));
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::Family)
        );
        let s = set(decide(&v4(NUD_REACHABLE), b"Ethernet0", &PLAIN));
        assert_eq!(s, ("10.0.0.2".into(), "02:00:00:00:00:0a".into(), "IPv4"));
    }

    #[test]
    fn row_6_a_destination_of_the_wrong_size_is_skipped_not_a_crash() {
        let m = msg(
            NeighChange::New,
            AF_INET,
            &[10, 0, 0],
            NUD_REACHABLE,
            Some(&MAC),
        );
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::BadDestination)
        );
        let mut none = v4(NUD_REACHABLE);
        none.dst = None;
        assert_eq!(
            decide(&none, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::BadDestination)
        );
    }

    #[test]
    fn row_7_ipv4_link_local_only_skipped_on_dual_tor() {
        let m = msg(
            NeighChange::New,
            AF_INET,
            &[169, 254, 0, 1],
            NUD_REACHABLE,
            Some(&MAC),
        );
        assert_eq!(set(decide(&m, b"Ethernet0", &PLAIN)).0, "169.254.0.1");
        assert_eq!(
            decide(&m, b"Ethernet0", &DUAL_TOR),
            Decision::Skip(Skip::Ipv4LinkLocalDualTor)
        );
        let del = msg(
            NeighChange::Del,
            AF_INET,
            &[169, 254, 0, 1],
            NUD_REACHABLE,
            Some(&MAC),
        );
        assert_eq!(
            decide(&del, b"Ethernet0", &DUAL_TOR),
            Decision::Skip(Skip::Ipv4LinkLocalDualTor)
        );
    }

    #[test]
    fn row_8_ipv6_link_local_adds_need_the_mode_deletes_always_pass() {
        const FE80: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let add = v6(&FE80, NeighChange::New);
        assert_eq!(
            decide(&add, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::Ipv6LinkLocalModeOff)
        );
        let on = Ctx {
            dual_tor: false,
            link_local_on: &[b"Ethernet0"],
        };
        assert_eq!(set(decide(&add, b"Ethernet0", &on)).0, "fe80::1");
        assert_eq!(
            decide(&add, b"Ethernet4", &on),
            Decision::Skip(Skip::Ipv6LinkLocalModeOff),
            "the mode is per interface"
        );
        let del = v6(&FE80, NeighChange::Del);
        assert!(matches!(
            decide(&del, b"Ethernet0", &PLAIN),
            Decision::Del { .. }
        ));
    }

    #[test]
    fn row_9_link_local_scope_multicast_is_skipped_adds_and_deletes() {
        const FF02: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1];
        const FF12: [u8; 16] = [0xff, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        const FF05: [u8; 16] = [0xff, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        for change in [NeighChange::New, NeighChange::Del] {
            for dst in [&FF02, &FF12] {
                assert_eq!(
                    decide(&v6(dst, change), b"Ethernet0", &PLAIN),
                    Decision::Skip(Skip::Ipv6LinkLocalMulticast)
                );
            }
        }
        assert_eq!(
            set(decide(&v6(&FF05, NeighChange::New), b"Ethernet0", &PLAIN)).0,
            "ff05::1"
        );
    }

    #[test]
    fn row_12_noarp_without_ext_learned_is_skipped_adds_and_deletes() {
        let mut m = v4(NUD_NOARP);
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::NoArp)
        );
        m.change = NeighChange::Del;
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::NoArp)
        );
        let mut learned = v4(NUD_NOARP);
        learned.flags = NTF_EXT_LEARNED;
        assert_eq!(set(decide(&learned, b"Ethernet0", &PLAIN)).2, "IPv4");
    }

    #[test]
    fn row_13_deletes_unresolved_and_dual_tor_zero_mac() {
        for state in [NUD_INCOMPLETE, NUD_FAILED] {
            assert!(matches!(
                decide(&v4(state), b"Ethernet0", &PLAIN),
                Decision::Del { .. }
            ));
            let s = set(decide(&v4(state), b"Ethernet0", &DUAL_TOR));
            assert_eq!(s.1, "00:00:00:00:00:00", "dual-ToR keeps it, zero MAC");
            let mut del = v4(state);
            del.change = NeighChange::Del;
            assert!(matches!(
                decide(&del, b"Ethernet0", &DUAL_TOR),
                Decision::Del { .. }
            ));
        }
        for state in [NUD_REACHABLE, NUD_STALE, NUD_PROBE, NUD_PERMANENT, 0x08, 0] {
            assert_eq!(set(decide(&v4(state), b"Ethernet0", &PLAIN)).0, "10.0.0.2");
        }
        let mut del = v4(NUD_REACHABLE);
        del.change = NeighChange::Del;
        del.lladdr = None;
        assert!(matches!(
            decide(&del, b"Ethernet0", &PLAIN),
            Decision::Del { .. }
        ));
    }

    #[test]
    fn rows_15_16_adds_need_a_real_mac() {
        let mut m = v4(NUD_REACHABLE);
        m.lladdr = None;
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::MacNone)
        );
        m.lladdr = Some(&[]);
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::MacNone)
        );
        m.lladdr = Some(&[10, 0, 0, 1]);
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::MacNotEthernet)
        );
        m.lladdr = Some(&BROADCAST_MAC);
        assert_eq!(
            decide(&m, b"Ethernet0", &PLAIN),
            Decision::Skip(Skip::Broadcast)
        );
    }
}
