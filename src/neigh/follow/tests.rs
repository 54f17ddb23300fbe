//! The follower over datagrams built as the kernel builds them.

use super::*;
use crate::engine::netlink::neigh::{AF_BRIDGE, AF_INET, NUD_REACHABLE};
use crate::engine::netlink::parse::{align4, NLM_F_DUMP_INTR, NLM_F_MULTI};
use crate::neigh::links::IfName;
use crate::neigh::table::Op;

const OWN_PID: u32 = 4242;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// One netlink message: header, then `payload`.
fn nlmsg(msg_type: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&pid.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(len), 0);
    m
}

fn attr(rta_type: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut a = Vec::new();
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&rta_type.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize(align4(len), 0);
    a
}

/// An `RTM_NEWLINK` payload: ifinfomsg and `IFLA_IFNAME`.
fn link(ifindex: i32, name: &str) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    p.extend(attr(3, &n));
    p
}

/// An IPv4 neighbor payload: ndmsg, `NDA_DST`, `NDA_LLADDR`.
fn neigh(family: u8, ifindex: i32, dst: &[u8], state: u16) -> Vec<u8> {
    let mut p = vec![family, 0, 0, 0];
    p.extend_from_slice(&ifindex.to_ne_bytes());
    p.extend_from_slice(&state.to_ne_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend(attr(1, dst));
    p.extend(attr(2, &MAC));
    p
}

fn sync() -> NeighSync {
    NeighSync::new(
        NeighTable::default(),
        NeighConfig::default(),
        Arc::new(Counters::default()),
    )
}

fn request_type(s: &NeighSync, seq: u32) -> u16 {
    let r = s.dump_request(seq);
    u16::from_ne_bytes([r.as_bytes()[4], r.as_bytes()[5]])
}

/// Run the two dumps (links, then neighbors) the follower asks for,
/// answering them with `links` and `neighbors`.
fn run_dumps(s: &mut NeighSync, seq: &mut u32, links: &[(i32, &str)], neighbors: &[Vec<u8>]) {
    assert!(s.dump_due(0));
    assert_eq!(request_type(s, *seq + 1), RTM_NEWLINK + 2, "links first");
    *seq += 1;
    s.dump_started(*seq, 0);
    let mut d = Vec::new();
    for (i, n) in links {
        d.extend(nlmsg(RTM_NEWLINK, NLM_F_MULTI, *seq, OWN_PID, &link(*i, n)));
    }
    d.extend(nlmsg(NLMSG_DONE, NLM_F_MULTI, *seq, OWN_PID, &[0; 4]));
    assert!(matches!(
        s.on_datagram(&d, 1, OWN_PID),
        Some(DumpEnd::Complete { .. })
    ));
    assert!(s.dump_due(0), "the neighbor dump follows at once");
    assert_eq!(request_type(s, *seq + 1), RTM_NEWNEIGH + 2);
    *seq += 1;
    s.dump_started(*seq, 0);
    let mut d = Vec::new();
    for p in neighbors {
        d.extend(nlmsg(RTM_NEWNEIGH, NLM_F_MULTI, *seq, OWN_PID, p));
    }
    d.extend(nlmsg(NLMSG_DONE, NLM_F_MULTI, *seq, OWN_PID, &[0; 4]));
    assert!(matches!(
        s.on_datagram(&d, 2, OWN_PID),
        Some(DumpEnd::Complete { .. })
    ));
}

fn writes(s: &mut NeighSync) -> Vec<Op> {
    let mut out: Vec<Op> = std::iter::from_fn(|| s.table.pop_stale(&s.links))
        .map(|(_, n)| Op::Del(n))
        .collect();
    out.extend(std::iter::from_fn(|| s.table.pop_write(&s.links)).map(|w| w.op));
    out
}

fn name(s: &str) -> IfName {
    IfName::new(s.as_bytes()).unwrap()
}

#[test]
fn the_first_sync_dumps_links_then_neighbors_and_writes_each_neighbor() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "Ethernet0"), (6, "Ethernet4")],
        &[
            neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE),
            neigh(AF_INET, 6, &[10, 0, 1, 2], NUD_REACHABLE),
            neigh(AF_BRIDGE, 6, &MAC, NUD_REACHABLE),
        ],
    );
    assert_eq!(s.neighbor_dumps(), 1);
    assert!(!s.dump_pending());
    assert_eq!(
        writes(&mut s),
        vec![
            Op::Set(name("Ethernet0"), MAC),
            Op::Set(name("Ethernet4"), MAC)
        ]
    );
    assert_eq!(s.counters.skipped_neigh_family.get(), 1);
    assert_eq!(s.counters.msgs_newneigh.get(), 3);
    assert_eq!(s.counters.msgs_newlink.get(), 2);
}

#[test]
fn a_renamed_interface_rekeys_its_neighbors() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "eth1")],
        &[neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE)],
    );
    writes(&mut s);
    let rename = nlmsg(RTM_NEWLINK, 0, 0, 0, &link(5, "Ethernet0"));
    assert_eq!(s.on_datagram(&rename, 3, OWN_PID), None);
    assert_eq!(
        writes(&mut s),
        vec![Op::Del(name("eth1")), Op::Set(name("Ethernet0"), MAC)]
    );
}

#[test]
fn a_loss_during_the_neighbor_dump_starts_over_from_the_links_and_then_reconciles() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "Ethernet0")],
        &[
            neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE),
            neigh(AF_INET, 5, &[10, 0, 0, 3], NUD_REACHABLE),
        ],
    );
    writes(&mut s);
    // An overrun: events lost (10.0.0.3's delete among them).
    s.on_lost(true);
    assert_eq!(s.counters.enobufs.get(), 1);
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "Ethernet0")],
        &[neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE)],
    );
    assert_eq!(writes(&mut s), vec![Op::Del(name("Ethernet0"))]);
    assert_eq!(s.counters.neighbors_vanished.get(), 1);
}

#[test]
fn an_interrupted_neighbor_dump_is_redone_alone() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(&mut s, &mut seq, &[(5, "Ethernet0")], &[]);
    s.want_dump();
    // Links.
    seq += 1;
    s.dump_started(seq, 0);
    let done = nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, OWN_PID, &[0; 4]);
    s.on_datagram(&done, 1, OWN_PID);
    // Neighbors, interrupted (NLM_F_DUMP_INTR).
    assert_eq!(request_type(&s, seq + 1), RTM_NEWNEIGH + 2);
    seq += 1;
    s.dump_started(seq, 0);
    let mut d = nlmsg(
        RTM_NEWNEIGH,
        NLM_F_MULTI | NLM_F_DUMP_INTR,
        seq,
        OWN_PID,
        &neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE),
    );
    d.extend(nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, OWN_PID, &[0; 4]));
    assert_eq!(s.on_datagram(&d, 2, OWN_PID), Some(DumpEnd::Redo));
    assert!(s.dump_due(0));
    assert_eq!(request_type(&s, seq + 1), RTM_NEWNEIGH + 2);
    assert_eq!(s.neighbor_dumps(), 1);
}

#[test]
fn a_deleted_interface_deletes_its_neighbors_under_its_name() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "Ethernet0")],
        &[neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE)],
    );
    writes(&mut s);
    let del = nlmsg(RTM_DELLINK, 0, 0, 0, &link(5, "Ethernet0"));
    s.on_datagram(&del, 3, OWN_PID);
    // The kernel's own neighbor delete, after the link's.
    let gone = nlmsg(
        RTM_DELNEIGH,
        0,
        0,
        0,
        &neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE),
    );
    s.on_datagram(&gone, 3, OWN_PID);
    assert_eq!(writes(&mut s), vec![Op::Del(name("Ethernet0"))]);
}

#[test]
fn garbage_is_counted_and_skipped() {
    let mut s = sync();
    let short = nlmsg(RTM_NEWNEIGH, 0, 0, 0, &[2, 0, 0]);
    let bad_attr = nlmsg(
        RTM_NEWNEIGH,
        0,
        0,
        0,
        &[2, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 1, 99, 0, 1, 0],
    );
    for d in [&short, &bad_attr] {
        assert_eq!(s.on_datagram(d, 1, OWN_PID), None);
    }
    assert_eq!(s.counters.malformed.get(), 2);
    assert!(writes(&mut s).is_empty());
}

/// A neighbor event read before the first link dump has named the links
/// (the daemon subscribes before it asks for the dumps) would be keyed by
/// the decimal ifindex, a key nothing deletes: it waits for the neighbor
/// dump, which follows the link dump and reports it.
#[test]
fn a_neighbor_event_before_the_links_are_known_waits_for_the_dumps() {
    let mut s = sync();
    let early = nlmsg(
        RTM_NEWNEIGH,
        0,
        0,
        0,
        &neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE),
    );
    assert_eq!(s.on_datagram(&early, 1, OWN_PID), None);
    assert_eq!(writes(&mut s), vec![], "a loop turn before the dumps");
    let mut seq = 0;
    run_dumps(
        &mut s,
        &mut seq,
        &[(5, "Ethernet0")],
        &[neigh(AF_INET, 5, &[10, 0, 0, 2], NUD_REACHABLE)],
    );
    assert_eq!(writes(&mut s), vec![Op::Set(name("Ethernet0"), MAC)]);
}

/// A neighbor on a link whose `RTM_NEWLINK` was lost is written under the
/// decimal ifindex, as SONiC does; once the link is known (the re-dump or
/// an event), that key is deleted and the neighbor set under the name.
#[test]
fn a_neighbor_on_an_unnamed_link_is_rekeyed_when_the_link_is_named() {
    let mut s = sync();
    let mut seq = 0;
    run_dumps(&mut s, &mut seq, &[(5, "Ethernet0")], &[]);
    let event = nlmsg(
        RTM_NEWNEIGH,
        0,
        0,
        0,
        &neigh(AF_INET, 9, &[10, 0, 0, 9], NUD_REACHABLE),
    );
    s.on_datagram(&event, 3, OWN_PID);
    assert_eq!(writes(&mut s), vec![Op::Set(name("9"), MAC)]);
    let named = nlmsg(RTM_NEWLINK, 0, 0, 0, &link(9, "Ethernet8"));
    s.on_datagram(&named, 4, OWN_PID);
    assert_eq!(
        writes(&mut s),
        vec![Op::Del(name("9")), Op::Set(name("Ethernet8"), MAC)]
    );
}
