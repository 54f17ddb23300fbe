//! No allocation per message in steady state, proved with a counting global
//! allocator: after a warm-up, many loop turns must allocate nothing at all
//! on the loop's thread. Three levels:
//!
//! 1. no sockets: parse, apply, encode a burst synthesised from real captures;
//! 2. the same burst against a real redis-server: also `send` and the replies
//!    decoded and matched to their tags;
//! 3. everything real: kernel link events in a private network namespace read
//!    by the daemon's own `drain` (`recvmmsg` into the ring), applied,
//!    encoded, written to Redis, replies decoded.
//!
//! Counting is per thread, so the test harness's other threads (and the
//! Redis log reader of the testbed, and the thread generating link changes)
//! do not disturb the count.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncd::engine::metrics::{Counters, Recorder};
use syncd::engine::netlink::reader::LinkReader;
use syncd::engine::netlink::ring::RecvRing;
use syncd::engine::netlink::socket::NetlinkSocket;
use syncd::engine::redis::conn::{ConnectStep, RedisConn};
use syncd::engine::redis::socket::Direct;
use syncd::engine::sonic::dbconfig::Instance;
use syncd::port::follow::LinkSync;
use syncd::port::table::PortTable;
use testbed::{Netns, RedisServer};

#[path = "../benches/support/mod.rs"]
mod support;
use support::{AllocCounts, Tag, Turn};

#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

/// Turns run before counting: the first may grow the table's FIFOs.
const WARM_UP_ROUNDS: usize = 3;
/// Rounds counted (each the whole 1024-message burst).
const ROUNDS: usize = 50;

fn explain(what: &str, counts: AllocCounts, messages: usize) -> String {
    format!(
        "{what}: {} allocations ({} bytes, {} frees) over {messages} messages in steady state; \
         first sizes {:?}. Break on the allocator (gdb: `break __rust_alloc`) after warm-up \
         to see the call site",
        counts.allocs, counts.bytes, counts.deallocs, counts.first_sizes
    )
}

#[test]
fn the_counter_sees_allocations() {
    let (v, counts) = support::measure(|| std::hint::black_box(vec![1u8; 100]));
    drop(v);
    assert_eq!(counts.allocs, 1);
    assert_eq!(counts.bytes, 100);
}

/// The synthetic burst is what the benches claim: real captures with only
/// ifindex, name and MTU rewritten, round-robin over 32 ports.
#[test]
fn the_burst_is_real_captures_rewritten() {
    use syncd::engine::netlink::parse::{messages, parse_event, Event};
    let burst = support::burst();
    assert_eq!(burst.len(), support::BURST_MESSAGES);
    for (i, d) in burst.iter().enumerate() {
        let port = i % support::BURST_PORTS;
        let mut msgs = messages(d);
        let (header, payload) = msgs.next().unwrap().unwrap();
        assert!(msgs.next().is_none());
        let Ok(Event::Link(link)) = parse_event(&header, payload) else {
            panic!("message {i} is not a link message");
        };
        assert_eq!(link.name, support::port_name(port).as_bytes());
        assert_eq!(link.ifindex, 10 + port as i32);
        assert!(matches!(link.mtu, Some(1500) | Some(9100)));
        assert_eq!(d.len(), 1500, "same size as the captures");
    }
}

/// `on_datagram` → `write_ports` encoding into the STATE_DB connection's
/// buffer, no sockets; with turns of 1, 32 and 1024 messages (every message
/// written, or 32 per port coalesced).
#[test]
fn parse_apply_encode_allocate_nothing_per_message() {
    let burst = support::burst();
    for turn in [1usize, 32, 1024] {
        let mut t = Turn::new();
        let round = |t: &mut Turn| {
            let mut commands = 0;
            for chunk in burst.spans.chunks(turn) {
                commands += t.run(chunk.iter().map(|&(s, e)| &burst.bytes[s..e]));
            }
            commands
        };
        for _ in 0..WARM_UP_ROUNDS {
            round(&mut t);
        }
        let (commands, counts) = support::measure(|| {
            let mut commands = 0;
            for _ in 0..ROUNDS {
                commands += round(&mut t);
            }
            commands
        });
        let messages = ROUNDS * burst.len();
        let expected = ROUNDS as u64 * (burst.len() / turn * support::BURST_PORTS.min(turn)) as u64;
        assert_eq!(
            commands, expected,
            "turn of {turn}: every port owed is written"
        );
        assert_eq!(
            counts.allocs,
            0,
            "{}",
            explain(&format!("turn of {turn}"), counts, messages)
        );
        assert_eq!(t.sync.counters().malformed.get(), 0);
    }
}

/// A connected STATE_DB connection to `redis` (unix socket).
fn connect(redis: &RedisServer) -> RedisConn<Tag> {
    let instance = Instance {
        unix_socket_path: Some(redis.socket_path()),
        hostname: "127.0.0.1".into(),
        port: redis.port,
    };
    let mut conn: RedisConn<Tag> =
        RedisConn::new("STATE_DB", instance, support::WRITE_BUFFER_BYTES, 100, 1000);
    match conn.poll_connect(0) {
        ConnectStep::Started { .. } => {}
        other => panic!("connecting to {:?}: {other:?}", redis.socket_path()),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !conn.finish_connect().expect("connect") {
        assert!(Instant::now() < deadline, "connect timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
    conn
}

/// Send what is queued and wait for every reply, as the loop does over a
/// few turns. Returns (replies, error replies).
fn send_and_settle(conn: &mut RedisConn<Tag>) -> (u64, u64) {
    let (mut replies, mut errors) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.unsent() > 0 || conn.in_flight() > 0 {
        conn.flush(&mut Direct).expect("send");
        conn.read_replies(&mut Direct, |tag, reply, _| {
            assert!(tag.is_some());
            replies += 1;
            if reply.error().is_some() {
                errors += 1;
            }
        })
        .expect("replies");
        assert!(Instant::now() < deadline, "Redis did not answer");
        std::thread::yield_now();
    }
    (replies, errors)
}

/// The daemon's whole steady path against a real redis-server: parse,
/// apply, encode with a tag per command, one `send`, then the replies
/// decoded and matched to their tags.
#[test]
fn loop_turns_against_real_redis_allocate_nothing_per_message() {
    let redis = RedisServer::start().expect("redis-server (tools/test-all installs it)");
    let mut conn = connect(&redis);
    let burst = support::burst();
    let mut sync = support::configured_sync();
    let (recorder, samples) = Recorder::new();
    let mut written_since = Vec::with_capacity(1024);
    let (mut replies, mut errors) = (0u64, 0u64);
    let mut round = |sync: &mut LinkSync, conn: &mut RedisConn<Tag>| {
        for chunk in burst.spans.chunks(32) {
            let rx = syncd::engine::sys::monotonic_ns();
            for &(s, e) in chunk {
                sync.on_datagram(&burst.bytes[s..e], rx, support::OWN_PID);
            }
            support::write_ports(&mut sync.ports, conn, &recorder, &mut written_since);
            let (r, e) = send_and_settle(conn);
            replies += r;
            errors += e;
            while samples.try_recv().is_ok() {}
        }
    };
    for _ in 0..WARM_UP_ROUNDS {
        round(&mut sync, &mut conn);
    }
    let ((), counts) = support::measure(|| {
        for _ in 0..ROUNDS {
            round(&mut sync, &mut conn);
        }
    });
    assert_eq!(errors, 0, "Redis refused some writes");
    assert_eq!(replies, ((WARM_UP_ROUNDS + ROUNDS) * burst.len()) as u64);
    assert_eq!(
        counts.allocs,
        0,
        "{}",
        explain("against redis-server", counts, ROUNDS * burst.len())
    );
    // The last state of the burst reached Redis.
    let last = redis.hgetall(0, "PORT_TABLE|Ethernet124").expect("HGETALL");
    assert_eq!(last, testbed::state_fields("down", "down", 1500));
}

/// Ports of the all-real test (veths whose peers are up).
const REAL_PORTS: usize = 8;
/// Kernel messages read before counting, then counted.
const REAL_WARM_UP: u64 = 2_000;
const REAL_COUNTED: u64 = 6_000;

/// An event socket created inside `ns` (`setns` on a short-lived thread;
/// the socket stays in that namespace wherever it is used).
fn events_socket_in(ns: &Netns) -> NetlinkSocket {
    let path = std::path::Path::new("/run/netns").join(&ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        // SAFETY: setns on an fd we own; it switches only this thread's
        // network namespace and touches no memory of ours.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        NetlinkSocket::events(16 << 20).expect("netlink socket").0
    })
    .join()
    .expect("socket thread")
}

/// Everything real on one counted thread: link changes made by `ip` (on
/// another thread) in a private namespace, read by the daemon's `drain`
/// with `recvmmsg` into the mlocked ring, applied, encoded, written to a
/// real Redis, replies decoded.
#[test]
fn kernel_to_redis_allocates_nothing_per_message() {
    let ns = Arc::new(Netns::new().expect("network namespace (needs root)"));
    let names: Vec<String> = (0..REAL_PORTS).map(support::port_name).collect();
    for n in &names {
        ns.add_port(n).expect("veth");
    }
    let redis = RedisServer::start().expect("redis-server (tools/test-all installs it)");
    let mut conn = connect(&redis);
    let sock = events_socket_in(&ns);
    let fd = sock.as_raw_fd();
    let mut reader = LinkReader::new(sock, RecvRing::new(4 << 20).expect("ring"));
    let mut table = PortTable::default();
    for n in &names {
        table.add_configured(n.as_bytes(), true, false);
    }
    let counters = Arc::new(Counters::default());
    let mut sync = LinkSync::new(table, counters.clone());
    let (recorder, samples) = Recorder::new();
    let mut written_since = Vec::with_capacity(1024);
    let mut dump_seq = 0u32;

    // Link changes, as fast as one `ip -batch` goes, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let changer = {
        let (stop, ns, names) = (stop.clone(), ns.clone(), names.clone());
        std::thread::spawn(move || {
            let mut up = true;
            while !stop.load(Ordering::Relaxed) {
                let cmds: Vec<String> = (0..25)
                    .flat_map(|_| {
                        up = !up;
                        let state = if up { "up" } else { "down" };
                        names
                            .iter()
                            .map(move |n| format!("link set {n} {state}"))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if ns.batch(&cmds).is_err() {
                    break;
                }
            }
        })
    };

    let messages = |c: &Counters| c.msgs_newlink.get() + c.msgs_dellink.get();
    let mut turn = |sync: &mut LinkSync, reader: &mut LinkReader| {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        syncd::engine::netlink::drain::drain(reader, sync, &counters, &mut dump_seq, 1024)
            .expect("drain");
        support::write_ports(&mut sync.ports, &mut conn, &recorder, &mut written_since);
        let (_, errors) = send_and_settle(&mut conn);
        assert_eq!(errors, 0);
        while samples.try_recv().is_ok() {}
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&counters) < REAL_WARM_UP {
        assert!(Instant::now() < deadline, "too few link messages");
        turn(&mut sync, &mut reader);
    }
    let (enobufs, start) = (counters.enobufs.get(), messages(&counters));
    let written = recorder.counters.ports_written.get();
    let ((), counts) = support::measure(|| {
        while messages(&counters) < start + REAL_COUNTED {
            assert!(Instant::now() < deadline, "too few link messages");
            turn(&mut sync, &mut reader);
        }
    });
    let counted = messages(&counters) - start;
    let written = recorder.counters.ports_written.get() - written;
    assert!(written > 0, "no STATE_DB writes while counting");
    stop.store(true, Ordering::Relaxed);
    changer.join().expect("link changer");
    // An overrun means a resync dump ran: not the steady state measured here.
    assert_eq!(
        counters.enobufs.get(),
        enobufs,
        "the kernel dropped events during the count; inconclusive"
    );
    assert_eq!(
        counts.allocs,
        0,
        "{}",
        explain("kernel to Redis", counts, counted as usize)
    );
    eprintln!("kernel to Redis: {counted} link messages, {written} HSETs, 0 allocations");
}
