//! SONiC's per-link rules (sonic-swss `portsyncd/linksync.cpp`), as a pure
//! function of a parsed link message and what we know about the port.

use crate::engine::netlink::parse::{LinkChange, LinkMessage};

/// The name prefixes portsyncd handles.
pub const PORT_PREFIXES: [&[u8]; 2] = [b"Ethernet", b"PortChannel"];

/// Team devices (`IFLA_INFO_KIND` `team`) belong to teamsyncd.
pub const TEAM_KIND: &[u8] = b"team";

/// Whether `name` is one portsyncd handles.
pub fn is_port_name(name: &[u8]) -> bool {
    PORT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether APPL_DB `PORT_TABLE:<name>` exists, as far as we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Never asked.
    Unknown,
    /// A query is on its way.
    Querying,
    /// `PORT_TABLE:<name>` exists.
    Present,
    /// It did not exist when last asked.
    Absent,
}

/// The four STATE_DB fields portsyncd writes, from one link message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub admin_up: bool,
    pub oper_up: bool,
    pub mtu: u32,
}

impl LinkStatus {
    /// The status a message reports; a missing MTU reads as 0, as in SONiC.
    pub fn of(msg: &LinkMessage<'_>) -> LinkStatus {
        LinkStatus {
            admin_up: msg.admin_up(),
            oper_up: msg.oper_up(),
            mtu: msg.mtu.unwrap_or(0),
        }
    }
}

/// Why a message is not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not `Ethernet*` / `PortChannel*`.
    NotAPort,
    /// A team device.
    Team,
    /// `RTM_DELLINK` of a link that still has a master (left a bridge or LAG).
    DelWithMaster,
    /// An interface that existed before a cold start: ignored for good.
    OldInterface,
}

/// What to do with one link message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip(Skip),
    /// `DEL STATE_DB PORT_TABLE|<name>`.
    Delete,
    /// `HSET STATE_DB PORT_TABLE|<name> …` with this status.
    Write(LinkStatus),
    /// The port is not (or not yet known to be) in APPL_DB `PORT_TABLE`:
    /// remember the status and write it once the port is known there.
    Hold(LinkStatus),
}

/// Apply SONiC's rules to one link message.
///
/// `old_interface`: the message's ifindex belongs to an interface that
/// existed before a cold start. `membership`: what we know of
/// APPL_DB `PORT_TABLE:<name>`.
pub fn decide(msg: &LinkMessage<'_>, old_interface: bool, membership: Membership) -> Decision {
    if !is_port_name(msg.name) {
        return Decision::Skip(Skip::NotAPort);
    }
    if msg.kind == Some(TEAM_KIND) {
        return Decision::Skip(Skip::Team);
    }
    if msg.change == LinkChange::Del && msg.master.is_some_and(|m| m != 0) {
        return Decision::Skip(Skip::DelWithMaster);
    }
    if old_interface {
        return Decision::Skip(Skip::OldInterface);
    }
    match msg.change {
        LinkChange::Del => Decision::Delete,
        LinkChange::New => {
            let status = LinkStatus::of(msg);
            if membership == Membership::Present {
                Decision::Write(status)
            } else {
                Decision::Hold(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::parse::{IFF_RUNNING, IFF_UP};

    fn link(change: LinkChange, name: &'static [u8], flags: u32) -> LinkMessage<'static> {
        LinkMessage {
            change,
            ifindex: 7,
            flags,
            name,
            mtu: Some(9100),
            master: None,
            kind: Some(b"veth"),
            operstate: None,
        }
    }

    #[test]
    fn only_ethernet_and_portchannel_names() {
        for name in [
            &b"eth0"[..],
            b"lo",
            b"Bridge",
            b"ethernet0",
            b"Vlan100",
            b"Port",
        ] {
            let msg = link(LinkChange::New, name, IFF_UP);
            assert_eq!(
                decide(&msg, false, Membership::Present),
                Decision::Skip(Skip::NotAPort),
                "{name:?}"
            );
        }
        for name in [&b"Ethernet0"[..], b"Ethernet124", b"PortChannel0001"] {
            let msg = link(LinkChange::New, name, IFF_UP);
            assert!(matches!(
                decide(&msg, false, Membership::Present),
                Decision::Write(_)
            ));
        }
    }

    #[test]
    fn status_fields_come_from_flags_and_mtu() {
        let cases = [
            (0, false, false),
            (IFF_UP, true, false),
            (IFF_UP | IFF_RUNNING, true, true),
            // RUNNING without UP does not happen on real links, but the
            // fields are read independently, as SONiC does.
            (IFF_RUNNING, false, true),
        ];
        for (flags, admin_up, oper_up) in cases {
            let msg = link(LinkChange::New, b"Ethernet4", flags);
            assert_eq!(
                decide(&msg, false, Membership::Present),
                Decision::Write(LinkStatus {
                    admin_up,
                    oper_up,
                    mtu: 9100
                })
            );
        }
        let mut msg = link(LinkChange::New, b"Ethernet4", IFF_UP);
        msg.mtu = None;
        assert_eq!(
            decide(&msg, false, Membership::Present),
            Decision::Write(LinkStatus {
                admin_up: true,
                oper_up: false,
                mtu: 0
            })
        );
    }

    #[test]
    fn team_devices_are_skipped_both_ways() {
        for change in [LinkChange::New, LinkChange::Del] {
            let mut msg = link(change, b"PortChannel1", IFF_UP);
            msg.kind = Some(b"team");
            assert_eq!(
                decide(&msg, false, Membership::Present),
                Decision::Skip(Skip::Team)
            );
        }
    }

    #[test]
    fn dellink_with_master_is_skipped_but_newlink_with_master_is_not() {
        let mut del = link(LinkChange::Del, b"Ethernet8", 0);
        del.master = Some(12);
        assert_eq!(
            decide(&del, false, Membership::Present),
            Decision::Skip(Skip::DelWithMaster)
        );
        let mut new = link(LinkChange::New, b"Ethernet8", IFF_UP);
        new.master = Some(12);
        assert!(matches!(
            decide(&new, false, Membership::Present),
            Decision::Write(_)
        ));
        del.master = None;
        assert_eq!(decide(&del, false, Membership::Present), Decision::Delete);
    }

    #[test]
    fn delete_does_not_depend_on_port_table() {
        let del = link(LinkChange::Del, b"Ethernet8", 0);
        for m in [
            Membership::Unknown,
            Membership::Absent,
            Membership::Querying,
        ] {
            assert_eq!(decide(&del, false, m), Decision::Delete);
        }
    }

    #[test]
    fn old_interfaces_are_ignored_for_every_message() {
        for change in [LinkChange::New, LinkChange::Del] {
            let msg = link(change, b"Ethernet0", IFF_UP);
            assert_eq!(
                decide(&msg, true, Membership::Present),
                Decision::Skip(Skip::OldInterface)
            );
        }
    }

    #[test]
    fn ports_not_known_in_port_table_are_held() {
        let msg = link(LinkChange::New, b"Ethernet0", IFF_UP | IFF_RUNNING);
        let status = LinkStatus {
            admin_up: true,
            oper_up: true,
            mtu: 9100,
        };
        for m in [
            Membership::Unknown,
            Membership::Querying,
            Membership::Absent,
        ] {
            assert_eq!(decide(&msg, false, m), Decision::Hold(status));
        }
    }
}
