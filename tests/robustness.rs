//! Bad input never crashes us: random bytes and mutated real kernel captures
//! through the netlink parser and `LinkSync`, random and mutated real Redis
//! replies through the RESP decoder. The invariants are those of the fuzz
//! targets (`fuzz/src/checks.rs`); this runs them in `cargo test`, where
//! cargo-fuzz cannot run, from a small deterministic PRNG.
//!
//! `ROBUSTNESS_SEED=<n>` and `ROBUSTNESS_CASES=<n>` change the run; a failing
//! case prints its seed, case number and input (hex) before the panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

#[path = "../fuzz/src/checks.rs"]
mod checks;
use checks::seen;

macro_rules! capture {
    ($dir:literal, $name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $name)) as &[u8]
    };
}

/// The real kernel captures (`tests/fixtures/netlink`, and two kernel
/// answers to an `RTM_NEWLINK` request: an ack and `-ENODEV`).
const NETLINK: [&[u8]; 13] = [
    capture!("fuzz/corpus/netlink_parse", "seed-ack_ok.bin"),
    capture!("fuzz/corpus/netlink_parse", "seed-ack_enodev.bin"),
    capture!("tests/fixtures/netlink", "admin_down_1.bin"),
    capture!("tests/fixtures/netlink", "admin_up_1.bin"),
    capture!("tests/fixtures/netlink", "admin_up_2.bin"),
    capture!("tests/fixtures/netlink", "create_2.bin"),
    capture!("tests/fixtures/netlink", "del_1.bin"),
    capture!("tests/fixtures/netlink", "del_2.bin"),
    capture!("tests/fixtures/netlink", "del_enslaved_3.bin"),
    capture!("tests/fixtures/netlink", "dump_1.bin"),
    capture!("tests/fixtures/netlink", "dump_2.bin"),
    capture!("tests/fixtures/netlink", "enslave_1.bin"),
    capture!("tests/fixtures/netlink", "mtu_1.bin"),
];

/// Real Redis 7 replies (the resp_decode fuzz seeds).
const RESP: [&[u8]; 15] = [
    capture!("fuzz/corpus/resp_decode", "seed-busy.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-del_batch.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-exists.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-hget_nil.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-hgetall_config_port.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-hset_batch_32.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-hset_batch_32_again.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-keys_empty.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-keyspace_pmessages.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-mixed_pipeline.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-noscript.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-psubscribe.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-script_load.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-select_ok.resp"),
    capture!("fuzz/corpus/resp_decode", "seed-wrongtype.resp"),
];

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Run `cases` inputs from `generate` through `check`; on a panic, say
/// which case and input before failing. Every outcome in `expect`
/// (`checks::seen` bits) must have been reached by some case, so a
/// generator that stopped reaching the parser's depths is noticed.
fn run(
    name: &str,
    cases: u64,
    expect: u8,
    generate: impl Fn(&mut Rng) -> Vec<u8>,
    check: impl Fn(&[u8]) -> u8,
) {
    let seed = env_u64("ROBUSTNESS_SEED", 0x5eed_0f90_7500);
    let cases = env_u64("ROBUSTNESS_CASES", cases);
    let mut rng = Rng::new(seed ^ name.len() as u64);
    let mut saw = 0;
    for case in 0..cases {
        let input = generate(&mut rng);
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(s) => saw |= s,
            Err(_) => panic!(
                "{name}: case {case} (ROBUSTNESS_SEED={seed}) failed on {} bytes: {}",
                input.len(),
                hex(&input)
            ),
        }
    }
    assert_eq!(
        saw & expect,
        expect,
        "{name}: outcomes expected {expect:#b}, reached {saw:#b}"
    );
}

/// Values that tend to sit on boundaries.
const INTERESTING_U32: [u32; 12] = [
    0,
    1,
    3,
    4,
    15,
    16,
    17,
    0x7f,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
];

/// Offsets of every `nlmsghdr` length and every `rtattr` length in a
/// datagram, found by walking it as the kernel laid it out.
fn length_fields(d: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let (mut headers, mut attrs) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at + 16 <= d.len() {
        let len = u32::from_ne_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]) as usize;
        if len < 16 || at + len > d.len() {
            break;
        }
        headers.push(at);
        let msg_type = u16::from_ne_bytes([d[at + 4], d[at + 5]]);
        if msg_type == 16 || msg_type == 17 {
            let mut a = at + 32;
            while a + 4 <= at + len {
                let rta_len = u16::from_ne_bytes([d[a], d[a + 1]]) as usize;
                if rta_len < 4 {
                    break;
                }
                attrs.push(a);
                // IFLA_LINKINFO's nested attributes.
                if u16::from_ne_bytes([d[a + 2], d[a + 3]]) & 0x3fff == 18 {
                    let mut n = a + 4;
                    while n + 4 <= (a + rta_len).min(at + len) {
                        let l = u16::from_ne_bytes([d[n], d[n + 1]]) as usize;
                        if l < 4 {
                            break;
                        }
                        attrs.push(n);
                        n += (l + 3) & !3;
                    }
                }
                a += (rta_len + 3) & !3;
            }
        }
        at += (len + 3) & !3;
    }
    (headers, attrs)
}

/// One structured mutation of a netlink datagram.
fn mutate_netlink(rng: &mut Rng, d: &mut Vec<u8>) {
    if d.is_empty() {
        d.extend(rng.bytes(16));
        return;
    }
    match rng.below(10) {
        // A boundary value in an aligned 32-bit field (errno, flags, ifindex, …).
        9 => {
            let at = rng.below(d.len() / 4 + 1) * 4;
            if at + 4 <= d.len() {
                let v = *rng.pick(&INTERESTING_U32);
                d[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
        // Flip a few bits.
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
        }
        // Truncate anywhere.
        1 => {
            let n = rng.below(d.len() + 1);
            d.truncate(n);
        }
        // Corrupt a message length.
        2 | 3 => {
            let (headers, _) = length_fields(d);
            if let Some(&at) = headers.get(rng.below(headers.len().max(1))) {
                let v = if rng.chance(2) {
                    *rng.pick(&INTERESTING_U32)
                } else {
                    let len = u32::from_ne_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
                    len.wrapping_add(rng.below(33) as u32).wrapping_sub(16)
                };
                d[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
        // Corrupt an attribute length (often a nested one too).
        4 | 5 => {
            let (_, attrs) = length_fields(d);
            if let Some(&at) = attrs.get(rng.below(attrs.len().max(1))) {
                let len = u16::from_ne_bytes([d[at], d[at + 1]]);
                let v = match rng.below(3) {
                    0 => *rng.pick(&INTERESTING_U32) as u16,
                    1 => len.wrapping_add(rng.below(9) as u16).wrapping_sub(4),
                    _ => rng.next() as u16,
                };
                d[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            }
        }
        // Splice: a prefix of this one and a suffix of another capture.
        6 => {
            let other = *rng.pick(&NETLINK);
            let cut = rng.below(d.len() + 1);
            let from = rng.below(other.len() + 1);
            d.truncate(cut);
            d.extend_from_slice(&other[from..]);
        }
        // Pack another whole capture behind it (a dump-like datagram).
        7 => {
            d.resize((d.len() + 3) & !3, 0);
            d.extend_from_slice(rng.pick::<&[u8]>(&NETLINK));
        }
        // Overwrite a random span with random bytes.
        _ => {
            let at = rng.below(d.len());
            let n = (1 + rng.below(16)).min(d.len() - at);
            let fill = rng.bytes(n);
            d[at..at + n].copy_from_slice(&fill);
        }
    }
}

#[test]
fn random_bytes_through_netlink_parser_and_sync() {
    run(
        "netlink/random",
        3_000,
        seen::BAD_MESSAGE | seen::BAD_FRAMING,
        |rng| {
            let len = rng.below(512);
            let mut d = rng.bytes(len);
            // Often a plausible header so the walk goes further than byte 0.
            if d.len() >= 16 && rng.chance(2) {
                let len = d.len() as u32 - rng.below(4) as u32;
                d[0..4].copy_from_slice(&len.to_ne_bytes());
                let t: u16 = *rng.pick(&[16u16, 17, 3, 2, 1]);
                d[4..6].copy_from_slice(&t.to_ne_bytes());
            }
            d
        },
        checks::netlink,
    );
}

#[test]
fn mutated_captures_through_netlink_parser_and_sync() {
    run(
        "netlink/mutated",
        4_000,
        seen::LINK | seen::BAD_MESSAGE | seen::BAD_FRAMING | seen::WRITE,
        |rng| {
            let mut d = rng.pick(&NETLINK).to_vec();
            for _ in 0..1 + rng.below(4) {
                mutate_netlink(rng, &mut d);
            }
            d
        },
        checks::netlink,
    );
}

#[test]
fn mutated_capture_histories_through_one_link_sync() {
    run(
        "netlink/history",
        400,
        seen::LINK | seen::BAD_MESSAGE | seen::BAD_FRAMING | seen::WRITE,
        |rng| {
            // A history as one input: datagrams joined by a marker.
            let mut out = Vec::new();
            for i in 0..2 + rng.below(6) {
                if i > 0 {
                    out.extend_from_slice(b"\xffNL\xff");
                }
                let mut d = rng.pick(&NETLINK).to_vec();
                if rng.chance(2) {
                    mutate_netlink(rng, &mut d);
                }
                out.extend_from_slice(&d);
            }
            out
        },
        |input| {
            let parts: Vec<&[u8]> = split_marker(input);
            checks::netlink_sequence(parts)
        },
    );
}

fn split_marker(input: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + 4 <= input.len() {
        if &input[i..i + 4] == b"\xffNL\xff" {
            parts.push(&input[start..i]);
            i += 4;
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&input[start..]);
    parts
}

/// Every real capture, whole, parses and applies cleanly.
#[test]
fn real_captures_pass_the_checks() {
    let mut saw = 0;
    for d in NETLINK {
        saw |= checks::netlink(d);
    }
    assert_eq!(saw, seen::LINK | seen::WRITE, "captures are clean");
    assert_eq!(checks::netlink_sequence(NETLINK), seen::LINK | seen::WRITE);
}

/// Found by `cargo fuzz` (netlink_parse, ~38k executions): an
/// `NLMSG_ERROR` whose errno field is `0x80000000` made `-(raw as i32)`
/// overflow, a panic wherever overflow checks are on (debug builds, fuzzing).
#[test]
fn nlmsg_error_with_errno_i32_min_does_not_overflow() {
    use syncd::engine::netlink::parse::{messages, parse_event, Event};
    let mut d = NETLINK[1].to_vec(); // -ENODEV
    d[16..20].copy_from_slice(&0x8000_0000u32.to_ne_bytes());
    let (header, payload) = messages(&d).next().unwrap().unwrap();
    assert_eq!(
        parse_event(&header, payload),
        Ok(Event::Ack { errno: i32::MIN })
    );
    checks::netlink(&d);
    let (header, payload) = messages(NETLINK[1]).next().unwrap().unwrap();
    assert_eq!(parse_event(&header, payload), Ok(Event::Ack { errno: 19 }));
}

/// One structured mutation of a RESP stream.
fn mutate_resp(rng: &mut Rng, b: &mut Vec<u8>) {
    const TOKENS: [&[u8]; 14] = [
        b"\r\n",
        b"\r",
        b"\n",
        b"*",
        b"$",
        b":",
        b"+",
        b"-",
        b"-1",
        b"0",
        b"*-1\r\n",
        b"$-1\r\n",
        b"99999999999999999999",
        b"-9223372036854775808",
    ];
    if b.is_empty() {
        b.extend_from_slice(rng.pick::<&[u8]>(&TOKENS));
        return;
    }
    match rng.below(7) {
        0 => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 => {
            let n = rng.below(b.len() + 1);
            b.truncate(n);
        }
        // Insert a protocol token anywhere.
        2 | 3 => {
            let at = rng.below(b.len() + 1);
            let t = rng.pick(&TOKENS);
            b.splice(at..at, t.iter().copied());
        }
        // Change a length or count digit.
        4 => {
            let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
            if let Some(&i) = digits.get(rng.below(digits.len().max(1))) {
                b[i] = b"0123456789-"[rng.below(11)];
            }
        }
        // Splice with another real reply.
        5 => {
            let other = *rng.pick(&RESP);
            let cut = rng.below(b.len() + 1);
            let from = rng.below(other.len() + 1);
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = rng.below(b.len() + 1);
            let n = rng.below(8);
            let r = rng.bytes(n);
            b.splice(at..at, r);
        }
    }
}

#[test]
fn random_bytes_through_the_reply_decoder() {
    run(
        "resp/random",
        5_000,
        seen::FRAME | seen::INCOMPLETE | seen::PROTOCOL_ERROR,
        |rng| {
            let len = rng.below(64);
            let mut b = rng.bytes(len);
            // Mostly protocol-looking: a type byte first, CRLFs sprinkled.
            if !b.is_empty() && rng.chance(2) {
                b[0] = *rng.pick(b"*$:+-");
                for _ in 0..rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = if rng.chance(2) { b'\r' } else { b'\n' };
                }
            }
            b
        },
        checks::resp,
    );
}

#[test]
fn mutated_real_replies_through_the_reply_decoder() {
    run(
        "resp/mutated",
        5_000,
        seen::FRAME | seen::INCOMPLETE | seen::PROTOCOL_ERROR,
        |rng| {
            let mut b = rng.pick(&RESP).to_vec();
            if rng.chance(3) {
                b.extend_from_slice(rng.pick::<&[u8]>(&RESP));
            }
            for _ in 0..1 + rng.below(3) {
                mutate_resp(rng, &mut b);
            }
            b
        },
        checks::resp,
    );
}

/// Every real reply stream decodes the same however `recv` cut it.
#[test]
fn real_replies_decode_the_same_when_split_anywhere() {
    let mut all = Vec::new();
    for r in RESP {
        assert_eq!(checks::resp(r), seen::FRAME);
        all.extend_from_slice(r);
    }
    for cut in 0..=all.len() {
        checks::resp_split(&all, &[cut]);
    }
    let mut rng = Rng::new(7);
    for _ in 0..500 {
        let cuts: Vec<usize> = (0..1 + rng.below(8))
            .map(|_| rng.below(all.len() + 1))
            .collect();
        checks::resp_split(&all, &cuts);
    }
}

/// A reply nested `depth` arrays deep (`*1\r\n` … `:1\r\n`).
fn nested_reply(depth: usize) -> Vec<u8> {
    let mut b = b"*1\r\n".repeat(depth);
    b.extend_from_slice(b":1\r\n");
    b
}

/// Guards the stack overflow found while fuzzing: `redis-protocol`'s
/// `decode_range` recurses once per nested array with no depth limit, so a
/// reply nested ~10,000 deep (40 KB) aborts a thread with a 2 MiB stack and
/// ~50,000 deep (200 KB) aborts the main thread — far below
/// `redis::conn::MAX_IN_BYTES`. Only a broken or hostile Redis sends that,
/// but it killed the process instead of dropping the connection, until
/// `reply::decode` bounded the depth (`MAX_NESTING`) before decoding. Run
/// in a child process, because a stack overflow cannot be caught.
#[test]
fn deeply_nested_reply_is_an_error_not_a_stack_overflow() {
    if let Ok(depth) = std::env::var("ROBUSTNESS_NESTED_CHILD") {
        let b = nested_reply(depth.parse().unwrap());
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || syncd::engine::redis::reply::decode(&b).map(|o| o.map(|(_, n)| n)))
            .unwrap()
            .join()
            .unwrap();
        println!("decoded: {r:?}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "deeply_nested_reply_is_an_error_not_a_stack_overflow",
            "--nocapture",
        ])
        .env("ROBUSTNESS_NESTED_CHILD", "1000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decoding a reply nested 1,000,000 deep killed the process: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn moderately_nested_replies_decode() {
    // What Redis really sends is shallow; a few hundred levels must work.
    let b = nested_reply(200);
    assert_eq!(
        syncd::engine::redis::reply::decode(&b)
            .unwrap()
            .map(|(_, n)| n),
        Some(b.len())
    );
    assert_eq!(checks::resp(&b), seen::FRAME);
}

/// A neighbor message as the kernel builds it (ndmsg, `NDA_DST`,
/// `NDA_LLADDR`), of a random family, state and flags.
fn neighbor_message(rng: &mut Rng) -> Vec<u8> {
    let family = *rng.pick(&[2u8, 10, 7, 0, 2, 10]);
    let mut p = vec![family, 0, 0, 0];
    p.extend_from_slice(&(1 + rng.below(8) as i32).to_ne_bytes());
    let state: u16 = *rng.pick(&[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0]);
    p.extend_from_slice(&state.to_ne_bytes());
    p.push(*rng.pick(&[0u8, 0x10, 0xff]));
    p.push(1);
    let attr = |p: &mut Vec<u8>, t: u16, v: &[u8]| {
        let len = 4 + v.len();
        p.extend_from_slice(&(len as u16).to_ne_bytes());
        p.extend_from_slice(&t.to_ne_bytes());
        p.extend_from_slice(v);
        p.resize(p.len() + (4 - len % 4) % 4, 0);
    };
    let dst_len = *rng.pick(&[4usize, 16, 4, 16, 0, 3, 6]);
    let mut dst = rng.bytes(dst_len);
    if dst_len == 16 && rng.chance(3) {
        dst[0] = 0xfe;
        dst[1] = 0x80;
    }
    attr(&mut p, 1, &dst);
    if !rng.chance(5) {
        let ll_len = *rng.pick(&[6usize, 6, 6, 0, 4, 16, 20]);
        let mut ll = rng.bytes(ll_len);
        if ll_len == 6 && rng.chance(8) {
            ll = vec![0xff; 6];
        }
        attr(&mut p, 2, &ll);
    }
    let t: u16 = *rng.pick(&[28u16, 29]);
    let mut d = Vec::new();
    d.extend_from_slice(&((16 + p.len()) as u32).to_ne_bytes());
    d.extend_from_slice(&t.to_ne_bytes());
    d.extend_from_slice(&0u16.to_ne_bytes());
    d.extend_from_slice(&0u32.to_ne_bytes());
    d.extend_from_slice(&0u32.to_ne_bytes());
    d.extend_from_slice(&p);
    d
}

#[test]
fn neighbor_messages_mutated_through_neighsyncds_follower() {
    run(
        "neighbors/mutated",
        4_000,
        seen::WRITE,
        |rng| {
            let mut d = Vec::new();
            for _ in 0..1 + rng.below(6) {
                d.extend(neighbor_message(rng));
            }
            if rng.chance(2) {
                mutate_netlink(rng, &mut d);
            }
            d
        },
        checks::neighbors,
    );
}

#[test]
fn random_bytes_through_neighsyncds_follower() {
    run(
        "neighbors/random",
        2_000,
        0,
        |rng| {
            let len = rng.below(512);
            let mut d = rng.bytes(len);
            if d.len() >= 16 && rng.chance(2) {
                let len = d.len() as u32 - rng.below(4) as u32;
                d[0..4].copy_from_slice(&len.to_ne_bytes());
                let t: u16 = *rng.pick(&[28u16, 29, 16, 17, 3, 2]);
                d[4..6].copy_from_slice(&t.to_ne_bytes());
            }
            d
        },
        checks::neighbors,
    );
}
