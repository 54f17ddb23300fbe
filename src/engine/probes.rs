//! Static tracepoints for `perf` (USDT: SystemTap SDT notes in the binary),
//! so one event's trip from the kernel to Redis's reply can be followed on
//! a running daemon without rebuilding it. Provider `syncd`; PERF.md §4.13
//! has the recipe (`perf probe sdt_syncd:neigh_apply`, `perf record -e
//! 'sdt_syncd:*'`, `perf script`).
//!
//! A probe is one `nop` until a tracer enables it. The per-message ones
//! (`port_apply`, `neigh_apply`), `redis_send` and the `_acked` ones also
//! test a semaphore first and compute their arguments only while traced
//! (a key looked up, the clock read): a test and a branch not taken, so the
//! compiler keeps its registers for the work. Arguments are integers, which perf prints as
//! signed decimals; stamps are `CLOCK_MONOTONIC` nanoseconds, the clock of
//! the daemons' own latency samples, so `reply_ns - rx_ns` is the recv →
//! reply latency of that one change.
//!
//! | probe | fired when | arguments |
//! |---|---|---|
//! | `netlink_recv` | a batch of datagrams is handed to the follower | datagrams, rx_ns |
//! | `port_apply` | a link message went through SONiC's rules | ifindex, outcome (0 owes a write, 1 a delete, 2 held, 3 skipped, 4 refused), rx_ns |
//! | `neigh_apply` | a neighbor message went through SONiC's rules | ifindex, family, addr_hi, addr_lo, want (1 set, 2 del, 0 skipped), rx_ns |
//! | `redis_send` | bytes went to a Redis socket | bytes sent, bytes still queued, now_ns |
//! | `redis_recv` | bytes came from a Redis socket | bytes, read_ns |
//! | `port_acked` | Redis acknowledged a port's write | ifindex, rx_ns, reply_ns |
//! | `neigh_acked` | Redis acknowledged a neighbor's write | ifindex, family, addr_hi, addr_lo, rx_ns, reply_ns |
//!
//! `addr_hi` and `addr_lo` are the address's bytes 0–7 and 8–15 read big
//! endian: an IPv4 address is the top 32 bits of `addr_hi`. Names avoid
//! words perf's event parser reserves (`write`, `read`, …).

use probe::{probe, probe_lazy};

/// Outcome codes of `port_apply`.
pub mod port_outcome {
    pub const WRITE: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const HELD: u8 = 2;
    pub const SKIPPED: u8 = 3;
    pub const REFUSED: u8 = 4;
}

/// `want` codes of `neigh_apply`.
pub mod neigh_want {
    pub const SKIPPED: u8 = 0;
    pub const SET: u8 = 1;
    pub const DEL: u8 = 2;
}

/// An address's 16 bytes as the two probe arguments.
#[inline(always)]
pub fn addr_words(addr: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&addr[..8]);
    lo.copy_from_slice(&addr[8..]);
    (u64::from_be_bytes(hi), u64::from_be_bytes(lo))
}

#[inline(always)]
pub fn netlink_recv(datagrams: usize, rx_ns: u64) {
    probe!(syncd, netlink_recv, datagrams, rx_ns);
}

/// `outcome` is worked out only while traced.
#[inline(always)]
pub fn port_apply(ifindex: i32, outcome: impl Fn() -> u8, rx_ns: u64) {
    probe_lazy!(syncd, port_apply, ifindex, outcome(), rx_ns);
}

#[inline(always)]
pub fn neigh_apply(ifindex: i32, family: u8, addr: &[u8; 16], want: u8, rx_ns: u64) {
    probe_lazy!(
        syncd,
        neigh_apply,
        ifindex,
        family,
        addr_words(addr).0,
        addr_words(addr).1,
        want,
        rx_ns
    );
}

/// The clock is read only while traced.
#[inline(always)]
pub fn redis_send(sent: usize, queued: usize) {
    probe_lazy!(
        syncd,
        redis_send,
        sent,
        queued,
        crate::engine::sys::monotonic_ns()
    );
}

#[inline(always)]
pub fn redis_recv(bytes: usize, read_ns: u64) {
    probe!(syncd, redis_recv, bytes, read_ns);
}

/// `ifindex` is looked up only while traced.
#[inline(always)]
pub fn port_acked(ifindex: impl Fn() -> i32, rx_ns: u64, reply_ns: u64) {
    probe_lazy!(syncd, port_acked, ifindex(), rx_ns, reply_ns);
}

/// The key (ifindex, family, address) is looked up only while traced;
/// `None` (gone already) fires with zeros.
#[inline(always)]
pub fn neigh_acked(key: impl Fn() -> Option<(i32, u8, [u8; 16])>, rx_ns: u64, reply_ns: u64) {
    probe_lazy!(
        syncd,
        neigh_acked,
        key().map_or(0, |k| k.0),
        key().map_or(0, |k| k.1),
        key().map_or(0, |k| addr_words(&k.2).0),
        key().map_or(0, |k| addr_words(&k.2).1),
        rx_ns,
        reply_ns
    );
}
