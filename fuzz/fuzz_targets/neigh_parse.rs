//! Arbitrary bytes as one netlink datagram through neighsyncd's follower:
//! neighbor and link messages, SONiC's rules, the table, the
//! ProducerStateTable encoding (`checks::neighbors`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portsyncd_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::neighbors(data);
});
