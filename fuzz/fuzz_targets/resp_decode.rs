//! Arbitrary bytes as a Redis receive buffer through `reply::decode`: whole,
//! at every proper prefix, frame after frame, and fed in pieces cut at
//! points taken from the input's last bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portsyncd_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::resp(data);
    // The last 4 bytes choose up to 4 cut points of the rest.
    if data.len() > 4 {
        let (buf, tail) = data.split_at(data.len() - 4);
        let cuts: Vec<usize> = tail.iter().map(|&b| b as usize * buf.len() / 255).collect();
        checks::resp_split(buf, &cuts);
    }
});
