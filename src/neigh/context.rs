//! What the rules read from CONFIG_DB, held in memory: whether the switch
//! is dual-ToR (any `PEER_SWITCH|*` key) and which interfaces have the
//! IPv6 link-local mode (`ipv6_use_link_local_only` = `enable`). SONiC's
//! daemon asks Redis per message (`KEYS PEER_SWITCH|*` for every message,
//! `HGETALL` for every fe80 add); we read it at start-up and again when a
//! keyspace notification or the fallback poll says it may have changed.

use std::collections::HashSet;

use crate::engine::redis::client::{Client, ClientError};
use crate::neigh::keys::NeighKeys;
use crate::neigh::links::IfName;
use crate::neigh::rules::NeighContext;

/// The CONFIG_DB tables behind the link-local mode, by interface prefix
/// (SONiC's `isLinkLocalEnabled`: `Vlan*`, `PortChannel*`, `Ethernet*`;
/// any other interface never has it).
pub const LINK_LOCAL_TABLES: [(&[u8], &str); 3] = [
    (b"Vlan", "VLAN_INTERFACE"),
    (b"PortChannel", "PORTCHANNEL_INTERFACE"),
    (b"Ethernet", "INTERFACE"),
];

/// The CONFIG_DB table of dual-ToR peers.
pub const PEER_SWITCH: &str = "PEER_SWITCH";

/// The field and value that turn the mode on.
pub const LINK_LOCAL_FIELD: &[u8] = b"ipv6_use_link_local_only";
pub const LINK_LOCAL_ON: &[u8] = b"enable";

/// The CONFIG_DB facts the rules use.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NeighConfig {
    pub dual_tor: bool,
    pub link_local: HashSet<IfName>,
}

impl NeighContext for NeighConfig {
    fn dual_tor(&self) -> bool {
        self.dual_tor
    }

    fn link_local_enabled(&self, ifname: &[u8]) -> bool {
        IfName::new(ifname).is_some_and(|n| self.link_local.contains(&n))
    }
}

/// The interface a CONFIG_DB key of `table` names, when its table is the
/// one SONiC reads the mode from for that interface: `INTERFACE|Ethernet0`
/// yes; `INTERFACE|Vlan10` no (SONiC looks in `VLAN_INTERFACE` for it);
/// `INTERFACE|Ethernet0|10.0.0.1/24` (an address entry) no.
pub fn link_local_interface<'a>(table: &str, name: &'a [u8]) -> Option<&'a [u8]> {
    if name.contains(&b'|') {
        return None;
    }
    let (_, owner) = LINK_LOCAL_TABLES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))?;
    (*owner == table).then_some(name)
}

/// Build the facts from CONFIG_DB's answers: the `PEER_SWITCH|*` keys
/// found, and each candidate interface key's `ipv6_use_link_local_only`.
pub fn from_answers<'a>(
    peer_switches: usize,
    modes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> NeighConfig {
    NeighConfig {
        dual_tor: peer_switches > 0,
        link_local: modes
            .into_iter()
            .filter(|(_, v)| *v == Some(LINK_LOCAL_ON))
            .filter_map(|(name, _)| IfName::new(name))
            .collect(),
    }
}

/// Read the facts with blocking calls (start-up, `check`): `KEYS
/// PEER_SWITCH|*`, then each link-local table's keys and their mode.
pub fn read(c: &mut Client, keys: &NeighKeys) -> Result<NeighConfig, ClientError> {
    let pattern = [&keys.peer_switch_prefix[..], b"*"].concat();
    let peers = c.call_ok(&[b"KEYS", &pattern])?.items().len();
    let mut modes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for (table, prefix) in &keys.link_local_prefixes {
        let pattern = [&prefix[..], b"*"].concat();
        let listed = c.call_ok(&[b"KEYS", &pattern])?;
        for key in listed.items().iter().filter_map(|v| v.as_bytes()) {
            let Some(name) = key
                .strip_prefix(prefix.as_slice())
                .and_then(|n| link_local_interface(table, n))
            else {
                continue;
            };
            let v = c.call_ok(&[b"HGET", key, LINK_LOCAL_FIELD])?;
            modes.push((name.to_vec(), v.as_bytes().map(|b| b.to_vec())));
        }
    }
    Ok(from_answers(
        peers,
        modes.iter().map(|(n, v)| (n.as_slice(), v.as_deref())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_interface_reads_its_mode_from_one_table_as_sonic_does() {
        assert_eq!(
            link_local_interface("INTERFACE", b"Ethernet0"),
            Some(&b"Ethernet0"[..])
        );
        assert_eq!(
            link_local_interface("VLAN_INTERFACE", b"Vlan1000"),
            Some(&b"Vlan1000"[..])
        );
        assert_eq!(
            link_local_interface("PORTCHANNEL_INTERFACE", b"PortChannel01"),
            Some(&b"PortChannel01"[..])
        );
        assert_eq!(link_local_interface("INTERFACE", b"Vlan1000"), None);
        assert_eq!(
            link_local_interface("INTERFACE", b"Ethernet0|10.0.0.1/24"),
            None
        );
        assert_eq!(link_local_interface("INTERFACE", b"eth0"), None);
        // A sub-port is looked up under its own name, which INTERFACE
        // normally lacks (so the mode is off), as in SONiC.
        assert_eq!(
            link_local_interface("INTERFACE", b"Ethernet0.10"),
            Some(&b"Ethernet0.10"[..])
        );
    }

    #[test]
    fn only_enable_turns_the_mode_on() {
        let c = from_answers(
            0,
            [
                (&b"Ethernet0"[..], Some(&b"enable"[..])),
                (b"Ethernet4", Some(b"disable")),
                (b"Ethernet8", Some(b"Enable")),
                (b"Vlan10", None),
            ],
        );
        assert!(!c.dual_tor);
        assert!(c.link_local_enabled(b"Ethernet0"));
        assert!(!c.link_local_enabled(b"Ethernet4"));
        assert!(!c.link_local_enabled(b"Ethernet8"));
        assert!(!c.link_local_enabled(b"Vlan10"));
        assert!(from_answers(1, []).dual_tor);
    }
}
