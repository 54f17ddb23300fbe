//! Parsing real captured netlink datagrams in place: one message at a time
//! (what a multicast `recv` returns) and a packed dump datagram.
//!
//! `cargo bench --bench parse`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncd::engine::netlink::parse::{messages, parse_event, Event};

mod support;

/// Walk a datagram the way `LinkSync::on_datagram` does and fold what it
/// found into a number, so nothing is optimised away.
#[inline]
fn parse_all(datagram: &[u8]) -> u64 {
    let mut acc = 0u64;
    for item in messages(datagram) {
        let Ok((header, payload)) = item else {
            acc += 1;
            break;
        };
        match parse_event(&header, payload) {
            Ok(Event::Link(link)) => {
                acc += link.name.len() as u64 + u64::from(link.mtu.unwrap_or(0)) + link.flags as u64
            }
            Ok(_) => acc += 2,
            Err(_) => acc += 3,
        }
    }
    acc
}

fn count_messages(datagram: &[u8]) -> u64 {
    messages(datagram).count() as u64
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse/message");
    for name in [
        "admin_up_2",
        "admin_down_1",
        "enslave_1",
        "del_1",
        "del_enslaved_3",
    ] {
        let d = support::fixture(name);
        assert_eq!(count_messages(d), 1);
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter(|| parse_all(black_box(d))));
    }
    g.finish();

    let mut g = c.benchmark_group("parse/datagram");
    let dump = support::fixture("dump_1");
    g.throughput(Throughput::Elements(count_messages(dump)));
    // `dump_1`: lo, Bridge, peer4 and Ethernet4 packed in one datagram.
    g.bench_function("dump_1", |b| b.iter(|| parse_all(black_box(dump))));
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
