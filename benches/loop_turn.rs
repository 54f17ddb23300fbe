//! One full loop turn with no sockets: parse + apply + encode over a burst
//! synthesised from real captures, and the allocations per message in steady
//! state, counted by this binary's global allocator.
//!
//! `cargo bench --bench loop_turn`
//!
//! The burst is 1024 single-message `RTM_NEWLINK` datagrams over 32 ports
//! (`support::burst`), parsed where they lie (as in the receive ring; the
//! kernel's copy into it is not ours to count). A turn applies `turn` of
//! them (stamped with the monotonic clock once per 32, as `drain` does per
//! `recvmmsg`) and then encodes the writes owed into the STATE_DB
//! connection's buffer, as `Daemon::write_ports` does. With
//! `turn = 1024` the 32 messages per port collapse into one `HSET` each;
//! with `turn = 1` every message is written. Throughput is in messages.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod support;
use support::{Burst, Turn};

#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

const TURN_SIZES: [usize; 3] = [1, 32, 1024];

/// The whole burst, `turn` messages per loop turn. Returns the commands.
fn run_burst(t: &mut Turn, burst: &Burst, turn: usize) -> u64 {
    let mut commands = 0;
    for chunk in burst.spans.chunks(turn) {
        commands += t.run(chunk.iter().map(|&(s, e)| &burst.bytes[s..e]));
    }
    commands
}

/// Allocations per message once warm: printed, not timed.
fn allocations_per_message(_c: &mut Criterion) {
    let burst = support::burst();
    for turn in TURN_SIZES {
        let mut t = Turn::new();
        // The first turns may allocate (the table's FIFOs settle).
        for _ in 0..3 {
            run_burst(&mut t, &burst, turn);
        }
        let rounds = 100u64;
        let (commands, counts) = support::measure(|| {
            let mut commands = 0;
            for _ in 0..rounds {
                commands += run_burst(&mut t, &burst, turn);
            }
            commands
        });
        let msgs = rounds * burst.len() as u64;
        println!(
            "alloc/steady_state/turn_of_{turn}: {} allocations, {} bytes, {} frees over {msgs} messages \
             ({} commands) = {:.6} allocations per message",
            counts.allocs,
            counts.bytes,
            counts.deallocs,
            commands,
            counts.allocs as f64 / msgs as f64
        );
    }
}

fn loop_turn(c: &mut Criterion) {
    let burst = support::burst();
    let mut g = c.benchmark_group("loop_turn/burst_1024");
    g.throughput(Throughput::Elements(burst.len() as u64));
    for turn in TURN_SIZES {
        let mut t = Turn::new();
        run_burst(&mut t, &burst, turn);
        g.bench_with_input(BenchmarkId::new("turn_of", turn), &turn, |b, &turn| {
            b.iter(|| run_burst(&mut t, black_box(&burst), turn))
        });
    }
    g.finish();
}

criterion_group!(benches, allocations_per_message, loop_turn);
criterion_main!(benches);
