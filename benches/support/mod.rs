//! Shared by the benches and `tests/alloc.rs`: the real kernel captures, a
//! realistic burst synthesised from them, one loop turn's STATE_DB encoding
//! as `Daemon::write_ports` does it, and a counting allocator.
//!
//! Not a bench target itself (cargo only discovers `benches/*.rs` and
//! `benches/*/main.rs`); each user includes it with `mod support;` or
//! `#[path = "../benches/support/mod.rs"] mod support;`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use syncd::engine::metrics::{Counters, Recorder};
use syncd::engine::redis::conn::RedisConn;
use syncd::engine::sonic::dbconfig::Instance;
use syncd::port::follow::LinkSync;
use syncd::port::table::PortTable;

// Relative to this file, so any crate that includes it finds the captures.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/netlink/", $name, ".bin"))
    };
}

/// Every capture in `tests/fixtures/netlink`, by name.
pub const FIXTURES: [(&str, &[u8]); 11] = [
    ("admin_down_1", fixture!("admin_down_1")),
    ("admin_up_1", fixture!("admin_up_1")),
    ("admin_up_2", fixture!("admin_up_2")),
    ("create_2", fixture!("create_2")),
    ("del_1", fixture!("del_1")),
    ("del_2", fixture!("del_2")),
    ("del_enslaved_3", fixture!("del_enslaved_3")),
    ("dump_1", fixture!("dump_1")),
    ("dump_2", fixture!("dump_2")),
    ("enslave_1", fixture!("enslave_1")),
    ("mtu_1", fixture!("mtu_1")),
];

/// One capture by name.
pub fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// The event socket's port id in the captured dump (`dump_1`, seq 77).
pub const DUMP_PID: u32 = 7187;
/// The captured dump's sequence number.
pub const DUMP_SEQ: u32 = 77;

/// Ports in the synthetic burst: `Ethernet0`, `Ethernet4`, … `Ethernet124`.
pub const BURST_PORTS: usize = 32;
/// Messages in the synthetic burst.
pub const BURST_MESSAGES: usize = 1024;

/// The name of port `i` of the burst.
pub fn port_name(i: usize) -> String {
    format!("Ethernet{}", i * 4)
}

/// Offsets of the `IFLA_IFNAME` and `IFLA_MTU` attributes (their `rtattr`
/// headers) in a single-message `RTM_NEWLINK` capture.
fn attribute_offsets(msg: &[u8]) -> (usize, usize) {
    let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
    assert_eq!(len, msg.len(), "one message per capture");
    let (mut name, mut mtu) = (None, None);
    let mut at = 32; // nlmsghdr + ifinfomsg
    while at + 4 <= len {
        let rta_len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let rta_type = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
        assert!(rta_len >= 4, "malformed capture");
        match rta_type {
            3 => name = Some(at),
            4 => mtu = Some(at),
            _ => {}
        }
        at += (rta_len + 3) & !3;
    }
    (name.expect("IFLA_IFNAME"), mtu.expect("IFLA_MTU"))
}

/// A copy of the captured `RTM_NEWLINK` `template` for another link: its
/// ifindex, name and MTU rewritten in place, its flags kept (they are what
/// makes it an admin-up, oper-up or admin-down message). The name must fit
/// the captured attribute's padded size (`Ethernet0` … `Ethernet124` do).
pub fn rewrite_link(template: &[u8], ifindex: i32, name: &str, mtu: u32) -> Vec<u8> {
    let mut m = template.to_vec();
    let (name_at, mtu_at) = attribute_offsets(&m);
    m[20..24].copy_from_slice(&ifindex.to_ne_bytes());
    let old_len = u16::from_ne_bytes([m[name_at], m[name_at + 1]]) as usize;
    let new_len = 4 + name.len() + 1;
    assert_eq!(
        (old_len + 3) & !3,
        (new_len + 3) & !3,
        "{name} does not fit the captured IFLA_IFNAME"
    );
    m[name_at..name_at + 2].copy_from_slice(&(new_len as u16).to_ne_bytes());
    let value = &mut m[name_at + 4..name_at + ((old_len + 3) & !3)];
    value.fill(0);
    value[..name.len()].copy_from_slice(name.as_bytes());
    m[mtu_at + 4..mtu_at + 8].copy_from_slice(&mtu.to_ne_bytes());
    m
}

/// Datagrams laid out back to back (8-byte aligned, as in the receive ring).
pub struct Burst {
    pub bytes: Vec<u8>,
    pub spans: Vec<(usize, usize)>,
}

impl Burst {
    pub fn datagram(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans[i];
        &self.bytes[start..end]
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(s, e)| &self.bytes[s..e])
    }
}

/// What one port goes through in the burst, in order: admin up (flags
/// first, `IFF_RUNNING` from link-watch after), MTU to 9100, admin down,
/// and the same again back to MTU 1500. The kernel sends exactly these.
const CYCLE: [(&str, u32); 8] = [
    ("admin_up_1", 1500),
    ("admin_up_2", 1500),
    ("mtu_1", 9100),
    ("admin_down_1", 9100),
    ("admin_up_1", 9100),
    ("admin_up_2", 9100),
    ("mtu_1", 1500),
    ("admin_down_1", 1500),
];

/// A realistic burst from the real captures: [`BURST_MESSAGES`] single-message
/// datagrams (a multicast `recv` returns one message) round-robin over
/// [`BURST_PORTS`] ports, each port walking [`CYCLE`].
pub fn burst() -> Burst {
    let mut bytes = Vec::new();
    let mut spans = Vec::with_capacity(BURST_MESSAGES);
    for i in 0..BURST_MESSAGES {
        let port = i % BURST_PORTS;
        let (template, mtu) = CYCLE[(i / BURST_PORTS) % CYCLE.len()];
        let msg = rewrite_link(fixture(template), 10 + port as i32, &port_name(port), mtu);
        let start = bytes.len();
        bytes.extend_from_slice(&msg);
        spans.push((start, bytes.len()));
        bytes.resize((bytes.len() + 7) & !7, 0);
    }
    Burst { bytes, spans }
}

/// A `LinkSync` with the burst's ports configured and known in APPL_DB
/// `PORT_TABLE` (the steady state after start-up).
pub fn configured_sync() -> LinkSync {
    let mut table = PortTable::default();
    for i in 0..BURST_PORTS {
        table.add_configured(port_name(i).as_bytes(), true, false);
    }
    LinkSync::new(table, Arc::new(Counters::default()))
}

/// The daemon's STATE_DB command tag.
pub use syncd::port::session::state::StateTag as Tag;

/// The STATE_DB key prefix (`PORT_TABLE` + STATE_DB's separator).
pub const STATE_PREFIX: &[u8] = b"PORT_TABLE|";

/// The daemon's default `redis.write_buffer_bytes`.
pub const WRITE_BUFFER_BYTES: usize = 4 << 20;

/// An instance nobody connects to (the socket-free benches).
pub fn nowhere() -> Instance {
    Instance {
        unix_socket_path: None,
        hostname: "127.0.0.1".into(),
        port: 1,
    }
}

/// One loop turn's STATE_DB encoding: the daemon's own
/// [`encode_port_writes`](syncd::port::session::state::encode_port_writes).
pub fn write_ports(
    ports: &mut PortTable,
    conn: &mut RedisConn<Tag>,
    recorder: &Recorder,
    written_since: &mut Vec<u64>,
) -> u64 {
    syncd::port::session::state::encode_port_writes(
        ports,
        conn,
        STATE_PREFIX,
        recorder,
        written_since,
    )
}

/// Everything one socket-free loop turn touches. Between turns,
/// [`drop_connection`](RedisConn::drop_connection) empties the buffer and
/// the tag queue as `send` and the replies would, keeping their capacity.
pub struct Turn {
    pub sync: LinkSync,
    pub conn: RedisConn<Tag>,
    pub recorder: Recorder,
    pub samples: crossbeam_channel::Receiver<syncd::engine::metrics::Sample>,
    pub written_since: Vec<u64>,
}

/// Datagrams per `recvmmsg` in the daemon (`netlink::reader::BATCH`).
pub const RECV_BATCH: usize = syncd::engine::netlink::reader::BATCH;

/// Own port id of the event socket in the benches (multicast events carry pid 0).
pub const OWN_PID: u32 = 4242;

impl Turn {
    pub fn new() -> Turn {
        let conn = RedisConn::new("STATE_DB", nowhere(), WRITE_BUFFER_BYTES, 100, 1000);
        let (recorder, samples) = Recorder::new();
        Turn {
            sync: configured_sync(),
            conn,
            recorder,
            samples,
            written_since: Vec::with_capacity(1024),
        }
    }

    /// Apply `datagrams`, stamped with the monotonic clock once per
    /// `recvmmsg` batch as the loop's `drain` does, then encode the turn's
    /// writes. Returns the commands.
    pub fn run<'a>(&mut self, datagrams: impl Iterator<Item = &'a [u8]>) -> u64 {
        let mut rx = 0;
        for (i, d) in datagrams.enumerate() {
            if i % RECV_BATCH == 0 {
                rx = syncd::engine::sys::monotonic_ns();
            }
            self.sync.on_datagram(d, rx, OWN_PID);
        }
        let commands = self.write();
        self.reset();
        commands
    }

    /// The turn's encoding, each tag queued as the daemon's `push` does.
    pub fn write(&mut self) -> u64 {
        write_ports(
            &mut self.sync.ports,
            &mut self.conn,
            &self.recorder,
            &mut self.written_since,
        )
    }

    /// What `send` + the replies would do: empty the buffer and the FIFO,
    /// and let the metrics thread take the samples.
    pub fn reset(&mut self) {
        self.conn.drop_connection(0, drop);
        while self.samples.try_recv().is_ok() {}
    }
}

impl Default for Turn {
    fn default() -> Self {
        Turn::new()
    }
}

// ---- counting allocator ------------------------------------------------------

thread_local! {
    // `const` thread-locals without `Drop` need no lazy initialisation and
    // register no destructor, so touching them cannot allocate (which would
    // recurse into the allocator).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static ALLOC_BYTES: Cell<u64> = const { Cell::new(0) };
    static DEALLOCS: Cell<u64> = const { Cell::new(0) };
    static FIRST_SIZES: Cell<[usize; 4]> = const { Cell::new([0; 4]) };
}

/// The system allocator, counting per thread: the harness's other threads
/// (test runner, Redis log reader) do not disturb the thread measured.
pub struct CountingAlloc;

fn count_alloc(size: usize) {
    let _ = ALLOCS.try_with(|n| {
        let k = n.get();
        if k < 4 {
            let _ = FIRST_SIZES.try_with(|s| {
                let mut sizes = s.get();
                sizes[k as usize] = size;
                s.set(sizes);
            });
        }
        n.set(k + 1);
    });
    let _ = ALLOC_BYTES.try_with(|b| b.set(b.get() + size as u64));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the counting touches only
// `const` thread-locals, which neither allocate nor panic (`try_with`).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded from our caller, who upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded from our caller, who upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        // SAFETY: forwarded from our caller, who upholds `realloc`'s contract
        // (`ptr` came from this allocator, which is `System` underneath).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = DEALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded from our caller; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations seen on this thread (allocs and reallocs count as one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocCounts {
    pub allocs: u64,
    pub bytes: u64,
    pub deallocs: u64,
    /// Sizes of the first few allocations since the last reset.
    pub first_sizes: [usize; 4],
}

/// Zero this thread's counts.
pub fn reset_counts() {
    ALLOCS.with(|n| n.set(0));
    ALLOC_BYTES.with(|n| n.set(0));
    DEALLOCS.with(|n| n.set(0));
    FIRST_SIZES.with(|s| s.set([0; 4]));
}

/// This thread's counts since the last [`reset_counts`].
pub fn counts() -> AllocCounts {
    AllocCounts {
        allocs: ALLOCS.with(Cell::get),
        bytes: ALLOC_BYTES.with(Cell::get),
        deallocs: DEALLOCS.with(Cell::get),
        first_sizes: FIRST_SIZES.with(Cell::get),
    }
}

/// Run `f` and return what it allocated on this thread.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocCounts) {
    reset_counts();
    let r = f();
    (r, counts())
}
