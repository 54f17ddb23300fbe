//! neighsyncd's hot path allocates nothing per message in steady state,
//! proved with the counting allocator of `tests/alloc.rs`: neighbor
//! messages parsed, decided by SONiC's rules, applied to the table,
//! encoded as ProducerStateTable EVALSHAs, and (against a real
//! redis-server) sent, answered and acknowledged into the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncd::engine::metrics::{Counters, Recorder};
use syncd::engine::netlink::drain::KernelFollow;
use syncd::engine::netlink::neigh::{AF_INET, AF_INET6, NUD_REACHABLE, RTM_NEWNEIGH};
use syncd::engine::redis::conn::{ConnectStep, RedisConn};
use syncd::engine::redis::socket::Direct;
use syncd::engine::sonic::dbconfig::Instance;
use syncd::engine::sonic::pst::ProducerTable;
use syncd::neigh::context::NeighConfig;
use syncd::neigh::follow::NeighSync;
use syncd::neigh::session::appl::{encode_neighbor_writes, ApplTag};
use syncd::neigh::table::NeighTable;
use testbed::RedisServer;

#[path = "../benches/support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

/// Neighbors the burst cycles over (IPv4 and IPv6, two interfaces).
const NEIGHBORS: usize = 2048;
/// Messages per round: each neighbor's MAC changes twice.
const MESSAGES: usize = 2 * NEIGHBORS;
const WARM_UP_ROUNDS: usize = 3;
const ROUNDS: usize = 20;
const OWN_PID: u32 = 4242;

fn attr(out: &mut Vec<u8>, rta_type: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&rta_type.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// One `RTM_NEWNEIGH` datagram as the kernel builds it.
fn newneigh(i: usize, round: u8) -> Vec<u8> {
    let v6 = i % 2 == 1;
    let mut p = vec![if v6 { AF_INET6 } else { AF_INET }, 0, 0, 0];
    p.extend_from_slice(&(5 + (i % 4 < 2) as i32).to_ne_bytes());
    p.extend_from_slice(&NUD_REACHABLE.to_ne_bytes());
    p.extend_from_slice(&[0, 1]);
    let (hi, lo) = ((i >> 8) as u8, i as u8);
    if v6 {
        attr(
            &mut p,
            1,
            &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, hi, lo],
        );
    } else {
        attr(&mut p, 1, &[10, 1, hi, lo]);
    }
    attr(&mut p, 2, &[2, round, 0, 0, hi, lo]);
    let mut d = Vec::with_capacity(16 + p.len());
    d.extend_from_slice(&((16 + p.len()) as u32).to_ne_bytes());
    d.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    d.extend_from_slice(&0u16.to_ne_bytes());
    d.extend_from_slice(&0u32.to_ne_bytes());
    d.extend_from_slice(&0u32.to_ne_bytes());
    d.extend_from_slice(&p);
    d
}

/// Four rounds of MACs, each neighbor changed twice per round (the
/// second change wins: one write per neighbor per turn).
fn bursts() -> Vec<Vec<Vec<u8>>> {
    (0..4u8)
        .map(|r| {
            (0..MESSAGES)
                .map(|m| newneigh(m % NEIGHBORS, r * 2 + (m / NEIGHBORS) as u8))
                .collect()
        })
        .collect()
}

fn follower() -> NeighSync {
    let mut sync = NeighSync::new(
        NeighTable::with_capacity(NEIGHBORS),
        NeighConfig::default(),
        Arc::new(Counters::default()),
    );
    // The interfaces, named by a complete link dump (before one, neighbor
    // events wait for the dumps).
    sync.links.dump_started();
    for (ifindex, name) in [(5, "Ethernet0"), (6, "Ethernet4")] {
        sync.links.on_new(ifindex, name.as_bytes());
    }
    assert!(sync.links.dump_complete().is_empty());
    sync
}

#[test]
fn parse_decide_apply_encode_allocate_nothing_per_message() {
    let bursts = bursts();
    let mut sync = follower();
    let (recorder, samples) = Recorder::new();
    let producer = ProducerTable::new("NEIGH_TABLE", 0, b':');
    let mut conn: RedisConn<ApplTag> = RedisConn::new(
        "APPL_DB",
        support::nowhere(),
        support::WRITE_BUFFER_BYTES,
        100,
        1000,
    );
    let mut written_since = Vec::with_capacity(4096);
    let mut round = |i: usize, sync: &mut NeighSync, conn: &mut RedisConn<ApplTag>| {
        let rx = syncd::engine::sys::monotonic_ns();
        let mut commands = 0;
        for chunk in bursts[i % bursts.len()].chunks(256) {
            for d in chunk {
                sync.on_datagram(d, rx, OWN_PID);
            }
            commands += encode_neighbor_writes(
                &mut sync.table,
                &sync.links,
                conn,
                &producer,
                &recorder,
                &mut written_since,
            );
            // As `send` and the replies would.
            conn.drop_connection(0, drop);
            while samples.try_recv().is_ok() {}
        }
        commands
    };
    for i in 0..WARM_UP_ROUNDS {
        round(i, &mut sync, &mut conn);
    }
    let (commands, counts) = support::measure(|| {
        (0..ROUNDS)
            .map(|i| round(WARM_UP_ROUNDS + i, &mut sync, &mut conn))
            .sum::<u64>()
    });
    assert!(commands >= (ROUNDS * NEIGHBORS) as u64, "{commands}");
    assert_eq!(
        counts.allocs,
        0,
        "{} allocations ({} bytes) over {} messages; first sizes {:?}",
        counts.allocs,
        counts.bytes,
        ROUNDS * MESSAGES,
        counts.first_sizes
    );
    assert_eq!(sync.table.len(), NEIGHBORS);
}

#[test]
fn against_real_redis_nothing_is_allocated_per_message() {
    let redis = RedisServer::start().expect("redis-server (tools/test-all installs it)");
    let instance = Instance {
        unix_socket_path: Some(redis.socket_path()),
        hostname: "127.0.0.1".into(),
        port: redis.port,
    };
    let mut conn: RedisConn<ApplTag> =
        RedisConn::new("APPL_DB", instance, support::WRITE_BUFFER_BYTES, 100, 1000);
    assert!(matches!(conn.poll_connect(0), ConnectStep::Started { .. }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !conn.finish_connect().expect("connect") {
        assert!(Instant::now() < deadline, "connect timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
    conn.push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
    conn.push(ApplTag::ScriptLoad, ProducerTable::encode_del_script_load);
    let bursts = bursts();
    let mut sync = follower();
    let (recorder, samples) = Recorder::new();
    let producer = ProducerTable::new("NEIGH_TABLE", 0, b':');
    let mut written_since = Vec::with_capacity(4096);
    let (mut replies, mut errors) = (0u64, 0u64);
    let mut round = |i: usize, sync: &mut NeighSync, conn: &mut RedisConn<ApplTag>| {
        for chunk in bursts[i % bursts.len()].chunks(256) {
            let rx = syncd::engine::sys::monotonic_ns();
            for d in chunk {
                sync.on_datagram(d, rx, OWN_PID);
            }
            encode_neighbor_writes(
                &mut sync.table,
                &sync.links,
                conn,
                &producer,
                &recorder,
                &mut written_since,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while conn.unsent() > 0 || conn.in_flight() > 0 {
                conn.flush(&mut Direct).expect("send");
                conn.read_replies(&mut Direct, |tag, reply, _| {
                    replies += 1;
                    if reply.error().is_some() {
                        errors += 1;
                    }
                    if let Some(ApplTag::Entry {
                        slot, generation, ..
                    }) = tag
                    {
                        sync.table.acked(slot, generation);
                    }
                })
                .expect("replies");
                assert!(Instant::now() < deadline, "Redis did not answer");
                std::thread::yield_now();
            }
            while samples.try_recv().is_ok() {}
        }
    };
    for i in 0..WARM_UP_ROUNDS {
        round(i, &mut sync, &mut conn);
    }
    let ((), counts) = support::measure(|| {
        for i in 0..ROUNDS {
            round(WARM_UP_ROUNDS + i, &mut sync, &mut conn);
        }
    });
    assert_eq!(errors, 0, "Redis refused some writes");
    assert!(replies >= ((WARM_UP_ROUNDS + ROUNDS) * NEIGHBORS) as u64);
    assert_eq!(
        counts.allocs, 0,
        "{} allocations ({} bytes); first sizes {:?}",
        counts.allocs, counts.bytes, counts.first_sizes
    );
    // The last MAC of the last round reached Redis, as SONiC writes it.
    let last = redis
        .cmd(0, &["HGETALL", "_NEIGH_TABLE:Ethernet4:10.1.7.252"])
        .expect("HGETALL")
        .pairs();
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last[1], ("family".to_string(), "IPv4".to_string()));
}
