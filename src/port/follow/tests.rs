//! Dispatch of real captured datagrams and the dump state machine.

use super::*;
use crate::engine::netlink::fixture;
use crate::engine::netlink::parse::{align4, NLMSG_HDRLEN, NLM_F_DUMP_INTR};
use crate::port::rules::Membership;

const OWN_PID: u32 = 7187;

fn sync_with(ports: &[&str]) -> LinkSync {
    let mut t = PortTable::default();
    for p in ports {
        t.add_configured(p.as_bytes(), true, false);
    }
    LinkSync::new(t, Arc::new(Counters::default()))
}

/// A real dump reply re-stamped with our sequence number.
fn dump_reply(seq: u32, with_flags: u16) -> Vec<u8> {
    let mut d = fixture!("dump_1").to_vec();
    d.extend_from_slice(fixture!("dump_2"));
    let mut at = 0;
    while at + NLMSG_HDRLEN <= d.len() {
        let len = u32::from_ne_bytes(d[at..at + 4].try_into().unwrap()) as usize;
        d[at + 8..at + 12].copy_from_slice(&seq.to_ne_bytes());
        let flags = u16::from_ne_bytes([d[at + 6], d[at + 7]]) | with_flags;
        d[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        at += align4(len);
    }
    d
}

#[test]
fn real_messages_update_the_table_and_counters() {
    let mut s = sync_with(&["Ethernet0"]);
    for d in [
        &fixture!("create_2")[..],
        fixture!("admin_up_1"),
        fixture!("admin_up_2"),
    ] {
        assert_eq!(s.on_datagram(d, 1, OWN_PID), None);
    }
    let w = s.ports.pop_write().unwrap();
    assert_eq!(w.name.as_bytes(), b"Ethernet0");
    assert!(w.hset.unwrap().oper_up);
    assert!(s.ports.pop_write().is_none());
    assert_eq!(s.counters.msgs_newlink.get(), 3);
    assert_eq!(s.counters.datagrams.get(), 3);
}

#[test]
fn dellink_of_an_enslaved_port_is_skipped() {
    let mut s = sync_with(&["Ethernet0"]);
    s.on_datagram(fixture!("del_enslaved_3"), 1, OWN_PID);
    assert!(s.ports.pop_write().is_none());
    assert_eq!(s.counters.skipped_del_with_master.get(), 1);
    s.on_datagram(fixture!("enslave_1"), 1, OWN_PID);
    assert!(
        s.ports.pop_write().is_some(),
        "NEWLINK with a master is written"
    );
}

#[test]
fn plain_dellink_deletes() {
    let mut s = sync_with(&["Ethernet4"]);
    s.on_datagram(fixture!("del_1"), 1, OWN_PID);
    let w = s.ports.pop_write().unwrap();
    assert!(w.del && w.hset.is_none());
    assert_eq!(s.counters.msgs_dellink.get(), 1);
}

#[test]
fn dump_completes_and_reconciles() {
    let mut s = sync_with(&["Ethernet4", "Ethernet8"]);
    // Ethernet8 existed; the dump will not list it.
    let mut gone = fixture!("admin_up_2").to_vec();
    gone[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&99i32.to_ne_bytes());
    let name_at = 32 + 4;
    gone[name_at..name_at + 9].copy_from_slice(b"Ethernet8");
    s.on_datagram(&gone, 1, OWN_PID);
    while s.ports.pop_write().is_some() {}

    s.on_overrun();
    assert!(s.dump_wanted());
    assert_eq!(s.counters.resyncs.get(), 1);
    s.dump_started(5, 0);
    assert!(!s.dump_wanted());
    let reply = dump_reply(5, 0);
    assert_eq!(
        s.on_datagram(&reply, 2, OWN_PID),
        Some(DumpEnd::Complete { vanished: 1 })
    );
    let mut writes = Vec::new();
    while let Some(w) = s.ports.pop_write() {
        writes.push((w.name.to_string(), w.del));
    }
    assert!(writes.contains(&("Ethernet4".to_string(), false)));
    assert!(writes.contains(&("Ethernet8".to_string(), true)));
    assert_eq!(s.counters.ports_vanished.get(), 1);
}

#[test]
fn replies_to_someone_elses_dump_are_plain_events() {
    let mut s = sync_with(&["Ethernet4"]);
    s.dump_started(5, 0);
    // Same seq, other pid: not ours, does not end our dump.
    assert_eq!(s.on_datagram(&dump_reply(5, 0), 1, OWN_PID + 1), None);
    assert!(s.dump_running());
    // Our pid, other seq: not ours either.
    assert_eq!(s.on_datagram(&dump_reply(4, 0), 1, OWN_PID), None);
    assert!(s.dump_running());
}

#[test]
fn interrupted_dump_is_redone() {
    let mut s = sync_with(&["Ethernet4"]);
    s.dump_started(5, 0);
    assert_eq!(
        s.on_datagram(&dump_reply(5, NLM_F_DUMP_INTR), 1, OWN_PID),
        Some(DumpEnd::Redo)
    );
    assert!(s.dump_wanted());
    assert_eq!(s.counters.dump_restarts.get(), 1);
    s.dump_started(6, 0);
    assert_eq!(
        s.on_datagram(&dump_reply(6, 0), 2, OWN_PID),
        Some(DumpEnd::Complete { vanished: 0 })
    );
}

#[test]
fn overrun_during_a_dump_redoes_it() {
    let mut s = sync_with(&["Ethernet4"]);
    s.dump_started(5, 0);
    s.on_overrun();
    assert!(!s.dump_wanted(), "one dump at a time");
    assert_eq!(
        s.on_datagram(&dump_reply(5, 0), 1, OWN_PID),
        Some(DumpEnd::Redo)
    );
    assert!(s.dump_wanted());
    assert_eq!(s.counters.enobufs.get(), 1);
}

/// The links of a datagram that [`old_interface`] takes as old.
fn old_in(datagram: &[u8]) -> Vec<(i32, PortName)> {
    parse::messages(datagram)
        .filter_map(|m| {
            let (h, p) = m.ok()?;
            match parse::parse_event(&h, p).ok()? {
                Event::Link(link) => old_interface(&link),
                _ => None,
            }
        })
        .collect()
}

/// Issue 11 point 3: every `Ethernet*` link reported before the first dump
/// ended counted as old, so ports created during a slow start-up were
/// brought down and never written. Old interfaces now come from the
/// snapshot taken before subscribing, and nothing else is old.
#[test]
fn old_interfaces_come_from_the_snapshot_only() {
    let mut s = sync_with(&["Ethernet0", "Ethernet4"]);
    let snapshot = old_in(&dump_reply(1, 0));
    assert_eq!(snapshot.len(), 1, "{snapshot:?}");
    assert_eq!(snapshot[0].1.as_bytes(), b"Ethernet4");
    s.ignore_old_interfaces(snapshot.iter().map(|(i, _)| *i));
    s.dump_started(2, 0);
    // A port created while the first dump runs is a port.
    s.on_datagram(fixture!("admin_up_1"), 1, OWN_PID);
    assert_eq!(
        s.on_datagram(&dump_reply(2, 0), 1, OWN_PID),
        Some(DumpEnd::Complete { vanished: 0 })
    );
    let mut written = Vec::new();
    while let Some(w) = s.ports.pop_write() {
        written.push(w.name.to_string());
    }
    assert_eq!(
        written,
        vec!["Ethernet0".to_string()],
        "old ones are not written"
    );
    // Later messages of the old interface: ignored by ifindex, for good.
    s.on_datagram(&dump_reply(0, 0), 1, OWN_PID);
    assert!(s.ports.pop_write().is_none());
    assert!(s.counters.skipped_old_interface.get() >= 2);
    // A DELLINK is not in a snapshot.
    assert!(old_in(fixture!("del_1")).is_empty());
}

#[test]
fn malformed_datagrams_are_counted_not_fatal() {
    let mut s = sync_with(&["Ethernet0"]);
    let mut bad = fixture!("admin_up_2").to_vec();
    bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
    assert_eq!(s.on_datagram(&bad, 1, OWN_PID), None);
    assert_eq!(s.counters.malformed.get(), 1);
    assert_eq!(s.on_datagram(&[1, 2, 3], 1, OWN_PID), None);
    assert_eq!(s.counters.malformed.get(), 2);
    assert_eq!(s.ports.get(0).membership, Membership::Present);
}
