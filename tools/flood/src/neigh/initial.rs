//! `flood neigh initial N`: N neighbors in the kernel before the daemon
//! starts; how long from its spawn until all N are in APPL_DB.
//!
//! The end is seen without reading the table while the daemon writes it:
//! flood subscribes to the keyspace notifications of `NEIGH_TABLE_KEY_SET`
//! (one `sadd` per key the set script adds: Redis notifies a `SADD` only
//! when it added a member) and counts them; once they could make N, it
//! asks `SCARD` to confirm (so Redis, which the daemon is busy with, serves
//! one extra command, not one per batch). The set script adds the key and
//! writes its staging hash in one step, so N keys in the set are N staging
//! hashes; their content is checked against the kernel afterwards. The
//! stamp is taken when the notification batch that brought the set to N
//! was read (late by flood's wake-up, never early).

use std::os::fd::AsRawFd;
use std::time::Duration;

use serde_json::{json, Value};
use syncd::engine::redis::client::Client;
use syncd::engine::redis::reply::Reply;
use syncd::engine::redis::socket::poll;
use syncd::engine::sys::monotonic_ns;

use crate::neigh::plan;
use crate::neigh::{base_version, Run};
use crate::watch::{pollfd, redis_failed, Side};
use crate::Error;

const KEY_SET: &str = "NEIGH_TABLE_KEY_SET";
const SUBSCRIBER: &str = "NEIGH_TABLE_KEY_SET subscriber";

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// The run; its JSON document (report::finish adds the common parts).
pub fn measure(run: &mut Run<'_>, n: u64) -> Result<Value, Error> {
    let v = base_version();
    let neighbors: Vec<(u32, [u8; 6])> = (0..n as u32).map(|i| (i, plan::mac(i, v))).collect();
    run.progress
        .show(|| format!("initial: loading {n} neighbors with ip -batch"));
    let (_, load) = run.bench.load(Side::Daemon, &neighbors)?;
    let addr = run.bench.address.clone();
    let timeout = Duration::from_secs(10);
    let mut sub = Client::connect(&addr, timeout)
        .map_err(|e| Error::failed(format!("{SUBSCRIBER}: connecting to Redis at {addr}: {e}")))?;
    let channel = format!("__keyspace@{}__:{KEY_SET}", run.bench.appl_db);
    sub.subscribe(b"SUBSCRIBE", &[channel.as_bytes()])
        .map_err(redis_failed(SUBSCRIBER))?;
    let mut counter = Client::connect_db(&addr, run.bench.appl_db, timeout)
        .map_err(|e| Error::failed(format!("connecting to Redis at {addr}: {e}")))?;
    let scard = |c: &mut Client| -> Result<u64, Error> {
        let r = c
            .call_ok(&[b"SCARD", KEY_SET.as_bytes()])
            .map_err(redis_failed("SCARD"))?;
        Ok(r.as_int().unwrap_or(0).max(0) as u64)
    };
    let before = scard(&mut counter)?;
    let target = before + n;

    let o = run.o;
    let spawned = run.bench.start_daemon(o)?;
    let deadline = spawned + o.settle_timeout.as_nanos() as u64;
    let mut first_ns = None;
    let mut done_ns = None;
    let mut notified = 0u64;
    while done_ns.is_none() {
        let now = monotonic_ns();
        if now >= deadline {
            break;
        }
        let mut fds = [pollfd(sub.as_raw_fd()), pollfd(run.stop.fd())];
        let wait = Duration::from_nanos((deadline - now).min(100_000_000));
        poll(&mut fds, Some(wait)).map_err(|e| Error::failed(format!("initial: poll: {e}")))?;
        if fds[1].revents != 0 {
            return Err(Error::Interrupted);
        }
        if fds[0].revents == 0 {
            run.bench.check_daemon()?;
            continue;
        }
        sub.fill().map_err(redis_failed(SUBSCRIBER))?;
        let at = monotonic_ns();
        let mut batch = 0;
        while let Some(r) = sub.next_reply().map_err(redis_failed(SUBSCRIBER))? {
            if let Reply::Array(items) = r {
                let message = items.first().and_then(|i| i.as_bytes()) == Some(b"message");
                let sadd = items.get(2).and_then(|i| i.as_bytes()) == Some(b"sadd");
                batch += u64::from(message && sadd);
            }
        }
        if batch == 0 {
            continue;
        }
        first_ns.get_or_insert(at);
        notified += batch;
        // SCARD only once the notifications could make N.
        if before + notified >= target && scard(&mut counter)? >= target {
            done_ns = Some(at);
        }
        run.progress
            .show(|| format!("initial: {notified}/{n} keys added to {KEY_SET}"));
    }
    // At the moment, before the comparison costs the daemon anything.
    let cpu = run.daemon_cpu();
    let memory = run.daemon_memory();
    let drops = run.daemon_drops();
    let Some(done) = done_ns else {
        let verdict = run.verify()?;
        let keys = scard(&mut counter)?;
        return Err(Error::failed(format!(
            "{} of {n} keys in {KEY_SET} after {:?} (wrong: {:?}); daemon log:\n{}",
            keys.saturating_sub(before),
            o.settle_timeout,
            verdict.samples,
            run.bench.daemon_log_tail()
        )));
    };
    run.progress
        .show(|| "initial: comparing APPL_DB with the kernel".into());
    // The keys are all there; their contents can still be on the way
    // (never for a correct daemon: the script writes both at once).
    let verdict = run.verify_until(monotonic_ns() + o.settle_timeout.as_nanos() as u64)?;
    let cpu_ns = cpu.map(|c| c.exact_ns());
    Ok(json!({
        "mode": "neigh initial",
        "neighbors": n,
        "orchagent_pop_emulated": false,
        "kernel_load_ms": ms(load.as_nanos() as u64),
        "spawn_to_first_ms": first_ns.map(|t| ms(t.saturating_sub(spawned))),
        "spawn_to_all_ms": ms(done - spawned),
        "neighbors_per_s": (n as f64 * 1e9 / (done - spawned).max(1) as f64).round() as u64,
        "daemon_cpu_ms": cpu_ns.map(ms),
        "daemon_cpu_us_per_neighbor": cpu_ns.map(|c| (c as f64 / 1e3 / n as f64 * 100.0).round() / 100.0),
        "daemon_rss_kb": memory.map(|m| m.0),
        "daemon_rss_peak_kb": memory.map(|m| m.1),
        "daemon_netlink_drops": drops,
        "verify": super::report::verdict_json(&verdict),
        "wrong_entries": verdict.wrong(),
    }))
}
