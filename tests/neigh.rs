//! neighsyncd end to end: the real binary, a real redis-server, real
//! neighbors made with `ip neigh` in a namespace the test creates. After
//! each step, APPL_DB `NEIGH_TABLE` (with orchagent's pop emulated) must
//! equal what SONiC's contract derives from `ip -j neigh show nud all`;
//! the derivation here is written from NEIGH_CONTRACT.md §4 on its own,
//! not with the daemon's rules.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use util::metrics::{CommandMonitor, Executed};
use util::*;

/// `(neigh, family)` by `<ifname>:<ip>`.
type Table = BTreeMap<String, (String, String)>;

const CONVERGE: Duration = Duration::from_secs(20);

struct Bed {
    ns: Netns,
    redis: RedisServer,
    _limits: NeighborLimits,
}

impl Bed {
    /// A namespace with `Ethernet0` (a veth, peer up) carrying
    /// 10.0.0.1/16 and 2001:db8::1/64.
    fn new() -> Bed {
        let ns = Netns::new().unwrap();
        ns.add_port("Ethernet0").unwrap();
        ns.set_up("Ethernet0").unwrap();
        ns.ip(&["addr", "add", "10.0.0.1/16", "dev", "Ethernet0"])
            .unwrap();
        ns.ip(&["addr", "add", "2001:db8::1/64", "dev", "Ethernet0", "nodad"])
            .unwrap();
        Bed {
            ns,
            redis: RedisServer::start().unwrap(),
            // Room for every test's neighbors at once (they run in parallel).
            _limits: NeighborLimits::raise(1 << 17).unwrap(),
        }
    }

    fn start(&self, sets: &[&str]) -> Daemon {
        let mut opts = DaemonOptions {
            binary: Some(Daemon::neighsyncd_binary()),
            ..DaemonOptions::default()
        };
        opts.sets.extend(sets.iter().map(|s| s.to_string()));
        Daemon::start_with(&self.ns, &self.redis, opts)
    }

    fn neigh(&self, args: &str) {
        let args: Vec<&str> = args.split_whitespace().collect();
        let mut all = vec!["neigh"];
        all.extend(args);
        self.ns.ip(&all).unwrap();
    }

    fn config(&self, args: &[&str]) {
        self.redis.cmd(4, args).unwrap();
    }

    /// APPL_DB `NEIGH_TABLE` after orchagent's pop.
    fn appl(&self) -> Table {
        self.redis.orchagent_pop_table("NEIGH_TABLE").unwrap();
        let mut out = Table::new();
        for key in self.redis.keys(0, "NEIGH_TABLE:*").unwrap() {
            let fields: BTreeMap<String, String> =
                self.redis.hgetall(0, &key).unwrap().into_iter().collect();
            let name = key.strip_prefix("NEIGH_TABLE:").unwrap().to_string();
            out.insert(
                name,
                (
                    fields.get("neigh").cloned().unwrap_or_default(),
                    fields.get("family").cloned().unwrap_or_default(),
                ),
            );
        }
        out
    }

    /// What the contract derives from the kernel's table and CONFIG_DB.
    fn expected(&self) -> Table {
        let dual_tor = !self.redis.keys(4, "PEER_SWITCH|*").unwrap().is_empty();
        let link_local: BTreeSet<String> = ["INTERFACE", "VLAN_INTERFACE", "PORTCHANNEL_INTERFACE"]
            .iter()
            .flat_map(|t| self.redis.keys(4, &format!("{t}|*")).unwrap())
            .filter(|k| {
                self.redis
                    .hgetall(4, k)
                    .unwrap()
                    .iter()
                    .any(|(f, v)| f == "ipv6_use_link_local_only" && v == "enable")
            })
            .filter_map(|k| k.split_once('|').map(|(_, n)| n.to_string()))
            .collect();
        let out = self.ns.ip(&["-j", "neigh", "show", "nud", "all"]).unwrap();
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut t = Table::new();
        for r in rows.as_array().unwrap() {
            let dst = r["dst"].as_str().unwrap();
            let dev = r["dev"].as_str().unwrap();
            let states: Vec<&str> = r["state"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            let lladdr = r["lladdr"].as_str();
            let v6 = dst.contains(':');
            let lower = dst.to_ascii_lowercase();
            if v6
                && (lower.starts_with("fe8")
                    || lower.starts_with("fe9")
                    || lower.starts_with("fea")
                    || lower.starts_with("feb"))
            {
                let on = (dev.starts_with("Ethernet")
                    || dev.starts_with("Vlan")
                    || dev.starts_with("PortChannel"))
                    && link_local.contains(dev);
                if !on {
                    continue;
                }
            }
            if v6 && lower.starts_with("ff") && lower.len() > 3 && &lower[3..4] == "2" {
                continue;
            }
            if !v6 && dst.starts_with("169.254.") && dual_tor {
                continue;
            }
            if states == ["NOARP"] && r.get("extern_learn").is_none() {
                continue;
            }
            let unresolved = states == ["INCOMPLETE"] || states == ["FAILED"];
            let mac = if dual_tor && unresolved {
                "00:00:00:00:00:00".to_string()
            } else if unresolved {
                continue;
            } else {
                match lladdr {
                    Some(m) if m != "ff:ff:ff:ff:ff:ff" && m.len() == 17 => m.to_string(),
                    _ => continue,
                }
            };
            t.insert(
                format!("{dev}:{dst}"),
                (mac, if v6 { "IPv6" } else { "IPv4" }.to_string()),
            );
        }
        t
    }

    /// Wait until APPL_DB equals the contract's table (woken by Redis'
    /// keyspace notifications); panic with the difference and the log.
    fn converged(&self, d: &Daemon, what: &str) -> Table {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let mut last = (Table::new(), Table::new());
            let done = self.redis.wait_until(what, |_| {
                last = (self.expected(), self.appl());
                Ok(last.0 == last.1)
            });
            if done.is_ok() {
                return last.1;
            }
            if Instant::now() > deadline {
                let (want, got) = last;
                let missing: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(v))
                    .collect();
                let extra: Vec<_> = got
                    .iter()
                    .filter(|(k, v)| want.get(*k) != Some(v))
                    .collect();
                panic!(
                    "{what}: APPL_DB is not the kernel's table\nwanted, not there: {missing:?}\nthere, not wanted: {extra:?}\nlog:\n{}",
                    d.log()
                );
            }
        }
    }
}

#[test]
fn a_cold_start_syncs_what_the_kernel_has_and_follows_every_change() {
    let bed = Bed::new();
    for n in [
        "add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud reachable",
        "add 10.0.0.3 lladdr 02:00:00:00:00:03 dev Ethernet0 nud stale",
        "add 10.0.0.4 lladdr 02:00:00:00:00:04 dev Ethernet0 nud permanent",
        "add 10.0.0.8 lladdr 02:00:00:00:00:08 dev Ethernet0 nud noarp",
        "add 10.0.0.9 lladdr 02:00:00:00:00:09 dev Ethernet0 nud noarp extern_learn",
        "add 10.0.0.10 dev Ethernet0 nud incomplete",
        "add 2001:db8::2 lladdr 02:00:00:00:00:12 dev Ethernet0 nud reachable",
        "add fe80::5 lladdr 02:00:00:00:00:05 dev Ethernet0",
        "add 10.0.0.11 lladdr ff:ff:ff:ff:ff:ff dev Ethernet0",
    ] {
        bed.neigh(n);
    }
    let d = bed.start(&[]);
    d.wait_ready();
    let t = bed.converged(&d, "initial sync");
    assert!(t.contains_key("Ethernet0:10.0.0.2"), "{t:?}");
    assert!(
        t.contains_key("Ethernet0:10.0.0.9"),
        "NOARP with extern_learn is written"
    );
    assert!(
        !t.contains_key("Ethernet0:10.0.0.8"),
        "NOARP without it is not"
    );
    assert!(
        !t.contains_key("Ethernet0:fe80::5"),
        "link-local mode is off"
    );
    assert_eq!(
        t["Ethernet0:2001:db8::2"],
        ("02:00:00:00:00:12".to_string(), "IPv6".to_string())
    );
    bed.neigh("replace 10.0.0.2 lladdr 02:00:00:00:00:22 dev Ethernet0 nud stale");
    bed.neigh("add 10.0.1.5 lladdr 02:00:00:00:01:05 dev Ethernet0 nud reachable");
    bed.converged(&d, "a replace and an add");
    bed.neigh("del 10.0.0.3 dev Ethernet0");
    bed.neigh("del 2001:db8::2 dev Ethernet0");
    let t = bed.converged(&d, "deletes");
    assert!(!t.contains_key("Ethernet0:10.0.0.3"));
    // The exact ProducerStateTable writes, as SONiC's: fields neigh, family.
    bed.redis.cmd(0, &["DEL", "NEIGH_TABLE_KEY_SET"]).unwrap();
    bed.neigh("add 10.0.2.7 lladdr 02:00:00:00:02:07 dev Ethernet0 nud reachable");
    bed.redis
        .wait_until("the staged set", |r| {
            Ok(!r.keys(0, "_NEIGH_TABLE:Ethernet0:10.0.2.7")?.is_empty())
        })
        .unwrap();
    assert_eq!(
        bed.redis
            .cmd(0, &["HGETALL", "_NEIGH_TABLE:Ethernet0:10.0.2.7"])
            .unwrap()
            .pairs(),
        vec![
            ("neigh".to_string(), "02:00:00:00:02:07".to_string()),
            ("family".to_string(), "IPv4".to_string())
        ]
    );
}

#[test]
fn bridge_fdb_events_are_ignored() {
    let bed = Bed::new();
    let d = bed.start(&[]);
    d.wait_ready();
    bed.ns
        .ip(&["link", "add", "Bridge", "type", "bridge"])
        .unwrap();
    bed.ns.add_port("Ethernet4").unwrap();
    bed.ns
        .ip(&["link", "set", "Ethernet4", "master", "Bridge"])
        .unwrap();
    bed.ns.set_up("Ethernet4").unwrap();
    bed.ns
        .command("bridge")
        .args([
            "fdb",
            "add",
            "02:00:00:00:aa:01",
            "dev",
            "Ethernet4",
            "master",
            "static",
        ])
        .status()
        .unwrap();
    bed.neigh("add 10.0.3.3 lladdr 02:00:00:00:03:03 dev Ethernet0 nud reachable");
    let t = bed.converged(&d, "an FDB entry then a neighbor");
    assert!(t.keys().all(|k| !k.contains("02:00:00:00:aa:01")), "{t:?}");
    assert!(t.contains_key("Ethernet0:10.0.3.3"));
}

#[test]
fn the_link_local_mode_is_followed_from_config_db() {
    let bed = Bed::new();
    bed.neigh("add fe80::5 lladdr 02:00:00:00:00:05 dev Ethernet0");
    let d = bed.start(&[]);
    d.wait_ready();
    let t = bed.converged(&d, "mode off");
    assert!(!t.contains_key("Ethernet0:fe80::5"));
    bed.config(&[
        "HSET",
        "INTERFACE|Ethernet0",
        "ipv6_use_link_local_only",
        "enable",
    ]);
    let t = bed.converged(&d, "mode on");
    assert!(t.contains_key("Ethernet0:fe80::5"), "{t:?}");
    bed.config(&[
        "HSET",
        "INTERFACE|Ethernet0",
        "ipv6_use_link_local_only",
        "disable",
    ]);
    let t = bed.converged(&d, "mode off again");
    assert!(!t.contains_key("Ethernet0:fe80::5"));
}

#[test]
fn dual_tor_keeps_unresolved_neighbors_with_a_zero_mac() {
    let bed = Bed::new();
    bed.config(&["HSET", "PEER_SWITCH|peer", "address_ipv4", "10.1.0.33"]);
    bed.neigh("add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud reachable");
    bed.neigh("add 169.254.0.9 lladdr 02:00:00:00:00:09 dev Ethernet0 nud reachable");
    // (An entry added as INCOMPLETE raises no event; the dump finds it.)
    bed.neigh("add 10.0.0.6 dev Ethernet0 nud incomplete");
    let d = bed.start(&[]);
    d.wait_ready();
    let t = bed.converged(&d, "dual-ToR");
    if bed.expected().contains_key("Ethernet0:10.0.0.6") {
        assert_eq!(t["Ethernet0:10.0.0.6"].0, "00:00:00:00:00:00");
    }
    assert!(!t.contains_key("Ethernet0:169.254.0.9"));
    // Not dual-ToR any more: the rules change for every neighbor.
    bed.config(&["DEL", "PEER_SWITCH|peer"]);
    let t = bed.converged(&d, "single ToR");
    assert!(t.contains_key("Ethernet0:169.254.0.9"));
    assert!(!t.contains_key("Ethernet0:10.0.0.6"));
}

/// SONiC's daemon names interfaces from a cache filled once: after a
/// rename (e.g. eth1 → Ethernet0 on virtual switches) it keeps writing
/// the old name. Ours follows the link's messages.
#[test]
fn a_renamed_interface_is_keyed_by_its_new_name() {
    let bed = Bed::new();
    bed.ns.add_port("eth5").unwrap();
    bed.ns.set_up("eth5").unwrap();
    bed.neigh("add 10.9.0.2 lladdr 02:00:00:00:09:02 dev eth5 nud permanent");
    let d = bed.start(&[]);
    d.wait_ready();
    let t = bed.converged(&d, "before the rename");
    assert!(t.contains_key("eth5:10.9.0.2"), "{t:?}");
    // Down flushes its neighbors; a rename needs it down.
    bed.ns.ip(&["link", "set", "eth5", "down"]).unwrap();
    bed.ns
        .ip(&["link", "set", "eth5", "name", "Ethernet8"])
        .unwrap();
    bed.ns.set_up("Ethernet8").unwrap();
    bed.neigh("add 10.9.0.2 lladdr 02:00:00:00:09:02 dev Ethernet8 nud permanent");
    let t = bed.converged(&d, "after the rename");
    assert!(t.contains_key("Ethernet8:10.9.0.2"), "{t:?}");
    assert!(!t.contains_key("eth5:10.9.0.2"));
}

/// The scenario where SONiC's daemon ends 31–42 % wrong: 10,000
/// neighbors loaded and synced, then 20,000 `neigh replace` in one batch
/// (each loaded neighbor's MAC changed, 10,000 new ones).
#[test]
fn a_burst_of_20000_replaces_ends_exactly_as_the_kernel() {
    let bed = Bed::new();
    let line = |i: usize, round: u8| {
        format!(
            "neigh replace 10.{}.{}.{} lladdr 02:00:{round:02x}:{:02x}:{:02x}:{:02x} dev Ethernet0 nud reachable",
            10 + i / 65536,
            (i / 256) % 256,
            i % 256,
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        )
    };
    bed.ns
        .batch(&(0..10_000).map(|i| line(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let d = bed.start(&[]);
    d.wait_ready();
    bed.converged(&d, "10,000 loaded");
    let burst: Vec<String> = (0..10_000)
        .flat_map(|i| [line(i, 2), line(10_000 + i, 2)])
        .collect();
    bed.ns.batch(&burst).unwrap();
    let t = bed.converged(&d, "after 20,000 replaces");
    assert!(t.len() >= 20_000, "{}", t.len());
    assert!(
        t.values()
            .filter(|(mac, _)| mac.starts_with("02:00:02:"))
            .count()
            >= 20_000
    );
}

#[test]
fn an_overrun_is_recovered_by_a_dump() {
    let bed = Bed::new();
    // A receive buffer far too small for the burst: the kernel drops.
    let d = bed.start(&["netlink.rcvbuf_bytes=4096"]);
    d.wait_ready();
    for round in 0..3 {
        let cmds: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "neigh replace 10.0.{}.{} lladdr 02:00:00:{round:02x}:{:02x}:{:02x} dev Ethernet0 nud reachable",
                    20 + i / 250,
                    1 + i % 250,
                    i / 256,
                    i % 256
                )
            })
            .collect();
        bed.ns.batch(&cmds).unwrap();
    }
    let dels: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "neigh del 10.0.{}.{} dev Ethernet0",
                20 + i / 250,
                1 + i % 250
            )
        })
        .collect();
    bed.ns.batch(&dels).unwrap();
    bed.converged(&d, "after an overrun");
    let log = d.log();
    assert!(log.contains("ENOBUFS"), "the test must overrun:\n{log}");
}

#[test]
fn redis_restarted_empty_is_written_again() {
    let mut bed = Bed::new();
    bed.neigh("add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud permanent");
    let d = bed.start(&[]);
    d.wait_ready();
    bed.converged(&d, "before");
    bed.redis.restart().unwrap();
    bed.converged(&d, "after Redis came back empty");
}

#[test]
fn check_compares_the_kernel_with_appl_db() {
    let bed = Bed::new();
    bed.neigh("add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud permanent");
    let d = bed.start(&["verify.interval_s=0"]);
    d.wait_ready();
    bed.converged(&d, "before the check");
    let check = |bed: &Bed| {
        let db = bed.redis.write_database_config(d.dir.path(), true).unwrap();
        bed.ns
            .command(&Daemon::neighsyncd_binary())
            .args(["check", "--json", "--set"])
            .arg(format!("redis.database_config={}", db.display()))
            .output()
            .unwrap()
    };
    let ok = check(&bed);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["in_step"], true);
    // Drift behind the daemon's back: the entry removed from APPL_DB.
    d.signal(libc::SIGSTOP);
    bed.redis
        .cmd(0, &["DEL", "NEIGH_TABLE:Ethernet0:10.0.0.2"])
        .unwrap();
    let bad = check(&bed);
    d.signal(libc::SIGCONT);
    assert_eq!(bad.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(doc["differences"][0]["key"], "Ethernet0:10.0.0.2");
    assert!(doc["differences"][0]["appl_db"].is_null());
}

/// SONiC's warm restart (NEIGH_CONTRACT.md §7), the scenario of its own
/// recorded run: a neighbor kept (SAME), one added while the daemon was
/// down (NEW), one deleted while it was down (STALE), one changed (NEW).
#[test]
fn a_warm_restart_reconciles_same_new_and_stale_as_sonic_does() {
    let bed = Bed::new();
    for n in [
        "add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud permanent",
        "add 10.0.0.3 lladdr 02:00:00:00:00:03 dev Ethernet0 nud permanent",
        "add 10.0.0.4 lladdr 02:00:00:00:00:04 dev Ethernet0 nud permanent",
        "add 2001:db8::2 lladdr 02:00:00:00:00:12 dev Ethernet0 nud permanent",
    ] {
        bed.neigh(n);
    }
    let mut d = bed.start(&[]);
    d.wait_ready();
    bed.converged(&d, "the cold start");
    assert_eq!(
        bed.redis
            .cmd(
                6,
                &["HGET", "WARM_RESTART_TABLE|neighsyncd", "restore_count"]
            )
            .unwrap()
            .as_string()
            .as_deref(),
        Some("0")
    );
    d.stop();
    // While it is down.
    bed.neigh("del 10.0.0.4 dev Ethernet0");
    bed.neigh("add 10.0.0.5 lladdr 02:00:00:00:00:05 dev Ethernet0 nud permanent");
    bed.neigh("replace 10.0.0.3 lladdr 02:00:00:00:00:33 dev Ethernet0 nud permanent");
    bed.redis
        .cmd(
            6,
            &["HSET", "WARM_RESTART_ENABLE_TABLE|system", "enable", "true"],
        )
        .unwrap();
    bed.redis
        .cmd(
            6,
            &["HSET", "NEIGH_RESTORE_TABLE|Flags", "restored", "true"],
        )
        .unwrap();
    bed.config(&["HSET", "WARM_RESTART|swss", "neighsyncd_timer", "1"]);
    // Staging left by the old run is cleared (SONiC's clear script).
    bed.redis
        .cmd(
            0,
            &["HSET", "_NEIGH_TABLE:Ethernet0:10.9.9.9", "neigh", "x"],
        )
        .unwrap();
    let d = bed.start(&[]);
    d.wait_ready();
    let t = bed.converged(&d, "after the warm restart");
    assert_eq!(t["Ethernet0:10.0.0.3"].0, "02:00:00:00:00:33");
    let log = d.log();
    for line in [
        "getWarmStartTimer: Getting warmStartTimer for docker: swss, app: neighsyncd, value: 1",
        "NEIGH_TABLE NEW, key: Ethernet0:10.0.0.5, neigh:02:00:00:00:00:05, family:IPv4, cache-state:NEW, ",
        "NEIGH_TABLE NEW, key: Ethernet0:10.0.0.3, neigh:02:00:00:00:00:33, family:IPv4, cache-state:NEW, ",
        "NEIGH_TABLE STALE/DELETE, key: Ethernet0:10.0.0.4, neigh:02:00:00:00:00:04, family:IPv4, cache-state:STALE, ",
        "2 new, 2 same, 1 stale, 0 deleted",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    let state = bed
        .redis
        .hgetall(6, "WARM_RESTART_TABLE|neighsyncd")
        .unwrap();
    assert!(
        state.contains(&("restore_count".into(), "1".into())),
        "{state:?}"
    );
    assert!(
        state.contains(&("state".into(), "reconciled".into())),
        "{state:?}"
    );
    assert!(bed
        .redis
        .keys(0, "_NEIGH_TABLE:Ethernet0:10.9.9.9")
        .unwrap()
        .is_empty());
}

#[test]
fn a_warm_start_without_the_restore_flag_exits_1() {
    let bed = Bed::new();
    bed.redis
        .cmd(
            6,
            &["HSET", "WARM_RESTART_ENABLE_TABLE|swss", "enable", "true"],
        )
        .unwrap();
    bed.redis
        .cmd(
            6,
            &[
                "HSET",
                "WARM_RESTART_TABLE|neighsyncd",
                "restore_count",
                "4",
            ],
        )
        .unwrap();
    let mut d = bed.start(&["warm.restore_timeout_s=1"]);
    assert_eq!(d.wait_exit().code(), Some(1), "{}", d.log());
    let state = bed
        .redis
        .hgetall(6, "WARM_RESTART_TABLE|neighsyncd")
        .unwrap();
    assert!(
        state.contains(&("restore_count".into(), "5".into())),
        "{state:?}"
    );
    assert!(
        state.contains(&("state".into(), "restored".into())),
        "{state:?}"
    );
    assert!(
        d.log().contains("restored was not true within 1 s"),
        "{}",
        d.log()
    );
}

/// Drift behind the daemon's back (an entry deleted, one changed, one
/// nothing stands for) is found by self-verification and repaired.
#[test]
fn self_verification_repairs_drift_in_appl_db() {
    let bed = Bed::new();
    bed.neigh("add 10.0.0.2 lladdr 02:00:00:00:00:02 dev Ethernet0 nud permanent");
    bed.neigh("add 10.0.0.3 lladdr 02:00:00:00:00:03 dev Ethernet0 nud permanent");
    let d = bed.start(&["verify.interval_s=1"]);
    d.wait_ready();
    bed.converged(&d, "before the drift");
    // All three at once (one script), so one run sees all of them.
    const DRIFT: &str = "redis.call('DEL', 'NEIGH_TABLE:Ethernet0:10.0.0.2') \
        redis.call('HSET', 'NEIGH_TABLE:Ethernet0:10.0.0.3', 'neigh', '02:00:00:00:00:ff') \
        redis.call('HSET', 'NEIGH_TABLE:Ethernet0:10.7.7.7', 'neigh', '02:00:00:00:00:77', 'family', 'IPv4')";
    bed.redis.cmd(0, &["EVAL", DRIFT, "0"]).unwrap();
    bed.converged(&d, "after self-verification");
    let log = d.log();
    assert!(
        log.contains(
            "self-verification: APPL_DB NEIGH_TABLE differed for 2 neighbors and held 1 entries"
        ),
        "{log}"
    );
}

/// SONiC's daemon reads Redis for every message (`KEYS PEER_SWITCH|*`, an
/// `HGETALL` per IPv6 link-local add); ours learned all of it at start.
/// What Redis executes for neighbor changes, seen by `MONITOR`: one set or
/// del script per change, and on CONFIG_DB at most what one 10 s poll
/// reads, however many messages.
#[test]
fn each_neighbor_change_is_one_script_and_nothing_is_read_per_message() {
    use syncd::engine::sonic::pst::{DEL_SCRIPT_SHA, SET_SCRIPT_SHA};
    let bed = Bed::new();
    bed.config(&[
        "HSET",
        "INTERFACE|Ethernet0",
        "ipv6_use_link_local_only",
        "enable",
    ]);
    let d = bed.start(&["verify.interval_s=0"]);
    d.wait_ready();
    bed.converged(&d, "initial sync");
    let mut mon = CommandMonitor::new(&bed.redis);
    let mac = |i: u32, v: u32| format!("02:00:{v:02x}:00:{:02x}:{:02x}", i >> 8, i & 255);
    let v4 = |i: u32| format!("10.0.{}.{}", 10 + i / 200, 1 + i % 200);
    let ll = |i: u32| format!("fe80::1:{i:x}");
    // Permanent: no kernel timer sends further messages for them.
    let adds: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "neigh add {} lladdr {} dev Ethernet0 nud permanent",
                v4(i),
                mac(i, 1)
            )
        })
        .chain((0..50).map(|i| {
            format!(
                "neigh add {} lladdr {} dev Ethernet0 nud permanent",
                ll(i),
                mac(i, 2)
            )
        }))
        .collect();
    let replaces: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "neigh replace {} lladdr {} dev Ethernet0 nud permanent",
                v4(i),
                mac(i, 3)
            )
        })
        .collect();
    let dels: Vec<String> = (50..100)
        .map(|i| format!("neigh del {} dev Ethernet0", v4(i)))
        .collect();
    let set = format!("\"EVALSHA\" \"{SET_SCRIPT_SHA}\"");
    let del = format!("\"EVALSHA\" \"{DEL_SCRIPT_SHA}\"");
    let mut seen = Vec::new();
    for (step, commands, script, n) in [
        ("adds", &adds, &set, 150),
        ("replaces", &replaces, &set, 50),
        ("deletes", &dels, &del, 50),
    ] {
        bed.ns.batch(commands).unwrap();
        // The scripts this step must cause, read as Redis runs them.
        let deadline = Instant::now() + CONVERGE;
        let mut scripts = 0;
        while scripts < n {
            let e = mon.next(deadline);
            scripts += (e.db == 0 && e.command.starts_with(script.as_str())) as usize;
            seen.push(e);
        }
        seen.extend(mon.executed());
        let t = bed.converged(&d, step);
        assert_eq!(t.len(), bed.expected().len());
        // converged's own reads, not the daemon's.
        mon.executed();
    }
    // What the scripts ran inside Redis is theirs, not a client's.
    seen.retain(|e| !e.by_script);
    let scripts = |s: &str| seen.iter().filter(|e| e.command.starts_with(s)).count();
    assert_eq!(scripts(&set), 200, "one set per add or replace: {seen:#?}");
    assert_eq!(scripts(&del), 50, "one del per delete: {seen:#?}");
    let appl_other: Vec<&Executed> = seen
        .iter()
        .filter(|e| e.db == 0 && e.name() != "EVALSHA")
        .collect();
    assert!(appl_other.is_empty(), "{appl_other:#?}");
    let config_reads: Vec<&Executed> = seen.iter().filter(|e| e.db == 4).collect();
    assert!(
        config_reads.len() <= 10,
        "CONFIG_DB read per message? {config_reads:#?}"
    );
}
