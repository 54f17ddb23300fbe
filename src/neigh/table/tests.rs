use super::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn key(last: u8) -> NeighKey {
    let mut addr = [0; 16];
    addr[..4].copy_from_slice(&[10, 0, 0, last]);
    NeighKey {
        ifindex: 5,
        family: crate::engine::netlink::neigh::AF_INET,
        addr,
    }
}

fn links() -> LinkNames {
    let mut l = LinkNames::default();
    l.on_new(5, b"Ethernet0");
    l.on_new(6, b"Ethernet4");
    l
}

fn name(s: &str) -> IfName {
    IfName::new(s.as_bytes()).unwrap()
}

/// Take every write owed, as (del name, set name and MAC).
fn drain(t: &mut NeighTable, l: &LinkNames) -> Vec<Write> {
    std::iter::from_fn(|| t.pop_write(l)).collect()
}

#[test]
fn a_neighbor_changed_several_times_in_a_turn_is_written_once_with_its_latest_state() {
    let (mut t, l) = (NeighTable::default(), links());
    assert_eq!(t.apply(key(2), Want::Set(MAC_A), 1, &l), Applied::Queued);
    assert_eq!(t.apply(key(2), Want::Set(MAC_B), 2, &l), Applied::Queued);
    let w = drain(&mut t, &l);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].op, Op::Set(name("Ethernet0"), MAC_B));
    assert_eq!(w[0].since_ns, 1, "the oldest change's stamp");
}

#[test]
fn a_set_equal_to_what_was_sent_is_not_sent_again() {
    let (mut t, l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    drain(&mut t, &l);
    assert_eq!(t.apply(key(2), Want::Set(MAC_A), 2, &l), Applied::Same);
    assert!(drain(&mut t, &l).is_empty());
    // Changed and changed back before the writer ran: nothing either.
    t.apply(key(2), Want::Set(MAC_B), 3, &l);
    t.apply(key(2), Want::Set(MAC_A), 4, &l);
    assert!(drain(&mut t, &l).is_empty());
}

#[test]
fn a_delete_of_a_neighbor_never_written_is_forwarded_as_sonic_does() {
    let (mut t, l) = (NeighTable::default(), links());
    t.apply(key(9), Want::Del, 1, &l);
    let w = drain(&mut t, &l);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].op, Op::Del(name("Ethernet0")));
    // Acknowledged: forgotten.
    t.acked(w[0].slot, w[0].generation);
    assert_eq!(t.len(), 0);
}

#[test]
fn an_acknowledged_delete_frees_the_entry_unless_something_newer_came() {
    let (mut t, l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    drain(&mut t, &l);
    t.apply(key(2), Want::Del, 2, &l);
    let w = drain(&mut t, &l);
    t.apply(key(2), Want::Set(MAC_B), 3, &l);
    t.acked(w[0].slot, w[0].generation);
    assert_eq!(t.len(), 1, "re-added after the delete was sent");
    let w = drain(&mut t, &l);
    assert_eq!(w[0].op, Op::Set(name("Ethernet0"), MAC_B));
    // An old reply never frees a newer write's entry.
    t.apply(key(2), Want::Del, 4, &l);
    let del = drain(&mut t, &l);
    t.acked(w[0].slot, w[0].generation);
    assert_eq!(t.len(), 1);
    t.acked(del[0].slot, del[0].generation);
    assert_eq!(t.len(), 0);
    // The slot is reused, and the old reply cannot touch the new entry.
    t.apply(key(3), Want::Del, 5, &l);
    let w3 = drain(&mut t, &l);
    assert_eq!(w3[0].slot, del[0].slot);
    t.acked(del[0].slot, del[0].generation);
    assert_eq!(t.len(), 1);
}

#[test]
fn a_refused_write_is_owed_again() {
    let (mut t, l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    let w = drain(&mut t, &l);
    t.refused(w[0].slot, w[0].generation, name("Ethernet0"), 9, &l);
    let again = drain(&mut t, &l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].op, Op::Set(name("Ethernet0"), MAC_A));
    assert_eq!(again[0].since_ns, 9);
    // A refused delete is sent again, and an old refusal changes nothing.
    t.apply(key(2), Want::Del, 10, &l);
    let del = drain(&mut t, &l);
    t.refused(w[0].slot, w[0].generation, name("Ethernet0"), 11, &l);
    assert!(drain(&mut t, &l).is_empty());
    t.refused(del[0].slot, del[0].generation, name("Ethernet0"), 12, &l);
    let again = drain(&mut t, &l);
    assert_eq!(again[0].op, Op::Del(name("Ethernet0")));
}

#[test]
fn a_refused_delete_of_the_old_name_after_a_rename_is_sent_again() {
    let (mut t, mut l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    let first = drain(&mut t, &l);
    t.apply(key(2), Want::Del, 2, &l);
    let del = drain(&mut t, &l);
    // Renamed, and set again under the new name before the delete's reply.
    l.on_new(5, b"Ethernet8");
    t.renamed(5, 3, &l);
    t.apply(key(2), Want::Set(MAC_B), 3, &l);
    assert_eq!(drain(&mut t, &l)[0].op, Op::Set(name("Ethernet8"), MAC_B));
    t.acked(first[0].slot, first[0].generation);
    t.refused(del[0].slot, del[0].generation, name("Ethernet0"), 4, &l);
    assert_eq!(t.pop_stale(&l), Some((key(2), name("Ethernet0"))));
    assert_eq!(t.pop_stale(&l), None);
    assert!(drain(&mut t, &l).is_empty());
}

#[test]
fn a_rename_deletes_under_the_old_name_and_sets_under_the_new() {
    let (mut t, mut l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    t.apply(key(3), Want::Set(MAC_B), 1, &l);
    drain(&mut t, &l);
    l.on_new(5, b"Ethernet8");
    t.renamed(5, 2, &l);
    assert_eq!(t.stale_len(), 2);
    let stale: Vec<_> = std::iter::from_fn(|| t.pop_stale(&l)).collect();
    assert_eq!(
        stale,
        vec![(key(2), name("Ethernet0")), (key(3), name("Ethernet0"))]
    );
    let w = drain(&mut t, &l);
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|w| w.op.name() == name("Ethernet8")));
    // Then a delete goes under the new name.
    t.apply(key(2), Want::Del, 3, &l);
    assert_eq!(drain(&mut t, &l)[0].op, Op::Del(name("Ethernet8")));
    // Renamed back before the old key's delete went out: it is dropped,
    // the entry owns that key again.
    l.on_new(5, b"Ethernet0");
    t.renamed(5, 4, &l);
    l.on_new(5, b"Ethernet8");
    t.renamed(5, 5, &l);
    l.on_new(5, b"Ethernet0");
    t.renamed(5, 6, &l);
    let stale: Vec<_> = std::iter::from_fn(|| t.pop_stale(&l)).collect();
    assert_eq!(stale, vec![(key(3), name("Ethernet8"))]);
}

#[test]
fn a_removed_interface_deletes_its_neighbors_only() {
    let (mut t, mut l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    let other = NeighKey {
        ifindex: 6,
        ..key(2)
    };
    t.apply(other, Want::Set(MAC_A), 1, &l);
    drain(&mut t, &l);
    l.on_del(5);
    assert_eq!(t.interface_removed(5, 2, &l), 1);
    let w = drain(&mut t, &l);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].key, w[0].op), (key(2), Op::Del(name("Ethernet0"))));
    // The kernel's own deletes that follow change nothing more.
    assert_eq!(t.apply(key(2), Want::Del, 3, &l), Applied::Same);
}

#[test]
fn a_complete_dump_deletes_what_neither_it_nor_an_event_reported() {
    let (mut t, l) = (NeighTable::default(), links());
    for i in 1..=4 {
        t.apply(key(i), Want::Set(MAC_A), 1, &l);
    }
    drain(&mut t, &l);
    t.begin_resync();
    t.apply(key(1), Want::Set(MAC_A), 2, &l); // from the dump
    t.apply(key(2), Want::Set(MAC_B), 2, &l); // an event during it
    t.apply(key(5), Want::Set(MAC_A), 2, &l); // new
    assert_eq!(t.finish_resync(3, &l), 2);
    let mut w = drain(&mut t, &l);
    w.sort_by_key(|w| w.key.addr[3]);
    let got: Vec<(u8, bool)> = w
        .iter()
        .map(|w| (w.key.addr[3], matches!(w.op, Op::Set(..))))
        .collect();
    assert_eq!(got, vec![(2, true), (3, false), (4, false), (5, true)]);
    // An aborted dump deletes nothing.
    t.begin_resync();
    t.abort_resync();
    assert_eq!(t.finish_resync(4, &l), 0);
}

#[test]
fn after_a_reconnect_everything_is_owed_again() {
    let (mut t, l) = (NeighTable::default(), links());
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    t.apply(key(3), Want::Del, 1, &l);
    drain(&mut t, &l);
    t.rewrite_all(5);
    let mut w = drain(&mut t, &l);
    w.sort_by_key(|w| w.key.addr[3]);
    assert_eq!(w[0].op, Op::Set(name("Ethernet0"), MAC_A));
    assert_eq!(w[1].op, Op::Del(name("Ethernet0")));
}

#[test]
fn held_writes_wait_for_reconciliation_which_counts_them_as_written() {
    let (mut t, l) = (NeighTable::default(), links());
    t.hold(true);
    t.apply(key(2), Want::Set(MAC_A), 1, &l);
    t.apply(key(3), Want::Del, 1, &l);
    assert!(t.peek_write(&l).is_none());
    assert!(t.pop_write(&l).is_none());
    t.reconciled(&l);
    assert!(!t.held());
    assert_eq!(t.len(), 1, "the deleted one is forgotten");
    assert!(drain(&mut t, &l).is_empty());
    assert_eq!(t.apply(key(2), Want::Set(MAC_A), 2, &l), Applied::Same);
}

/// A long random run against a model Redis that answers pipelined commands
/// late and refuses some: once everything is answered, Redis holds exactly
/// what the kernel has, under the interfaces' current names.
#[test]
fn generated_runs_keep_redis_equal_to_the_kernel() {
    for seed in 1..=8u64 {
        generated_run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

fn generated_run(mut seed: u64) {
    use std::collections::BTreeMap;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut t, mut l) = (NeighTable::default(), links());
    let mut kernel: BTreeMap<(i32, u8), [u8; 6]> = BTreeMap::new();
    let mut redis: BTreeMap<(Vec<u8>, u8), [u8; 6]> = BTreeMap::new();
    let mut names = [name("Ethernet0"), name("Ethernet4")];
    enum Cmd {
        Stale(NeighKey, IfName),
        Entry(Write),
    }
    let mut inflight: std::collections::VecDeque<Cmd> = Default::default();
    for step in 0..20_000u64 {
        let ifindex = 5 + rnd(2) as i32;
        let k = NeighKey {
            ifindex,
            ..key(rnd(16) as u8)
        };
        match rnd(22) {
            0..=9 => {
                let mac = [2, 0, 0, 0, 0, rnd(3) as u8];
                kernel.insert((ifindex, k.addr[3]), mac);
                t.apply(k, Want::Set(mac), step, &l);
            }
            10..=15 => {
                kernel.remove(&(ifindex, k.addr[3]));
                t.apply(k, Want::Del, step, &l);
            }
            16 => {
                let new = if names[(ifindex - 5) as usize] == name("Ethernet0") {
                    b"Ethernet8".as_slice()
                } else {
                    b"Ethernet0".as_slice()
                };
                let new = if ifindex == 6 {
                    [b"Ethernet4".as_slice(), b"Ethernet12"][rnd(2) as usize]
                } else {
                    new
                };
                if l.on_new(ifindex, new) == crate::neigh::links::LinkEvent::Renamed {
                    names[(ifindex - 5) as usize] = name(std::str::from_utf8(new).unwrap());
                    t.renamed(ifindex, step, &l);
                }
            }
            17 => {
                // A dump that reports the kernel's table.
                t.begin_resync();
                let now: Vec<_> = kernel.iter().map(|(k, m)| (*k, *m)).collect();
                for ((ifx, last), mac) in now {
                    t.apply(
                        NeighKey {
                            ifindex: ifx,
                            ..key(last)
                        },
                        Want::Set(mac),
                        step,
                        &l,
                    );
                }
                t.finish_resync(step, &l);
            }
            18 => {
                // The writer: old names' deletes first, then the entries.
                while let Some((k, n)) = t.pop_stale(&l) {
                    inflight.push_back(Cmd::Stale(k, n));
                }
                for w in drain(&mut t, &l) {
                    inflight.push_back(Cmd::Entry(w));
                }
            }
            _ => {
                // Some replies, in order: each command applied, or refused.
                for _ in 0..rnd(8) {
                    let Some(cmd) = inflight.pop_front() else {
                        break;
                    };
                    let refuse = rnd(4) == 0;
                    match cmd {
                        Cmd::Stale(k, n) if refuse => t.stale_refused(k, n),
                        Cmd::Stale(k, n) => {
                            redis.remove(&(n.as_bytes().to_vec(), k.addr[3]));
                        }
                        Cmd::Entry(w) if refuse => {
                            t.refused(w.slot, w.generation, w.op.name(), step, &l)
                        }
                        Cmd::Entry(w) => {
                            let at = (w.op.name().as_bytes().to_vec(), w.key.addr[3]);
                            match w.op {
                                Op::Set(_, mac) => redis.insert(at, mac),
                                Op::Del(_) => redis.remove(&at),
                            };
                            t.acked(w.slot, w.generation);
                        }
                    }
                }
            }
        }
    }
    // Settle: write and answer everything, without refusals.
    loop {
        while let Some((k, n)) = t.pop_stale(&l) {
            inflight.push_back(Cmd::Stale(k, n));
        }
        for w in drain(&mut t, &l) {
            inflight.push_back(Cmd::Entry(w));
        }
        let Some(cmd) = inflight.pop_front() else {
            break;
        };
        match cmd {
            Cmd::Stale(k, n) => {
                redis.remove(&(n.as_bytes().to_vec(), k.addr[3]));
            }
            Cmd::Entry(w) => {
                let at = (w.op.name().as_bytes().to_vec(), w.key.addr[3]);
                match w.op {
                    Op::Set(_, mac) => redis.insert(at, mac),
                    Op::Del(_) => redis.remove(&at),
                };
                t.acked(w.slot, w.generation);
            }
        }
    }
    let want: BTreeMap<(Vec<u8>, u8), [u8; 6]> = kernel
        .iter()
        .map(|((ifx, last), mac)| ((l.name(*ifx).as_bytes().to_vec(), *last), *mac))
        .collect();
    let extra: Vec<_> = redis
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(v))
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| redis.get(*k) != Some(v))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "in Redis and not wanted: {extra:?}; wanted and not in Redis: {missing:?}"
    );
    assert!(t.len() >= kernel.len());
}

/// The index's hash spreads the keys a switch has (consecutive addresses
/// on a few interfaces, IPv4 and IPv6) over hashbrown's buckets (low bits)
/// and control tags (top 7 bits).
#[test]
fn the_key_hash_spreads_consecutive_addresses() {
    let h = KeyHasher::default();
    let mut keys = Vec::new();
    for ifindex in [3, 4, 5, 6] {
        for i in 0u32..16_384 {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&(0x0a00_0000 | i).to_be_bytes());
            keys.push(NeighKey {
                ifindex,
                family: 2,
                addr,
            });
            let mut v6 = [0u8; 16];
            v6[..2].copy_from_slice(&[0x20, 0x01]);
            v6[12..].copy_from_slice(&i.to_be_bytes());
            keys.push(NeighKey {
                ifindex,
                family: 10,
                addr: v6,
            });
        }
    }
    let n = keys.len();
    let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| h.hash(k)).collect();
    assert_eq!(hashes.len(), n, "no two of {n} keys hash alike");
    // 2^17 buckets for 2^17 keys: a uniform hash leaves ~1/e of them empty
    // and puts at most a handful in one.
    let bits = n.trailing_zeros();
    let mut buckets = vec![0u32; n];
    let mut tags = [0u32; 128];
    for x in &hashes {
        buckets[(x & ((1 << bits) - 1)) as usize] += 1;
        tags[(x >> 57) as usize] += 1;
    }
    let empty = buckets.iter().filter(|&&b| b == 0).count() as f64 / n as f64;
    assert!(
        (0.33..0.41).contains(&empty),
        "{empty} of the buckets empty"
    );
    assert!(*buckets.iter().max().unwrap() <= 12);
    // 1,024 keys per tag expected, a standard deviation of 32: 25 % is
    // 8 of them, which a uniform hash never strays by (the seed is random,
    // so the bound must hold for any).
    let per_tag = n as f64 / 128.0;
    for t in tags {
        assert!((t as f64 - per_tag).abs() < per_tag * 0.25, "{tags:?}");
    }
}
