//! `portsyncd check [--json]`: one look at a live switch.
//!
//! Dump the kernel's links (in this process's network namespace), read
//! which ports APPL_DB `PORT_TABLE` holds and every STATE_DB
//! `PORT_TABLE|<name>` hash, compare them ([`verify::compare`]) and print
//! each port that is not in step. It only reads: nothing is written to
//! Redis or to the kernel. The judgement is `verify.rs`; this file is the
//! reading and the printing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::keys::PortKeys;
use super::verify::{self, Difference, Drift, FieldPairs, KernelLink, Report};
use crate::engine::netlink::parse::{Event, NLM_F_DUMP_INTR};
use crate::engine::netlink::request;
use crate::engine::netlink::socket::{NetlinkError, NetlinkSocket};
use crate::engine::redis::client::{Client, ClientError, Value};
use crate::engine::runtime::config::Config;
use crate::engine::sonic::dbconfig::{Database, Databases};

/// Exit status: every checked port is in step.
pub const EXIT_IN_STEP: u8 = 0;
/// Exit status: at least one port differs.
pub const EXIT_DIFFERS: u8 = 1;
/// Exit status: the check could not be made (configuration, Redis, netlink).
pub const EXIT_CANNOT_CHECK: u8 = 2;

/// Bound on each wait for the kernel's dump replies; a dump of thousands
/// of links takes milliseconds, so this only catches a wedged kernel.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for one dump datagram: the kernel fills at most 32 KiB per
/// datagram unless a single message is larger.
const DUMP_BUF_BYTES: usize = 128 << 10;
/// A dump interrupted by link changes (`NLM_F_DUMP_INTR`) may be
/// inconsistent; it is redone this many times before giving up.
const DUMP_TRIES: u32 = 3;
/// Keys asked per `SCAN` step: big enough for few round trips, small
/// enough that Redis never blocks long for us on a live switch.
const SCAN_COUNT: &[u8] = b"1000";
/// `HGETALL`s per pipelined batch.
const HGETALL_BATCH: usize = 512;
/// When the first look finds differences, the second comes this much
/// later: the daemon writes a change within milliseconds, and polls
/// APPL_DB every `redis.port_table_poll_ms` (250 ms by default) when
/// keyspace notifications are off.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Why the check could not be made; the text names what failed.
#[derive(Debug)]
pub enum CheckError {
    /// The link dump failed.
    Netlink(NetlinkError),
    /// Every dump was interrupted by link changes.
    DumpInterrupted { tries: u32 },
    /// A Redis database could not be read.
    Redis {
        db: &'static str,
        address: String,
        timeout_ms: u64,
        source: ClientError,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Netlink(e) => write!(f, "netlink link dump: {e}"),
            CheckError::DumpInterrupted { tries } => write!(
                f,
                "netlink link dump: interrupted by link changes {tries} times in a row"
            ),
            CheckError::Redis {
                db,
                address,
                timeout_ms,
                source,
            } => {
                write!(f, "{db} at {address}: {source}")?;
                if matches!(source, ClientError::Timeout) {
                    write!(f, " (redis.timeout_ms = {timeout_ms})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Everything one look reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub links: Vec<KernelLink>,
    /// Names `<name>` of APPL_DB `PORT_TABLE:<name>`.
    pub port_table: BTreeSet<Vec<u8>>,
    /// STATE_DB `PORT_TABLE|<name>` by `<name>`.
    pub state: BTreeMap<Vec<u8>, FieldPairs>,
}

impl Snapshot {
    /// Read APPL_DB, dump the kernel, read STATE_DB, in that order: the
    /// kernel and STATE_DB are read as close together as possible.
    pub fn take(cfg: &Config, dbs: &Databases) -> Result<Snapshot, CheckError> {
        let keys = PortKeys::new(dbs);
        let timeout_ms = cfg.redis.timeout_ms;
        let mut appl = RedisReader::connect(&dbs.appl, timeout_ms)?;
        let mut state = RedisReader::connect(&dbs.state, timeout_ms)?;
        let port_table = appl.names(&keys.appl_prefix)?.into_iter().collect();
        let links = dump_links()?;
        let names = state.names(&keys.state_prefix)?;
        let state = state.hashes(&keys.state_prefix, names)?;
        Ok(Snapshot {
            links,
            port_table,
            state,
        })
    }

    /// Compare what was read.
    pub fn compare(&self) -> Report {
        verify::compare(&self.links, &self.port_table, &self.state)
    }
}

/// Every link in this network namespace, by an `RTM_GETLINK` dump.
pub fn dump_links() -> Result<Vec<KernelLink>, CheckError> {
    let sock = NetlinkSocket::requests(NETLINK_TIMEOUT).map_err(CheckError::Netlink)?;
    let mut buf = vec![0u8; DUMP_BUF_BYTES];
    for seq in 1..=DUMP_TRIES {
        sock.send(&request::getlink_dump(seq)).map_err(|source| {
            CheckError::Netlink(NetlinkError::Sys {
                call: "sendto",
                source,
            })
        })?;
        let mut links = Vec::new();
        let mut interrupted = false;
        sock.replies(seq, &mut buf, "link dump", |hdr, event| {
            interrupted |= hdr.flags & NLM_F_DUMP_INTR != 0;
            match event {
                Event::Link(link) => {
                    links.push(KernelLink::of(&link));
                    ControlFlow::Continue(())
                }
                Event::Done => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        })
        .map_err(CheckError::Netlink)?;
        if !interrupted {
            return Ok(links);
        }
    }
    Err(CheckError::DumpInterrupted { tries: DUMP_TRIES })
}

/// A read-only connection to one database.
struct RedisReader {
    client: Client,
    db: &'static str,
    address: String,
    timeout_ms: u64,
}

impl RedisReader {
    fn connect(db: &Database, timeout_ms: u64) -> Result<RedisReader, CheckError> {
        let address = db.instance.address();
        let fail = |source| CheckError::Redis {
            db: db.name,
            address: address.to_string(),
            timeout_ms,
            source,
        };
        let client =
            Client::connect_db(&address, db.id, Duration::from_millis(timeout_ms)).map_err(fail)?;
        Ok(RedisReader {
            client,
            db: db.name,
            address: address.to_string(),
            timeout_ms,
        })
    }

    fn fail(&self, source: ClientError) -> CheckError {
        CheckError::Redis {
            db: self.db,
            address: self.address.clone(),
            timeout_ms: self.timeout_ms,
            source,
        }
    }

    /// The `<name>`s of every key `<prefix><name>`, by `SCAN` (not `KEYS`,
    /// which would stop a live switch's Redis for the whole walk).
    fn names(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, CheckError> {
        let pattern = [glob_escape(prefix), b"*".to_vec()].concat();
        let mut cursor = b"0".to_vec();
        // SCAN may return a key twice.
        let mut names = BTreeSet::new();
        loop {
            let args: [&[u8]; 6] = [b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", SCAN_COUNT];
            let reply = self.client.call_ok(&args).map_err(|e| self.fail(e))?;
            let (next, keys) = match reply.items() {
                [Value::Bulk(next), Value::Array(keys)] => (next.clone(), keys),
                _ => {
                    return Err(self.fail(ClientError::Protocol(format!(
                        "SCAN: unexpected reply {reply:?}"
                    ))))
                }
            };
            for key in keys {
                if let Some(name) = key.as_bytes().and_then(|k| k.strip_prefix(prefix)) {
                    names.insert(name.to_vec());
                }
            }
            if next == b"0" {
                return Ok(names.into_iter().collect());
            }
            cursor = next;
        }
    }

    /// `HGETALL <prefix><name>` for every name, pipelined in batches. A key
    /// gone since the `SCAN` reads as an empty hash and is left out.
    fn hashes(
        &mut self,
        prefix: &[u8],
        names: Vec<Vec<u8>>,
    ) -> Result<BTreeMap<Vec<u8>, FieldPairs>, CheckError> {
        let mut out = BTreeMap::new();
        for batch in names.chunks(HGETALL_BATCH) {
            let cmds: Vec<Vec<Vec<u8>>> = batch
                .iter()
                .map(|n| vec![b"HGETALL".to_vec(), [prefix, n].concat()])
                .collect();
            let replies = self.client.pipeline_ok(&cmds).map_err(|e| self.fail(e))?;
            for (name, reply) in batch.iter().zip(replies) {
                let pairs: FieldPairs = reply
                    .items()
                    .chunks_exact(2)
                    .filter_map(|fv| Some((fv[0].as_bytes()?.to_vec(), fv[1].as_bytes()?.to_vec())))
                    .collect();
                if !pairs.is_empty() {
                    out.insert(name.clone(), pairs);
                }
            }
        }
        Ok(out)
    }
}

/// `prefix` with Redis glob characters escaped, so it matches itself only.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 2);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Look, and when something differs look again a moment later: only a
/// port out of step both times is reported.
pub fn look(cfg: &Config, dbs: &Databases) -> Result<Report, CheckError> {
    let first = Snapshot::take(cfg, dbs)?.compare();
    if first.is_in_step() {
        return Ok(first);
    }
    std::thread::sleep(RECHECK_AFTER);
    Ok(Snapshot::take(cfg, dbs)?.compare().confirmed_by(&first))
}

/// Run the check and print its outcome; the exit status.
pub fn run(cfg: &Config, dbs: &Databases, json: bool) -> u8 {
    match look(cfg, dbs) {
        Ok(report) => {
            if json {
                println!("{}", to_json(&report));
            } else {
                print!("{}", to_text(&report));
            }
            if report.is_in_step() {
                EXIT_IN_STEP
            } else {
                EXIT_DIFFERS
            }
        }
        Err(e) => cannot_check(json, &e),
    }
}

/// Say why the check could not be made (on stderr, and as a JSON
/// document on stdout under `--json`); the exit status.
pub fn cannot_check(json: bool, why: &dyn fmt::Display) -> u8 {
    eprintln!("portsyncd check: cannot check: {why}");
    if json {
        println!("{}", json!({ "error": why.to_string() }));
    }
    EXIT_CANNOT_CHECK
}

/// One line per port out of step, then the summary line.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    for d in &report.differences {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(&report.summary().to_string());
    out.push('\n');
    out
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

fn difference_json(d: &Difference) -> Json {
    let mut record = json!({
        "port": verify::show(&d.port),
        "in_step": false,
        "message": d.to_string(),
    });
    let extra = match &d.drift {
        Drift::NoEntry {
            kernel,
            other_fields,
        } => json!({
            "difference": "no_entry",
            "other_fields": other_fields,
            "kernel": {
                "admin_status": up_down(kernel.admin_up),
                "netdev_oper_status": up_down(kernel.oper_up),
                "mtu": kernel.mtu,
            },
        }),
        Drift::Fields(fields) => json!({
            "difference": "fields",
            "fields": fields.iter().map(|f| json!({
                "field": f.field.name(),
                "state_db": f.state_db.as_deref().map(verify::show),
                "expected": f.expected,
            })).collect::<Vec<_>>(),
        }),
        Drift::NoNetdev => json!({ "difference": "no_netdev" }),
    };
    if let (Json::Object(record), Json::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    record
}

/// The whole outcome as one JSON document: every checked port (in port
/// order, with the details of each difference), the summary, and the port
/// netdevs that were not checked.
pub fn to_json(report: &Report) -> Json {
    let mut ports: Vec<(&[u8], Json)> = report
        .in_step
        .iter()
        .map(|p| {
            (
                p.as_slice(),
                json!({ "port": verify::show(p), "in_step": true }),
            )
        })
        .chain(
            report
                .differences
                .iter()
                .map(|d| (d.port.as_slice(), difference_json(d))),
        )
        .collect();
    ports.sort_by(|a, b| verify::port_order(a.0).cmp(&verify::port_order(b.0)));
    let s = report.summary();
    json!({
        "in_step": report.is_in_step(),
        "summary": {
            "checked": s.checked,
            "in_step": s.in_step,
            "differing": s.differing,
            "not_in_port_table": s.not_in_port_table,
        },
        "ports": ports.into_iter().map(|(_, j)| j).collect::<Vec<_>>(),
        "not_in_port_table": report.not_in_port_table.iter().map(|p| verify::show(p)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::rules::LinkStatus;

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(glob_escape(b"PORT_TABLE|"), b"PORT_TABLE|");
        assert_eq!(glob_escape(b"A*[?]\\"), b"A\\*\\[\\?\\]\\\\");
    }

    fn sample() -> Report {
        let status = LinkStatus {
            admin_up: true,
            oper_up: true,
            mtu: 9100,
        };
        let links = [
            KernelLink {
                name: b"Ethernet0".to_vec(),
                kind: None,
                status,
            },
            KernelLink {
                name: b"Ethernet8".to_vec(),
                kind: None,
                status,
            },
            KernelLink {
                name: b"Ethernet40".to_vec(),
                kind: None,
                status,
            },
        ];
        let port_table = [b"Ethernet0".to_vec(), b"Ethernet8".to_vec()]
            .into_iter()
            .collect();
        let entry = |admin: &str| -> FieldPairs {
            [
                ("state", "ok"),
                ("netdev_oper_status", "up"),
                ("admin_status", admin),
                ("mtu", "9100"),
            ]
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
        };
        let state = [
            (b"Ethernet0".to_vec(), entry("down")),
            (b"Ethernet12".to_vec(), entry("up")),
        ]
        .into_iter()
        .collect();
        verify::compare(&links, &port_table, &state)
    }

    #[test]
    fn text_is_one_line_per_difference_then_the_summary() {
        assert_eq!(
            to_text(&sample()),
            "Ethernet0: STATE_DB admin_status down, kernel up\n\
             Ethernet8: STATE_DB has no entry, kernel up/up mtu 9100\n\
             Ethernet12: STATE_DB entry but no netdev\n\
             3 ports checked: 0 in step, 3 differing \
             (1 netdev not in APPL_DB PORT_TABLE, not checked)\n"
        );
    }

    #[test]
    fn json_lists_every_port_with_its_difference_and_the_summary() {
        let doc = to_json(&sample());
        assert_eq!(doc["in_step"], false);
        assert_eq!(
            doc["summary"],
            json!({"checked": 3, "in_step": 0, "differing": 3, "not_in_port_table": 1})
        );
        let ports = doc["ports"].as_array().unwrap();
        let kinds: Vec<(&str, &str)> = ports
            .iter()
            .map(|p| {
                (
                    p["port"].as_str().unwrap(),
                    p["difference"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Ethernet0", "fields"),
                ("Ethernet8", "no_entry"),
                ("Ethernet12", "no_netdev")
            ]
        );
        assert_eq!(
            ports[0]["fields"],
            json!([{"field": "admin_status", "state_db": "down", "expected": "up"}])
        );
        assert_eq!(ports[1]["kernel"]["mtu"], 9100);
        assert_eq!(doc["not_in_port_table"], json!(["Ethernet40"]));
    }
}
