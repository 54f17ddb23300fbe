//! Multi-ASIC from the host: two ASIC network namespaces under
//! /var/run/netns (made with `ip netns add`, named `psdtest-asicN-<pid>-…`),
//! a redis-server for each, and one `database_global.json` laid out as
//! SONiC's (`redis/sonic-db/database_global.json` including
//! `../../redisN/sonic-db/database_config.json`). The real daemons are
//! started from the test's own namespace with `--namespace`, never with
//! `ip netns exec`: each must enter its ASIC's namespace and reach only
//! its ASIC's Redis.

mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use util::metrics::scrape;
use util::{unique, wait_converged, Daemon, DaemonOptions, Netns, RedisServer, TempDir};

/// One ASIC: its namespace and its Redis (on a unix socket, which a
/// process in any network namespace reaches by path, as on SONiC).
struct Asic {
    ns: Netns,
    redis: RedisServer,
}

/// The ASICs and the database files describing them; everything removed
/// on drop (the namespaces by `Netns`, the servers by `RedisServer`), also
/// when a test fails.
struct Switch {
    asics: Vec<Asic>,
    dir: TempDir,
}

impl Switch {
    fn new(n: usize) -> Switch {
        let dir = TempDir::new().unwrap();
        let mut asics = Vec::new();
        let mut includes = vec![
            // The host's entry: never read with a namespace given, so the
            // file it names need not exist.
            r#"{"include": "../../redis/sonic-db/database_config.json"}"#.to_string(),
        ];
        for i in 0..n {
            let asic = Asic {
                ns: Netns::create(&unique(&format!("psdtest-asic{i}-"))).unwrap(),
                redis: RedisServer::start().unwrap(),
            };
            let db_dir = dir.path().join(format!("redis{i}/sonic-db"));
            std::fs::create_dir_all(&db_dir).unwrap();
            asic.redis.write_database_config(&db_dir, true).unwrap();
            includes.push(format!(
                r#"{{"namespace": "{}", "include": "../../redis{i}/sonic-db/database_config.json"}}"#,
                asic.ns.name
            ));
            asics.push(asic);
        }
        let global_dir = dir.path().join("redis/sonic-db");
        std::fs::create_dir_all(&global_dir).unwrap();
        std::fs::write(
            global_dir.join("database_global.json"),
            format!(
                "{{\"INCLUDES\": [\n  {}\n], \"VERSION\": \"1.0\"}}\n",
                includes.join(",\n  ")
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("empty.toml"), "").unwrap();
        Switch { asics, dir }
    }

    fn global(&self) -> PathBuf {
        self.dir.path().join("redis/sonic-db/database_global.json")
    }

    /// The global-config setting every command here is given.
    fn global_set(&self) -> String {
        format!("redis.database_global_config={}", self.global().display())
    }

    /// `binary` started from the host with `--namespace` of ASIC `i`.
    fn start(&self, i: usize, binary: String, sets: &[&str]) -> Daemon {
        let mut opts = DaemonOptions {
            binary: Some(binary),
            ..DaemonOptions::default()
        };
        opts.sets.push(self.global_set());
        opts.sets.extend(sets.iter().map(|s| s.to_string()));
        Daemon::start_on_host(&["--namespace", &self.asics[i].ns.name], opts)
    }

    /// `binary check --namespace <ns> ARGS` from the host.
    fn check(&self, binary: &str, namespace: &str, args: &[&str]) -> Output {
        Command::new(binary)
            .args(["check", "--namespace", namespace, "--config"])
            .arg(self.dir.path().join("empty.toml"))
            .args(["--set", &self.global_set()])
            .args(args)
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Two portsyncd from the host, one per ASIC: each follows its own
/// namespace's links into its own Redis. Both ASICs have an `Ethernet0`,
/// in different states; each ASIC's Redis must hold its own. Their
/// metrics endpoints share one address, each in its ASIC's namespace.
#[test]
fn two_portsyncd_from_the_host_each_sync_their_own_asic() {
    let switch = Switch::new(2);
    let [a0, a1] = &switch.asics[..] else {
        unreachable!()
    };
    a0.redis
        .configure_ports(&["Ethernet0", "Ethernet4"])
        .unwrap();
    a1.redis
        .configure_ports(&["Ethernet0", "Ethernet8"])
        .unwrap();
    // The same listen address for both (strict: a refused bind is exit 2):
    // it is in each ASIC's namespace, not the host's.
    let metrics: SocketAddr = "127.0.0.1:29101".parse().unwrap();
    let listen = format!("metrics.listen={metrics}");
    let sets = [listen.as_str(), "runtime.strict=true"];
    let mut d0 = switch.start(0, Daemon::binary(), &sets);
    let mut d1 = switch.start(1, Daemon::binary(), &sets);
    d0.wait_ready();
    d1.wait_ready();
    assert!(
        d0.log().contains(&format!(
            "in network namespace {} (/var/run/netns/{})",
            a0.ns.name, a0.ns.name
        )),
        "{}",
        d0.log()
    );
    for a in [a0, a1] {
        a.redis.orchagent_pop().unwrap();
    }

    // Made after the start: a cold start ignores netdevs older than it.
    a0.ns.add_port("Ethernet0").unwrap();
    a0.ns.set_up("Ethernet0").unwrap();
    a0.ns.set_mtu("Ethernet0", 9100).unwrap();
    a0.ns.add_port("Ethernet4").unwrap();
    a1.ns.add_port("Ethernet0").unwrap();
    a1.ns.set_mtu("Ethernet0", 4000).unwrap();
    a1.ns.add_port("Ethernet8").unwrap();
    a1.ns.set_up("Ethernet8").unwrap();
    // asic0's Ethernet4 also in asic1, up: only asic0's may count.
    a1.ns.add_port("Ethernet4").unwrap();
    a1.ns.set_up("Ethernet4").unwrap();

    wait_converged(&a0.ns, &a0.redis, &names(&["Ethernet0", "Ethernet4"]));
    wait_converged(&a1.ns, &a1.redis, &names(&["Ethernet0", "Ethernet8"]));
    a0.redis.wait_state("Ethernet0", "up", "up", 9100).unwrap();
    a0.redis
        .wait_state("Ethernet4", "down", "down", 1500)
        .unwrap();
    a1.redis
        .wait_state("Ethernet0", "down", "down", 4000)
        .unwrap();
    // Neither wrote the other's ports.
    assert_eq!(
        a0.redis.keys(6, "PORT_TABLE|*").unwrap(),
        ["PORT_TABLE|Ethernet0", "PORT_TABLE|Ethernet4"]
    );
    assert_eq!(
        a1.redis.keys(6, "PORT_TABLE|*").unwrap(),
        ["PORT_TABLE|Ethernet0", "PORT_TABLE|Ethernet8"]
    );

    // A change in one ASIC reaches its Redis only.
    a1.ns.set_up("Ethernet0").unwrap();
    a1.redis.wait_state("Ethernet0", "up", "up", 4000).unwrap();
    a0.ns.set_down("Ethernet0").unwrap();
    a0.redis
        .wait_state("Ethernet0", "down", "down", 9100)
        .unwrap();
    a1.redis.wait_state("Ethernet0", "up", "up", 4000).unwrap();

    // Each endpoint answers in its own namespace.
    for a in [a0, a1] {
        assert!(scrape(&a.ns, metrics).int("portsyncd_ports_written_total") > 0);
    }

    // `check --namespace` from the host: in step.
    for a in [a0, a1] {
        let out = switch.check(&Daemon::binary(), &a.ns.name, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["summary"]["checked"], 2, "{}", text(&out));
    }
    d0.stop();
    d1.stop();
}

/// APPL_DB `NEIGH_TABLE` of `redis` after orchagent's pop: `(key,
/// neigh)` of every entry (family IPv4 checked on the way).
fn neigh_table(redis: &RedisServer) -> Vec<(String, String)> {
    redis.orchagent_pop_table("NEIGH_TABLE").unwrap();
    let mut out = Vec::new();
    for key in redis.keys(0, "NEIGH_TABLE:*").unwrap() {
        let fields = redis.hgetall(0, &key).unwrap();
        let get = |f: &str| fields.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone());
        assert_eq!(get("family").as_deref(), Some("IPv4"), "{key}: {fields:?}");
        out.push((key, get("neigh").unwrap_or_default()));
    }
    out.sort();
    out
}

/// Wait until `redis`'s APPL_DB `NEIGH_TABLE` is exactly `want`.
fn wait_neigh_table(redis: &RedisServer, what: &str, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, m)| (format!("NEIGH_TABLE:{k}"), m.to_string()))
        .collect();
    let waited = redis.wait_until(what, |r| Ok(neigh_table(r) == want));
    assert!(
        waited.is_ok(),
        "{what}: {waited:?}; APPL_DB has {:?}",
        neigh_table(redis)
    );
}

/// Two neighsyncd from the host, one per ASIC (`--namespace asicN`, one
/// database_global.json, two Redis): each converges on its own ASIC's
/// neighbors in its own APPL_DB `NEIGH_TABLE`, and neither writes the
/// other's. Both ASICs have the same address with different MACs, and
/// one neighbor of their own; `check --namespace` agrees for each. Each
/// serves metrics on the port docs/sonic.md gives an ASIC's neighsyncd,
/// 29102 + 2 × the ASIC's index.
#[test]
fn two_neighsyncd_from_the_host_each_sync_their_own_asic() {
    let switch = Switch::new(2);
    let neigh = |a: &Asic, ip: &str, mac: &str| {
        a.ns.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            "Ethernet0",
            "nud",
            "permanent",
        ])
        .unwrap();
    };
    for a in &switch.asics {
        a.ns.add_port("Ethernet0").unwrap();
        a.ns.set_up("Ethernet0").unwrap();
        a.ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "Ethernet0"])
            .unwrap();
    }
    let [a0, a1] = &switch.asics[..] else {
        unreachable!()
    };
    // Before the start: asic0's shared address (the cold start's dump).
    neigh(a0, "10.0.0.2", "02:00:00:00:00:a0");

    let mut daemons = Vec::new();
    for i in 0..2 {
        let listen = format!("metrics.listen=127.0.0.1:{}", 29102 + 2 * i);
        let sets = [
            listen.as_str(),
            "runtime.strict=true",
            "verify.interval_s=0",
        ];
        daemons.push(switch.start(i, Daemon::neighsyncd_binary(), &sets));
    }
    for (d, a) in daemons.iter().zip(&switch.asics) {
        d.wait_ready();
        let entered = format!(
            "in network namespace {} (/var/run/netns/{})",
            a.ns.name, a.ns.name
        );
        assert!(d.log().contains(&entered), "{}", d.log());
    }
    // After the start: asic1's shared address, and one of each ASIC's own.
    neigh(a1, "10.0.0.2", "02:00:00:00:00:a1");
    neigh(a0, "10.0.0.3", "02:00:00:00:00:03");
    neigh(a1, "10.0.0.4", "02:00:00:00:00:04");
    wait_neigh_table(
        &a0.redis,
        "asic0's neighbors, only, in asic0's APPL_DB",
        &[
            ("Ethernet0:10.0.0.2", "02:00:00:00:00:a0"),
            ("Ethernet0:10.0.0.3", "02:00:00:00:00:03"),
        ],
    );
    wait_neigh_table(
        &a1.redis,
        "asic1's neighbors, only, in asic1's APPL_DB",
        &[
            ("Ethernet0:10.0.0.2", "02:00:00:00:00:a1"),
            ("Ethernet0:10.0.0.4", "02:00:00:00:00:04"),
        ],
    );

    // A change in one ASIC reaches its Redis only: asic0's shared
    // neighbor moves; asic1's stays.
    neigh(a0, "10.0.0.2", "02:00:00:00:00:b0");
    wait_neigh_table(
        &a0.redis,
        "asic0's moved neighbor",
        &[
            ("Ethernet0:10.0.0.2", "02:00:00:00:00:b0"),
            ("Ethernet0:10.0.0.3", "02:00:00:00:00:03"),
        ],
    );
    assert_eq!(
        neigh_table(&a1.redis),
        [
            (
                "NEIGH_TABLE:Ethernet0:10.0.0.2".to_string(),
                "02:00:00:00:00:a1".to_string()
            ),
            (
                "NEIGH_TABLE:Ethernet0:10.0.0.4".to_string(),
                "02:00:00:00:00:04".to_string()
            ),
        ]
    );

    for (i, a) in switch.asics.iter().enumerate() {
        // Each registered its logger in its own CONFIG_DB.
        assert!(
            !a.redis.hgetall(4, "LOGGER|neighsyncd").unwrap().is_empty(),
            "asic{i}"
        );
        // Each endpoint answers in its own namespace, on its own port.
        let metrics: SocketAddr = format!("127.0.0.1:{}", 29102 + 2 * i).parse().unwrap();
        assert!(scrape(&a.ns, metrics).int("neighsyncd_neighbors_written_total") >= 2);
        // `check --namespace` from the host: in step, and it looked at
        // this ASIC's kernel (two neighbors; the host has none of them).
        let out = switch.check(&Daemon::neighsyncd_binary(), &a.ns.name, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["in_step"], true, "{}", text(&out));
        assert_eq!(doc["neighbors"], 2, "{}", text(&out));
    }
    // And it can tell: an entry asic1's kernel lacks, put into asic1's
    // APPL_DB behind its daemon's back, is reported for asic1 only.
    a1.redis
        .cmd(
            0,
            &[
                "HSET",
                "NEIGH_TABLE:Ethernet0:10.0.0.9",
                "neigh",
                "02:00:00:00:00:09",
                "family",
                "IPv4",
            ],
        )
        .unwrap();
    let out = switch.check(&Daemon::neighsyncd_binary(), &a1.ns.name, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("10.0.0.9"), "{}", text(&out));
    let out = switch.check(&Daemon::neighsyncd_binary(), &a0.ns.name, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for mut d in daemons {
        d.stop();
    }
}

/// A namespace the global file does not list: exit 2, naming it and the
/// ones it does list, before anything is touched.
#[test]
fn an_unknown_namespace_is_exit_2_naming_the_known_ones() {
    let switch = Switch::new(1);
    let known = &switch.asics[0].ns.name;
    let mut d = Daemon::start_on_host(
        &["--namespace", "psdtest-nosuch"],
        DaemonOptions {
            sets: vec![switch.global_set(), "metrics.listen=".into()],
            ..DaemonOptions::default()
        },
    );
    assert_eq!(d.wait_exit().code(), Some(2), "{}", d.log());
    let log = d.log();
    assert!(
        log.contains("namespace \"psdtest-nosuch\" is not in"),
        "{log}"
    );
    assert!(
        log.contains(&switch.global().display().to_string()),
        "{log}"
    );
    assert!(
        log.contains(&format!("namespaces there: \"\" (the host), {known})")),
        "{log}"
    );
    // check too, for either daemon.
    for binary in [Daemon::binary(), Daemon::neighsyncd_binary()] {
        let out = switch.check(&binary, "psdtest-nosuch", &[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(known.as_str()), "{}", text(&out));
    }
}

/// A namespace the global file lists but /var/run/netns has not: exit 2
/// naming the missing handle.
#[test]
fn a_missing_netns_is_exit_2_naming_the_file() {
    let switch = Switch::new(1);
    // Listed (its database_config.json is asic0's), never created.
    let gone = unique("psdtest-gone-");
    let global = switch.global();
    let text_before = std::fs::read_to_string(&global).unwrap();
    std::fs::write(
        &global,
        text_before.replace(
            "\n], \"VERSION\"",
            &format!(
                ",\n  {{\"namespace\": \"{gone}\", \"include\": \"../../redis0/sonic-db/database_config.json\"}}\n], \"VERSION\""
            ),
        ),
    )
    .unwrap();
    assert!(!Path::new("/var/run/netns").join(&gone).exists());
    for binary in [Daemon::binary(), Daemon::neighsyncd_binary()] {
        let out = switch.check(&binary, &gone, &["--json"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("no network namespace /var/run/netns/{gone}")),
            "{}",
            text(&out)
        );
    }
}
