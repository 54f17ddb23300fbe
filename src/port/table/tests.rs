//! The port table as a pure state machine: messages in, writes out.

use super::*;
use crate::engine::netlink::parse::{LinkChange, IFF_RUNNING, IFF_UP};

fn link(
    change: LinkChange,
    name: &'static [u8],
    ifindex: i32,
    flags: u32,
    mtu: u32,
) -> LinkMessage<'static> {
    LinkMessage {
        change,
        ifindex,
        flags,
        name,
        mtu: Some(mtu),
        master: None,
        kind: Some(b"veth"),
        operstate: None,
    }
}

fn up(name: &'static [u8], ifindex: i32) -> LinkMessage<'static> {
    link(LinkChange::New, name, ifindex, IFF_UP | IFF_RUNNING, 9100)
}

fn down(name: &'static [u8], ifindex: i32) -> LinkMessage<'static> {
    link(LinkChange::New, name, ifindex, 0, 9100)
}

fn del(name: &'static [u8], ifindex: i32) -> LinkMessage<'static> {
    link(LinkChange::Del, name, ifindex, 0, 9100)
}

fn drain(t: &mut PortTable) -> Vec<(String, bool, Option<LinkStatus>)> {
    let mut out = Vec::new();
    while let Some(w) = t.pop_write() {
        out.push((w.name.to_string(), w.del, w.hset));
    }
    out
}

const UP: LinkStatus = LinkStatus {
    admin_up: true,
    oper_up: true,
    mtu: 9100,
};
const DOWN: LinkStatus = LinkStatus {
    admin_up: false,
    oper_up: false,
    mtu: 9100,
};

fn table_with(ports: &[&str]) -> PortTable {
    let mut t = PortTable::default();
    for p in ports {
        t.add_configured(p.as_bytes(), true, false);
    }
    t
}

#[test]
fn several_messages_for_one_port_collapse_into_its_latest_state() {
    let mut t = table_with(&["Ethernet0", "Ethernet4"]);
    assert_eq!(t.apply(&down(b"Ethernet0", 3), 10, false), Applied::Written);
    assert_eq!(t.apply(&up(b"Ethernet4", 4), 11, false), Applied::Written);
    assert_eq!(t.apply(&up(b"Ethernet0", 3), 12, false), Applied::Written);
    assert_eq!(t.dirty(), 2);
    let w = t.peek_write().unwrap();
    assert_eq!(w.since_ns, 10, "latency counts from the oldest message");
    assert_eq!(
        drain(&mut t),
        vec![
            ("Ethernet0".into(), false, Some(UP)),
            ("Ethernet4".into(), false, Some(UP))
        ]
    );
    assert_eq!(t.dirty(), 0);
}

#[test]
fn delete_then_recreate_in_one_turn_sends_both() {
    let mut t = table_with(&["Ethernet0"]);
    t.apply(&up(b"Ethernet0", 3), 1, false);
    t.apply(&del(b"Ethernet0", 3), 2, false);
    t.apply(&down(b"Ethernet0", 9), 3, false);
    assert_eq!(drain(&mut t), vec![("Ethernet0".into(), true, Some(DOWN))]);
    t.apply(&up(b"Ethernet0", 9), 4, false);
    t.apply(&del(b"Ethernet0", 9), 5, false);
    assert_eq!(drain(&mut t), vec![("Ethernet0".into(), true, None)]);
}

#[test]
fn ports_not_in_port_table_are_held_then_written_when_learned() {
    let mut t = PortTable::default();
    assert_eq!(t.apply(&up(b"Ethernet8", 5), 100, false), Applied::Held);
    let mut q = Vec::new();
    t.take_queries(&mut q);
    assert_eq!(q.len(), 1);
    assert_eq!(t.get(q[0]).membership, Membership::Querying);
    assert!(drain(&mut t).is_empty());
    // A second message while the query is out: no second query.
    assert_eq!(t.apply(&down(b"Ethernet8", 5), 200, false), Applied::Held);
    t.take_queries(&mut q);
    assert!(q.is_empty());
    // Not there yet: absent; polled again later.
    let id = t.find(b"Ethernet8").unwrap();
    t.set_membership(id, false);
    assert_eq!(t.held(), 1);
    assert_eq!(t.requery_absent(), 1);
    t.take_queries(&mut q);
    assert_eq!(q, vec![id]);
    // Now it is there: its latest state is owed, stamped with the first message.
    t.set_membership(id, true);
    let w = t.peek_write().unwrap();
    assert_eq!(w.since_ns, 100);
    assert_eq!(drain(&mut t), vec![("Ethernet8".into(), false, Some(DOWN))]);
    assert_eq!(t.held(), 0);
}

#[test]
fn learning_membership_without_a_netdev_writes_nothing() {
    let mut t = PortTable::default();
    let id = t.intern(b"Ethernet12").unwrap();
    t.set_membership(id, true);
    assert_eq!(t.dirty(), 0);
    assert_eq!(t.apply(&up(b"Ethernet12", 7), 1, false), Applied::Written);
}

#[test]
fn port_init_waits_for_every_configured_port() {
    let mut t = PortTable::default();
    t.add_configured(b"Ethernet0", false, false);
    t.add_configured(b"Ethernet4", true, false);
    t.add_configured(b"Ethernet8", true, true); // already had admin_status
    assert_eq!(t.awaiting_init(), 2);
    t.apply(&up(b"Ethernet4", 4), 1, false);
    assert_eq!(t.awaiting_init(), 1);
    // Seen through netlink but not yet in PORT_TABLE: still waiting (SONiC).
    t.apply(&up(b"Ethernet0", 3), 2, false);
    assert_eq!(t.awaiting_init(), 1);
    let id = t.find(b"Ethernet0").unwrap();
    t.set_membership(id, true);
    assert_eq!(t.awaiting_init(), 0);
    // Configuring twice counts once.
    t.add_configured(b"Ethernet0", true, false);
    assert_eq!(t.awaiting_init(), 0);
}

#[test]
fn old_interfaces_are_ignored_by_ifindex_only() {
    let mut t = table_with(&["Ethernet0"]);
    t.add_old_interface(3);
    assert_eq!(
        t.apply(&up(b"Ethernet0", 3), 1, false),
        Applied::Skipped(Skip::OldInterface)
    );
    assert_eq!(
        t.apply(&del(b"Ethernet0", 3), 1, false),
        Applied::Skipped(Skip::OldInterface)
    );
    // Recreated with a new ifindex: a new interface.
    assert_eq!(t.apply(&up(b"Ethernet0", 30), 1, false), Applied::Written);
}

#[test]
fn names_that_cannot_be_interfaces_are_refused() {
    let mut t = PortTable::default();
    assert!(PortName::new(b"").is_none());
    assert!(PortName::new(b"Ethernet12345678").is_none());
    assert_eq!(
        PortName::new(b"Ethernet1234567").unwrap().as_bytes(),
        b"Ethernet1234567"
    );
    assert!(!t.add_configured(b"Ethernet_far_too_long", true, false));
    assert!(t.intern(b"").is_none());
}

#[test]
fn resync_deletes_ports_that_vanished_and_keeps_those_touched_during_it() {
    let mut t = table_with(&["Ethernet0", "Ethernet4", "Ethernet8", "Ethernet12"]);
    for (n, i) in [(&b"Ethernet0"[..], 1), (b"Ethernet4", 2), (b"Ethernet8", 3)] {
        t.apply(&link(LinkChange::New, n, i, IFF_UP, 1500), 1, false);
    }
    drain(&mut t);
    t.begin_resync();
    // The dump lists Ethernet0 (now down) only.
    t.apply(&down(b"Ethernet0", 1), 5, true);
    // Ethernet8 changes by multicast during the dump (not listed by it).
    t.apply(&up(b"Ethernet8", 3), 6, false);
    // Ethernet12 is created during the dump.
    t.apply(&up(b"Ethernet12", 4), 7, false);
    assert_eq!(t.finish_resync(8), 1);
    let writes = drain(&mut t);
    assert!(writes.contains(&("Ethernet0".into(), false, Some(DOWN))));
    assert!(
        writes.contains(&("Ethernet4".into(), true, None)),
        "{writes:?}"
    );
    assert!(writes.contains(&("Ethernet8".into(), false, Some(UP))));
    assert!(writes.contains(&("Ethernet12".into(), false, Some(UP))));
    assert!(t.get(t.find(b"Ethernet4").unwrap()).netdev.is_none());
}

#[test]
fn an_aborted_resync_concludes_nothing() {
    let mut t = table_with(&["Ethernet0"]);
    t.apply(&up(b"Ethernet0", 1), 1, false);
    drain(&mut t);
    t.begin_resync();
    t.abort_resync();
    t.begin_resync();
    t.apply(&up(b"Ethernet0", 1), 2, true);
    assert_eq!(t.finish_resync(3), 0);
}

#[test]
fn rewrite_all_owes_every_port_its_state() {
    let mut t = table_with(&["Ethernet0", "Ethernet4", "Ethernet8"]);
    t.apply(&up(b"Ethernet0", 1), 1, false);
    t.apply(&up(b"Ethernet4", 2), 1, false);
    t.apply(&del(b"Ethernet4", 2), 1, false);
    t.apply(&up(b"Ethernet99", 9), 1, false); // not in PORT_TABLE: held, never written
    drain(&mut t);
    t.rewrite_all(5);
    let writes = drain(&mut t);
    assert_eq!(
        writes,
        vec![
            ("Ethernet0".into(), false, Some(UP)),
            ("Ethernet4".into(), true, None)
        ]
    );
    let w = {
        t.rewrite(0, 9);
        t.peek_write().unwrap()
    };
    assert_eq!((w.port, w.hset, w.since_ns), (0, Some(UP), 9));
}

#[test]
fn relearn_membership_asks_again_for_ports_with_a_netdev() {
    let mut t = table_with(&["Ethernet0", "Ethernet4"]);
    t.apply(&up(b"Ethernet0", 1), 1, false);
    drain(&mut t);
    t.relearn_membership();
    let mut q = Vec::new();
    t.take_queries(&mut q);
    assert_eq!(q, vec![t.find(b"Ethernet0").unwrap()]);
    // Until answered, changes are held, not written blind.
    assert_eq!(t.apply(&down(b"Ethernet0", 1), 2, false), Applied::Held);
    t.set_membership(q[0], true);
    assert_eq!(drain(&mut t), vec![("Ethernet0".into(), false, Some(DOWN))]);
}

#[test]
fn non_port_names_do_not_enter_the_table() {
    let mut t = PortTable::default();
    assert_eq!(
        t.apply(&up(b"eth0", 2), 1, false),
        Applied::Skipped(Skip::NotAPort)
    );
    assert_eq!(t.len(), 0);
}

#[test]
fn word_hasher_tells_switch_port_names_apart() {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let build = BuildHasherDefault::<WordHasher>::default();
    let mut seen = std::collections::HashSet::new();
    for i in 0..4096 {
        for prefix in ["Ethernet", "PortChannel", "Ethernet-BP"] {
            let name = PortName::new(format!("{prefix}{i}").as_bytes()).unwrap();
            assert!(seen.insert(build.hash_one(name)), "{name} collides");
            assert_eq!(
                build.hash_one(name),
                build.hash_one(PortName::new(name.as_bytes()).unwrap())
            );
        }
    }
}

/// The held count is kept as ports change instead of scanning the table
/// every loop turn; it must agree with a scan after every kind of change.
#[test]
fn the_kept_held_count_agrees_with_a_scan_after_every_change() {
    const NAMES: [&[u8]; 4] = [b"Ethernet0", b"Ethernet4", b"Ethernet8", b"Ethernet12"];
    let mut t = PortTable::default();
    t.add_configured(b"Ethernet0", true, false);
    t.add_configured(b"Ethernet4", false, false);
    // A small deterministic generator (xorshift): the sequence is the
    // same every run, and covers every operation on every port.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut queries = Vec::new();
    for step in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x >> 8) as usize % NAMES.len();
        let name = NAMES[i];
        let ifindex = i as i32 + 10;
        match (x >> 16) % 11 {
            0 | 1 => {
                t.apply(&up(name, ifindex), 1, false);
            }
            2 => {
                t.apply(&down(name, ifindex), 1, step % 3 == 0);
            }
            3 => {
                t.apply(&del(name, ifindex), 1, false);
            }
            4 | 5 => {
                if let Some(id) = t.find(name) {
                    t.set_membership(id, (x >> 24) % 2 == 0);
                }
            }
            6 => {
                t.requery_absent();
            }
            7 => t.relearn_membership(),
            8 => {
                t.begin_resync();
            }
            9 => {
                t.finish_resync(2);
            }
            _ => {
                t.take_queries(&mut queries);
                drain(&mut t);
            }
        }
        assert_eq!(t.held(), t.held_by_scan(), "after step {step}");
    }
}

/// Change lines: one per port and turn, from its status before the turn
/// to its latest; a change undone within the turn hands nothing over.
#[test]
fn status_changes_are_handed_over_once_per_port_and_turn() {
    let mut t = table_with(&["Ethernet0", "Ethernet4"]);
    t.apply(&up(b"Ethernet0", 5), 1, false);
    t.apply(&down(b"Ethernet0", 5), 1, false);
    t.apply(&up(b"Ethernet4", 6), 1, false);
    let mut handed = Vec::new();
    assert_eq!(t.take_changes(|p| handed.push(PortChange::unpack(p))), 0);
    assert_eq!(handed.len(), 2, "{handed:?}");
    assert_eq!(
        handed[0].was, None,
        "Ethernet0 had no netdev before the turn"
    );
    assert!(handed[0].now.is_some_and(|s| !s.admin_up));
    // Next turn: down→up→down is no change at all.
    t.apply(&up(b"Ethernet0", 5), 2, false);
    t.apply(&down(b"Ethernet0", 5), 2, false);
    handed.clear();
    t.take_changes(|p| handed.push(PortChange::unpack(p)));
    assert!(handed.is_empty(), "{handed:?}");
    // A delete is a change.
    t.apply(&del(b"Ethernet4", 6), 3, false);
    t.take_changes(|p| handed.push(PortChange::unpack(p)));
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].now, None);
}
