//! neighsyncd's own ifindex → name map, kept from the link messages on the
//! event socket (no second socket, no cache refilled on a miss): a renamed
//! interface is known by its new name from its `RTM_NEWLINK` on, and the
//! neighbors on it are written again under it (SONiC's `LinkCache` keeps
//! the old name until the daemon restarts).

use std::collections::HashMap;

use crate::engine::netlink::request::IFNAMSIZ;

/// An interface name, inline (at most `IFNAMSIZ - 1` bytes, as the kernel).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfName {
    bytes: [u8; IFNAMSIZ],
    len: u8,
}

impl IfName {
    /// The name, or `None` when longer than the kernel allows.
    pub fn new(name: &[u8]) -> Option<IfName> {
        if name.is_empty() || name.len() >= IFNAMSIZ {
            return None;
        }
        let mut bytes = [0; IFNAMSIZ];
        bytes[..name.len()].copy_from_slice(name);
        Some(IfName {
            bytes,
            len: name.len() as u8,
        })
    }

    /// The name SONiC uses for an interface it cannot name: the decimal
    /// ifindex (contract §4 row 4).
    pub fn of_index(ifindex: i32) -> IfName {
        let mut digits = [0u8; IFNAMSIZ];
        let mut n = ifindex.unsigned_abs();
        let mut i = IFNAMSIZ;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if ifindex < 0 {
            i -= 1;
            digits[i] = b'-';
        }
        IfName::new(&digits[i..]).unwrap_or(IfName {
            bytes: [b'0'; IFNAMSIZ],
            len: 1,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl std::fmt::Display for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What a link message did to the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Nothing a neighbor key depends on changed.
    Same,
    /// A link seen for the first time.
    Added,
    /// The link now goes by another name: its neighbors' keys change.
    Renamed,
    /// The link is gone (its neighbors with it).
    Removed,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    name: IfName,
    /// Deleted: the name is kept for the neighbor deletions that follow
    /// the link's, until the next complete link dump.
    gone: bool,
    /// The link dump in progress reported it.
    seen: bool,
}

/// The ifindex → name map.
#[derive(Debug, Default)]
pub struct LinkNames {
    links: HashMap<i32, Link>,
    /// A link dump has completed: every link present has its name.
    named: bool,
}

impl LinkNames {
    /// The name of `ifindex` (a deleted link's last name until the next
    /// link dump); the decimal ifindex when unknown, as SONiC.
    pub fn name(&self, ifindex: i32) -> IfName {
        match self.links.get(&ifindex) {
            Some(l) => l.name,
            None => IfName::of_index(ifindex),
        }
    }

    /// Whether a link dump has completed (before, any ifindex may be
    /// unnamed).
    pub fn named(&self) -> bool {
        self.named
    }

    /// Links known (deleted ones included until the next dump).
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// An `RTM_NEWLINK` for `ifindex` named `name` (from the dump or an
    /// event: either is current).
    pub fn on_new(&mut self, ifindex: i32, name: &[u8]) -> LinkEvent {
        let Some(name) = IfName::new(name) else {
            return LinkEvent::Same;
        };
        match self.links.get_mut(&ifindex) {
            Some(l) => {
                // An event during a dump is as current as the dump's answer.
                l.seen = true;
                let renamed = l.name != name;
                let back = l.gone;
                l.name = name;
                l.gone = false;
                match (renamed, back) {
                    (true, _) => LinkEvent::Renamed,
                    (false, true) => LinkEvent::Added,
                    (false, false) => LinkEvent::Same,
                }
            }
            None => {
                self.links.insert(
                    ifindex,
                    Link {
                        name,
                        gone: false,
                        seen: true,
                    },
                );
                LinkEvent::Added
            }
        }
    }

    /// An `RTM_DELLINK` for `ifindex`.
    pub fn on_del(&mut self, ifindex: i32) -> LinkEvent {
        match self.links.get_mut(&ifindex) {
            Some(l) if !l.gone => {
                l.gone = true;
                LinkEvent::Removed
            }
            _ => LinkEvent::Same,
        }
    }

    /// Name → ifindex of every link present (to read keys back).
    pub fn by_name(&self) -> HashMap<IfName, i32> {
        self.links
            .iter()
            .filter(|(_, l)| !l.gone)
            .map(|(&ifindex, l)| (l.name, ifindex))
            .collect()
    }

    /// A link dump starts.
    pub fn dump_started(&mut self) {
        for l in self.links.values_mut() {
            l.seen = false;
        }
    }

    /// The link dump completed: links it did not report are gone, and the
    /// names of deleted links are forgotten. Returns the ifindexes of the
    /// links found gone now (their neighbors are gone too).
    pub fn dump_complete(&mut self) -> Vec<i32> {
        self.named = true;
        let mut vanished = Vec::new();
        self.links.retain(|&ifindex, l| {
            if !l.seen && !l.gone {
                vanished.push(ifindex);
            }
            l.seen && !l.gone
        });
        vanished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_ifindex_is_named_by_its_number_as_sonic_does() {
        let links = LinkNames::default();
        assert_eq!(links.name(57).as_bytes(), b"57");
        assert_eq!(links.name(0).as_bytes(), b"0");
        assert_eq!(links.name(i32::MAX).as_bytes(), b"2147483647");
        assert_eq!(links.name(-3).as_bytes(), b"-3");
    }

    #[test]
    fn a_rename_is_reported_and_the_new_name_used() {
        let mut links = LinkNames::default();
        assert_eq!(links.on_new(5, b"eth1"), LinkEvent::Added);
        assert_eq!(links.on_new(5, b"eth1"), LinkEvent::Same);
        assert_eq!(links.on_new(5, b"Ethernet0"), LinkEvent::Renamed);
        assert_eq!(links.name(5).as_bytes(), b"Ethernet0");
    }

    #[test]
    fn a_deleted_link_keeps_its_name_until_the_next_dump() {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        links.on_new(6, b"Ethernet4");
        assert_eq!(links.on_del(5), LinkEvent::Removed);
        assert_eq!(links.on_del(5), LinkEvent::Same);
        assert_eq!(links.name(5).as_bytes(), b"Ethernet0");
        links.dump_started();
        links.on_new(6, b"Ethernet4");
        assert_eq!(links.dump_complete(), Vec::<i32>::new());
        assert_eq!(links.name(5).as_bytes(), b"5");
        assert_eq!(links.len(), 1);
    }

    #[test]
    fn a_link_the_dump_did_not_report_is_gone() {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        links.on_new(6, b"Ethernet4");
        links.dump_started();
        links.on_new(6, b"Ethernet4");
        assert_eq!(links.dump_complete(), vec![5]);
        // A link created during the dump, after its place in it, is kept.
        links.dump_started();
        links.on_new(6, b"Ethernet4");
        links.on_new(7, b"Ethernet8");
        assert_eq!(links.dump_complete(), Vec::<i32>::new());
        assert_eq!(links.name(7).as_bytes(), b"Ethernet8");
        assert_eq!(links.name(6).as_bytes(), b"Ethernet4");
    }

    #[test]
    fn names_the_kernel_cannot_have_are_refused() {
        assert!(IfName::new(b"").is_none());
        assert!(IfName::new(b"0123456789abcdef").is_none());
        assert_eq!(
            IfName::new(b"0123456789abcde").unwrap().as_bytes(),
            b"0123456789abcde"
        );
    }
}
