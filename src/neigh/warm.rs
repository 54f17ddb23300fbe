//! Warm restart's reconciliation (SONiC's `AppRestartAssist`, contract
//! §7.3), pure: APPL_DB `NEIGH_TABLE` as it was at start-up against what
//! the kernel has now. Each entry ends in one of SONiC's cache states:
//! SAME (nothing written), NEW (set), STALE (in the snapshot, not in the
//! kernel: deleted), DELETE (deleted during the window: deleted). The
//! NOTICE lines are SONiC's, word for word: its tests grep for
//! `cache-state:NEW` and `cache-state:(DELETE|STALE)`.

use std::collections::BTreeMap;

use crate::neigh::keys::NEIGH_TABLE;
use crate::neigh::links::LinkNames;
use crate::neigh::rules::{family_text, ip_text};
use crate::neigh::table::{NeighTable, Want};
use crate::neigh::text;

/// APPL_DB `NEIGH_TABLE` at start-up: key (without `NEIGH_TABLE:`) →
/// fields in the order `HGETALL` gave them.
pub type Snapshot = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

/// One ProducerStateTable command of the reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmOp {
    Set {
        key: Vec<u8>,
        mac: Vec<u8>,
        family: &'static str,
    },
    Del {
        key: Vec<u8>,
    },
}

/// What reconciliation writes, logs and counts.
#[derive(Debug, Default)]
pub struct Reconciliation {
    pub ops: Vec<WarmOp>,
    /// SONiC's NOTICE lines, one per entry written.
    pub lines: Vec<String>,
    pub new: u64,
    pub same: u64,
    pub stale: u64,
    pub delete: u64,
}

fn fields_text(fields: &[(Vec<u8>, Vec<u8>)], state: &str) -> String {
    let mut s = String::new();
    for (f, v) in fields {
        s.push_str(&String::from_utf8_lossy(f));
        s.push(':');
        s.push_str(&String::from_utf8_lossy(v));
        s.push_str(", ");
    }
    s.push_str("cache-state:");
    s.push_str(state);
    s.push_str(", ");
    s
}

/// Compare the snapshot with what the table wants now.
pub fn reconcile(snapshot: &Snapshot, table: &NeighTable, links: &LinkNames) -> Reconciliation {
    let mut r = Reconciliation::default();
    // The kernel's side, keyed by text as the snapshot is.
    let mut now: BTreeMap<Vec<u8>, Option<(Vec<u8>, &'static str)>> = BTreeMap::new();
    for (key, want) in table.wanted() {
        let text_key = [
            links.name(key.ifindex).as_bytes(),
            b":",
            ip_text(key.family, &key.addr).as_bytes(),
        ]
        .concat();
        let value = match want {
            Want::Set(mac) => Some((
                text::lladdr(Some(&mac)).as_bytes().to_vec(),
                family_text(key.family),
            )),
            Want::Del => None,
        };
        now.insert(text_key, value);
    }
    for (key, value) in &now {
        let old = snapshot.get(key);
        match (value, old) {
            (Some((mac, family)), old) => {
                let fields = [
                    (b"neigh".to_vec(), mac.clone()),
                    (b"family".to_vec(), family.as_bytes().to_vec()),
                ];
                if old.is_some_and(|old| fields.iter().all(|f| old.contains(f))) {
                    r.same += 1;
                    continue;
                }
                r.new += 1;
                r.lines.push(format!(
                    "{NEIGH_TABLE} NEW, key: {}, {}",
                    String::from_utf8_lossy(key),
                    fields_text(&fields, "NEW")
                ));
                r.ops.push(WarmOp::Set {
                    key: key.clone(),
                    mac: mac.clone(),
                    family,
                });
            }
            (None, Some(old)) => {
                r.delete += 1;
                r.lines.push(format!(
                    "{NEIGH_TABLE} STALE/DELETE, key: {}, {}",
                    String::from_utf8_lossy(key),
                    fields_text(old, "DELETE")
                ));
                r.ops.push(WarmOp::Del { key: key.clone() });
            }
            (None, None) => {}
        }
    }
    for (key, old) in snapshot {
        if now.contains_key(key) {
            continue;
        }
        r.stale += 1;
        r.lines.push(format!(
            "{NEIGH_TABLE} STALE/DELETE, key: {}, {}",
            String::from_utf8_lossy(key),
            fields_text(old, "STALE")
        ));
        r.ops.push(WarmOp::Del { key: key.clone() });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::neigh::{AF_INET, AF_INET6};
    use crate::neigh::table::NeighKey;

    fn v4(last: u8) -> NeighKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, last]);
        NeighKey {
            ifindex: 5,
            family: AF_INET,
            addr,
        }
    }

    fn snap(entries: &[(&str, &str, &str)]) -> Snapshot {
        entries
            .iter()
            .map(|(k, mac, fam)| {
                (
                    k.as_bytes().to_vec(),
                    vec![
                        (b"neigh".to_vec(), mac.as_bytes().to_vec()),
                        (b"family".to_vec(), fam.as_bytes().to_vec()),
                    ],
                )
            })
            .collect()
    }

    /// SONiC's recorded warm restart (reference-neigh-monitor.txt): 10.0.0.4
    /// only in the snapshot, 10.0.0.5 only in the kernel, 2001:db8::2 in both.
    #[test]
    fn sonics_recorded_warm_restart() {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        let mut t = NeighTable::default();
        t.hold(true);
        t.apply(v4(5), Want::Set([2, 0, 0, 0, 0, 5]), 1, &links);
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 2;
        let k6 = NeighKey {
            ifindex: 5,
            family: AF_INET6,
            addr: v6,
        };
        t.apply(k6, Want::Set([2, 0, 0, 0, 0, 3]), 1, &links);
        let s = snap(&[
            ("Ethernet0:10.0.0.4", "02:00:00:00:00:04", "IPv4"),
            ("Ethernet0:2001:db8::2", "02:00:00:00:00:03", "IPv6"),
        ]);
        let r = reconcile(&s, &t, &links);
        assert_eq!(
            r.ops,
            vec![
                WarmOp::Set {
                    key: b"Ethernet0:10.0.0.5".to_vec(),
                    mac: b"02:00:00:00:00:05".to_vec(),
                    family: "IPv4"
                },
                WarmOp::Del {
                    key: b"Ethernet0:10.0.0.4".to_vec()
                },
            ]
        );
        assert_eq!((r.new, r.same, r.stale, r.delete), (1, 1, 1, 0));
        assert_eq!(
            r.lines,
            vec![
                "NEIGH_TABLE NEW, key: Ethernet0:10.0.0.5, neigh:02:00:00:00:00:05, family:IPv4, cache-state:NEW, ",
                "NEIGH_TABLE STALE/DELETE, key: Ethernet0:10.0.0.4, neigh:02:00:00:00:00:04, family:IPv4, cache-state:STALE, ",
            ]
        );
    }

    #[test]
    fn changed_and_deleted_entries() {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        let mut t = NeighTable::default();
        t.hold(true);
        t.apply(v4(2), Want::Set([2, 0, 0, 0, 0, 0x22]), 1, &links);
        t.apply(v4(3), Want::Del, 1, &links);
        t.apply(v4(9), Want::Del, 1, &links);
        let s = snap(&[
            ("Ethernet0:10.0.0.2", "02:00:00:00:00:02", "IPv4"),
            ("Ethernet0:10.0.0.3", "02:00:00:00:00:03", "IPv4"),
        ]);
        let r = reconcile(&s, &t, &links);
        assert_eq!((r.new, r.same, r.stale, r.delete), (1, 0, 0, 1));
        assert!(r.lines[1].ends_with("family:IPv4, cache-state:DELETE, "));
        assert_eq!(
            r.ops[1],
            WarmOp::Del {
                key: b"Ethernet0:10.0.0.3".to_vec()
            }
        );
        assert_eq!(
            r.ops.len(),
            2,
            "a delete of what the snapshot lacks writes nothing"
        );
    }
}
