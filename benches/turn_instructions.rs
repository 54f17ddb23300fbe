//! A driver for counting instructions per message with callgrind, which is
//! repeatable whatever else the machine does (wall-clock benches are not):
//!
//! ```sh
//! cargo bench --bench turn_instructions --no-run
//! B=$(ls -t target/release/deps/turn_instructions-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/ci.1 $B 1
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/ci.11 $B 11
//! # per message = (Ir(11) - Ir(1)) / (10 * 1024)
//! ```
//!
//! It runs the `loop_turn` bench's turn (parse + apply + encode, turns of
//! 32 messages) over the 1024-message burst N times; the difference of two
//! runs removes start-up and set-up.

mod support;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let burst = support::burst();
    let mut t = support::Turn::new();
    let mut commands = 0;
    for _ in 0..rounds {
        for chunk in burst.spans.chunks(32) {
            commands += t.run(chunk.iter().map(|&(s, e)| &burst.bytes[s..e]));
        }
    }
    println!(
        "{rounds} rounds, {} messages, {commands} commands",
        rounds * burst.len()
    );
}
