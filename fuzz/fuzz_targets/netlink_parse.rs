//! Arbitrary bytes as one netlink datagram, through `messages`,
//! `parse_event` and `LinkSync::on_datagram`; and, when the input holds the
//! marker `\xffNL\xff`, cut there into a sequence of datagrams fed to one
//! `LinkSync`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portsyncd_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::netlink(data);
    // Also as a sequence of datagrams: cut wherever the input holds the
    // 4-byte marker "\xffNL\xff", so the fuzzer can learn to build
    // multi-datagram histories (dump, overrun, redo) from one input.
    if data.len() > 4 {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i + 4 <= data.len() {
            if &data[i..i + 4] == b"\xffNL\xff" {
                parts.push(&data[start..i]);
                i += 4;
                start = i;
            } else {
                i += 1;
            }
        }
        if !parts.is_empty() {
            parts.push(&data[start..]);
            checks::netlink_sequence(parts);
        }
    }
});
