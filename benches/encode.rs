//! RESP encoding of one turn's batch of STATE_DB `HSET`s: our hand-written
//! encoder against `redis-protocol`'s, byte-identical output.
//!
//! `cargo bench --bench encode`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redis_protocol::resp2::encode::{encode as encode_owned, encode_borrowed};
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame, Resp2Frame};
use syncd::engine::redis::encode;
use syncd::port::rules::LinkStatus;

mod support;

const PREFIX: &[u8] = support::STATE_PREFIX;

/// The batch: `n` ports with a mix of states and MTUs.
fn batch(n: usize) -> Vec<(String, LinkStatus)> {
    (0..n)
        .map(|i| {
            (
                format!("Ethernet{}", i * 4),
                LinkStatus {
                    admin_up: i % 2 == 0,
                    oper_up: i % 3 == 0,
                    mtu: if i % 4 == 0 { 9100 } else { 1500 },
                },
            )
        })
        .collect()
}

fn up_down(up: bool) -> &'static [u8] {
    if up {
        b"up"
    } else {
        b"down"
    }
}

/// Decimal digits of `n` at the end of `buf`.
fn digits(buf: &mut [u8; 10], mut n: u32) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `redis-protocol` without allocating: borrowed frames on the stack,
/// encoded into room reserved at the end of `out`.
fn hset_borrowed(out: &mut Vec<u8>, name: &[u8], s: &LinkStatus) {
    let mut key = [0u8; 64];
    let key_len = PREFIX.len() + name.len();
    key[..PREFIX.len()].copy_from_slice(PREFIX);
    key[PREFIX.len()..key_len].copy_from_slice(name);
    let mut mtu = [0u8; 10];
    let args = [
        BorrowedFrame::BulkString(b"HSET"),
        BorrowedFrame::BulkString(&key[..key_len]),
        BorrowedFrame::BulkString(b"state"),
        BorrowedFrame::BulkString(b"ok"),
        BorrowedFrame::BulkString(b"netdev_oper_status"),
        BorrowedFrame::BulkString(up_down(s.oper_up)),
        BorrowedFrame::BulkString(b"admin_status"),
        BorrowedFrame::BulkString(up_down(s.admin_up)),
        BorrowedFrame::BulkString(b"mtu"),
        BorrowedFrame::BulkString(digits(&mut mtu, s.mtu)),
    ];
    let frame = BorrowedFrame::Array(&args);
    let at = out.len();
    out.resize(at + frame.encode_len(false), 0);
    let n = encode_borrowed(&mut out[at..], &frame, false).expect("room reserved");
    out.truncate(at + n);
}

/// `redis-protocol` the straightforward way: an owned frame per command.
fn hset_owned(out: &mut Vec<u8>, name: &[u8], s: &LinkStatus) {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(name);
    let frame = OwnedFrame::Array(vec![
        OwnedFrame::BulkString(b"HSET".to_vec()),
        OwnedFrame::BulkString(key),
        OwnedFrame::BulkString(b"state".to_vec()),
        OwnedFrame::BulkString(b"ok".to_vec()),
        OwnedFrame::BulkString(b"netdev_oper_status".to_vec()),
        OwnedFrame::BulkString(up_down(s.oper_up).to_vec()),
        OwnedFrame::BulkString(b"admin_status".to_vec()),
        OwnedFrame::BulkString(up_down(s.admin_up).to_vec()),
        OwnedFrame::BulkString(b"mtu".to_vec()),
        OwnedFrame::BulkString(s.mtu.to_string().into_bytes()),
    ]);
    let at = out.len();
    out.resize(at + frame.encode_len(false), 0);
    let n = encode_owned(&mut out[at..], &frame, false).expect("room reserved");
    out.truncate(at + n);
}

type Encoder = fn(&mut Vec<u8>, &[u8], &LinkStatus);

fn encode_batch(out: &mut Vec<u8>, ports: &[(String, LinkStatus)], f: Encoder) -> usize {
    out.clear();
    for (name, status) in ports {
        f(out, name.as_bytes(), status);
    }
    out.len()
}

fn hand(out: &mut Vec<u8>, name: &[u8], s: &LinkStatus) {
    encode::hset_port_status(out, PREFIX, name, s);
}

fn encoding(c: &mut Criterion) {
    let encoders: [(&str, Encoder); 3] = [
        ("hand_written", hand),
        ("redis_protocol_borrowed", hset_borrowed),
        ("redis_protocol_owned", hset_owned),
    ];
    // All three must write the same bytes, or the comparison means nothing.
    let ports = batch(256);
    let mut reference = Vec::new();
    encode_batch(&mut reference, &ports, hand);
    for (name, f) in encoders {
        let mut out = Vec::new();
        encode_batch(&mut out, &ports, f);
        assert!(
            out == reference,
            "{name} differs from the hand-written encoder"
        );
    }

    let mut g = c.benchmark_group("encode/hset_batch");
    for n in [32usize, 256] {
        let ports = batch(n);
        g.throughput(Throughput::Elements(n as u64));
        for (name, f) in encoders {
            let mut out = Vec::with_capacity(1 << 20);
            g.bench_with_input(BenchmarkId::new(name, n), &ports, |b, ports| {
                b.iter(|| encode_batch(&mut out, black_box(ports), f))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
