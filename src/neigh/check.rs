//! `neighsyncd check [--json]`: one look at a live switch.
//!
//! Read CONFIG_DB's facts (dual-ToR, link-local mode), dump the kernel's
//! links and neighbors through the daemon's own follower (so the same
//! rules decide what APPL_DB should hold), read APPL_DB `NEIGH_TABLE` as
//! orchagent will see it once it has consumed what is pending (the table,
//! then the ProducerStateTable's pending deletes and sets), and print each
//! neighbor out of step. It only reads. When something differs it looks
//! again a second later and reports only what differed both times.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::engine::metrics::Counters;
use crate::engine::netlink::drain::KernelFollow;
use crate::engine::netlink::socket::{NetlinkSocket, Recv};
use crate::engine::redis::client::{Client, ClientError};
use crate::engine::runtime::config::Config;
use crate::engine::sonic::dbconfig::{Database, Databases};
use crate::engine::sys::monotonic_ns;
use crate::neigh::context::{self, NeighConfig};
use crate::neigh::follow::NeighSync;
use crate::neigh::keys::NeighKeys;
use crate::neigh::rules::{family_text, ip_text};
use crate::neigh::startup::read_table;
use crate::neigh::table::{NeighTable, Want};
use crate::neigh::text;
use crate::neigh::warm::Snapshot;

pub const EXIT_IN_STEP: u8 = 0;
pub const EXIT_DIFFERS: u8 = 1;
pub const EXIT_CANNOT_CHECK: u8 = 2;

/// Bound on the kernel's dumps (64k neighbors take a fraction of this).
const DUMP_DEADLINE: Duration = Duration::from_secs(10);
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// A neighbor's `(neigh, family)` as APPL_DB should or does hold it.
pub type Entry = (String, String);

/// One neighbor out of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    /// What the kernel and SONiC's rules say (`None`: no entry).
    pub kernel: Option<Entry>,
    /// What APPL_DB holds once orchagent consumed what is pending.
    pub redis: Option<Entry>,
}

impl Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Option<Entry>| match e {
            Some((mac, fam)) => format!("{mac} {fam}"),
            None => "absent".to_string(),
        };
        write!(
            f,
            "{}: kernel {}, APPL_DB {}",
            self.key,
            show(&self.kernel),
            show(&self.redis)
        )
    }
}

/// What one look found.
#[derive(Debug, Default)]
pub struct Report {
    pub neighbors: usize,
    pub differences: Vec<Difference>,
}

/// Compare what the kernel wants with what APPL_DB holds. Pure.
pub fn compare(kernel: &BTreeMap<String, Entry>, redis: &BTreeMap<String, Entry>) -> Report {
    let keys: BTreeSet<&String> = kernel.keys().chain(redis.keys()).collect();
    let differences = keys
        .into_iter()
        .filter(|k| kernel.get(*k) != redis.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            kernel: kernel.get(k).cloned(),
            redis: redis.get(k).cloned(),
        })
        .collect();
    Report {
        neighbors: kernel.len(),
        differences,
    }
}

/// APPL_DB `NEIGH_TABLE` as orchagent sees it after consuming what is
/// pending (ConsumerStateTable's pop: a pending delete removes the entry,
/// then pending fields are set over it). Pure.
pub fn effective(
    table: Snapshot,
    pending: &BTreeSet<Vec<u8>>,
    deleted: &BTreeSet<Vec<u8>>,
    staging: &Snapshot,
) -> BTreeMap<String, Entry> {
    let mut out = table;
    for key in pending {
        if deleted.contains(key) {
            out.remove(key);
        }
        if let Some(fields) = staging.get(key) {
            let entry = out.entry(key.clone()).or_default();
            for (f, v) in fields {
                match entry.iter_mut().find(|(ef, _)| ef == f) {
                    Some(e) => e.1 = v.clone(),
                    None => entry.push((f.clone(), v.clone())),
                }
            }
        }
    }
    out.into_iter()
        .map(|(k, fields)| {
            let get = |name: &[u8]| {
                fields
                    .iter()
                    .find(|(f, _)| f == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            (
                String::from_utf8_lossy(&k).into_owned(),
                (get(b"neigh"), get(b"family")),
            )
        })
        .collect()
}

/// Why the check could not be made.
#[derive(Debug)]
pub struct CannotCheck(pub String);

impl Display for CannotCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn redis_error(db: &Database, e: ClientError) -> CannotCheck {
    CannotCheck(format!("{} at {}: {e}", db.name, db.instance.address()))
}

fn connect(db: &Database, cfg: &Config) -> Result<Client, CannotCheck> {
    Client::connect_db(
        &db.instance.address(),
        db.id,
        Duration::from_millis(cfg.redis.timeout_ms),
    )
    .map_err(|e| redis_error(db, e))
}

/// What the kernel's neighbors ask of APPL_DB, through the daemon's own
/// follower and rules.
pub fn kernel_entries(config: NeighConfig) -> Result<BTreeMap<String, Entry>, CannotCheck> {
    let sock = NetlinkSocket::requests(Duration::from_secs(1))
        .map_err(|e| CannotCheck(format!("netlink: {e}")))?;
    let mut sync = NeighSync::new(NeighTable::default(), config, Arc::new(Counters::default()));
    let own_pid = sock.port_id();
    let mut buf = vec![0u8; 1 << 20];
    let mut seq = 0u32;
    let began = Instant::now();
    while sync.neighbor_dumps() == 0 {
        if began.elapsed() > DUMP_DEADLINE {
            return Err(CannotCheck("the kernel's dumps did not complete".into()));
        }
        let now = monotonic_ns();
        if sync.dump_due(now) {
            seq += 1;
            sock.send(&sync.dump_request(seq))
                .map_err(|e| CannotCheck(format!("netlink dump request: {e}")))?;
            sync.dump_started(seq, now);
        }
        match sock.recv(&mut buf) {
            Ok(Recv::Data(n)) => {
                sync.on_datagram(&buf[..n], monotonic_ns(), own_pid);
            }
            Ok(Recv::Overrun) => sync.on_lost(true),
            Ok(Recv::WouldBlock) => {
                sync.dump_timer(monotonic_ns());
            }
            Err(e) => return Err(CannotCheck(format!("netlink recv: {e}"))),
        }
    }
    Ok(sync
        .table
        .wanted()
        .filter_map(|(key, want)| match want {
            Want::Set(mac) => Some((
                format!(
                    "{}:{}",
                    sync.links.name(key.ifindex),
                    String::from_utf8_lossy(ip_text(key.family, &key.addr).as_bytes())
                ),
                (
                    String::from_utf8_lossy(text::lladdr(Some(&mac)).as_bytes()).into_owned(),
                    family_text(key.family).to_string(),
                ),
            )),
            Want::Del => None,
        })
        .collect())
}

/// APPL_DB's side.
fn redis_entries(c: &mut Client, keys: &NeighKeys) -> Result<BTreeMap<String, Entry>, ClientError> {
    let table = read_table(c, &keys.appl_prefix)?;
    let members = |c: &mut Client, set: &str| -> Result<BTreeSet<Vec<u8>>, ClientError> {
        Ok(c.call_ok(&[b"SMEMBERS", set.as_bytes()])?
            .items()
            .iter()
            .filter_map(|v| v.as_bytes().map(|b| b.to_vec()))
            .collect())
    };
    let pending = members(c, "NEIGH_TABLE_KEY_SET")?;
    let deleted = members(c, "NEIGH_TABLE_DEL_SET")?;
    let staging = read_table(c, b"_NEIGH_TABLE:")?;
    Ok(effective(table, &pending, &deleted, &staging))
}

/// One look.
pub fn look_once(cfg: &Config, dbs: &Databases) -> Result<Report, CannotCheck> {
    let keys = NeighKeys::new(dbs);
    let mut config_db = connect(&dbs.config, cfg)?;
    let config = context::read(&mut config_db, &keys).map_err(|e| redis_error(&dbs.config, e))?;
    let mut appl = connect(&dbs.appl, cfg)?;
    let kernel = kernel_entries(config)?;
    let redis = redis_entries(&mut appl, &keys).map_err(|e| redis_error(&dbs.appl, e))?;
    Ok(compare(&kernel, &redis))
}

/// Look, and when something differs look again a moment later: only a
/// neighbor out of step both times is reported.
pub fn look(cfg: &Config, dbs: &Databases) -> Result<Report, CannotCheck> {
    let first = look_once(cfg, dbs)?;
    if first.differences.is_empty() {
        return Ok(first);
    }
    std::thread::sleep(RECHECK_AFTER);
    let mut second = look_once(cfg, dbs)?;
    second.differences.retain(|d| first.differences.contains(d));
    Ok(second)
}

/// Run the check and print its outcome; the exit status.
pub fn run(cfg: &Config, dbs: &Databases, json: bool) -> u8 {
    match look(cfg, dbs) {
        Ok(report) => {
            if json {
                let diffs: Vec<_> = report
                    .differences
                    .iter()
                    .map(|d| {
                        json!({
                            "key": d.key,
                            "kernel": d.kernel.as_ref().map(|(m, f)| json!({"neigh": m, "family": f})),
                            "appl_db": d.redis.as_ref().map(|(m, f)| json!({"neigh": m, "family": f})),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({
                        "in_step": report.differences.is_empty(),
                        "neighbors": report.neighbors,
                        "differences": diffs,
                    })
                );
            } else {
                for d in &report.differences {
                    println!("{d}");
                }
                println!(
                    "{} neighbors in the kernel, {} out of step",
                    report.neighbors,
                    report.differences.len()
                );
            }
            if report.differences.is_empty() {
                EXIT_IN_STEP
            } else {
                EXIT_DIFFERS
            }
        }
        Err(e) => cannot_check(json, &e),
    }
}

/// Say why the check could not be made; the exit status.
pub fn cannot_check(json: bool, why: &dyn Display) -> u8 {
    eprintln!("neighsyncd check: cannot check: {why}");
    if json {
        println!("{}", json!({ "error": why.to_string() }));
    }
    EXIT_CANNOT_CHECK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(mac: &str, fam: &str) -> Entry {
        (mac.into(), fam.into())
    }

    #[test]
    fn pending_writes_count_as_orchagent_will_apply_them() {
        let fields = |mac: &str| {
            vec![
                (b"neigh".to_vec(), mac.as_bytes().to_vec()),
                (b"family".to_vec(), b"IPv4".to_vec()),
            ]
        };
        let table: BTreeMap<_, _> = [
            (b"E0:10.0.0.1".to_vec(), fields("02:00:00:00:00:01")),
            (b"E0:10.0.0.2".to_vec(), fields("02:00:00:00:00:02")),
        ]
        .into();
        let pending: BTreeSet<_> = [b"E0:10.0.0.1".to_vec(), b"E0:10.0.0.3".to_vec()].into();
        let deleted: BTreeSet<_> = [b"E0:10.0.0.1".to_vec()].into();
        let staging: BTreeMap<_, _> =
            [(b"E0:10.0.0.3".to_vec(), fields("02:00:00:00:00:03"))].into();
        let got = effective(table, &pending, &deleted, &staging);
        assert_eq!(
            got,
            [
                ("E0:10.0.0.2".to_string(), e("02:00:00:00:00:02", "IPv4")),
                ("E0:10.0.0.3".to_string(), e("02:00:00:00:00:03", "IPv4")),
            ]
            .into()
        );
    }

    #[test]
    fn differences_are_missing_extra_and_changed_entries() {
        let kernel: BTreeMap<_, _> = [
            ("a".to_string(), e("m1", "IPv4")),
            ("b".to_string(), e("m2", "IPv4")),
        ]
        .into();
        let redis: BTreeMap<_, _> = [
            ("b".to_string(), e("mX", "IPv4")),
            ("c".to_string(), e("m3", "IPv6")),
        ]
        .into();
        let r = compare(&kernel, &redis);
        assert_eq!(r.neighbors, 2);
        let keys: Vec<&str> = r.differences.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(
            r.differences[0].to_string(),
            "a: kernel m1 IPv4, APPL_DB absent"
        );
        assert!(compare(&kernel, &kernel).differences.is_empty());
    }
}
