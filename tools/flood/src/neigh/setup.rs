//! What a neighbor run measures, and its teardown: for `run` a private
//! redis-server, the daemon's namespace with its ports (and the floor's
//! twin), the daemon; for `attach` an existing daemon, its Redis and
//! ports. Every part goes by `Drop`, in reverse order of creation, on
//! success, failure and Ctrl-C; so do the raised neighbor limits and, in
//! attach, the neighbors flood added.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use syncd::engine::redis::client::Client;
use syncd::engine::sonic::dbconfig::{Address, Databases};
use syncd::engine::sys::monotonic_ns;
use testbed::{NeighborLimits, Netns, RedisServer, TempDir};

use crate::cli::RedisSource;
use crate::kernel::{in_netns, Requests};
use crate::neigh::cli::NeighOptions;
use crate::neigh::plan::{self, Layout};
use crate::neigh::watch::{WatchSide, STAGING};
use crate::setup::KeyspaceRestore;
use crate::setup::{ensure_keyspace_events, find_daemon, parse_address, DaemonProcess};
use crate::watch::Side;
use crate::Error;

/// APPL_DB's number in the database_config.json `run` writes.
const APPL_DB: u32 = 0;

fn tb(what: &str) -> impl FnOnce(testbed::TestbedError) -> Error + '_ {
    move |e| Error::failed(format!("{what}: {e}"))
}

/// `ip [-n NETNS] -batch FILE` of `lines` (written to `file`): one `ip`
/// process, as fast as it issues them. `force`: go on past errors (when
/// cleaning up). Returns when `ip` was started and how long it took.
pub fn ip_batch(
    netns: Option<&str>,
    lines: &[String],
    file: &Path,
    force: bool,
) -> Result<(u64, Duration), Error> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(file, text).map_err(|e| Error::failed(format!("{}: {e}", file.display())))?;
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    cmd.arg("-batch")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let t0 = monotonic_ns();
    let out = cmd
        .output()
        .map_err(|e| Error::failed(format!("ip -batch: {e}")))?;
    let took = Duration::from_nanos(monotonic_ns() - t0);
    if !out.status.success() && !force {
        return Err(Error::failed(format!(
            "ip -batch {} ({} lines, namespace {}): {}",
            file.display(),
            lines.len(),
            netns.unwrap_or("(current)"),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((t0, took))
}

/// Keep IPv6 from making neighbors of its own in a namespace flood made:
/// without IPv6 (`disable_ipv6`), or with IPv6 but no link-local address
/// (`addr_gen_mode` 1), so no router solicitation, DAD or MLD. Set before
/// the ports exist: they take the `default` values.
fn quiet_ipv6(ns: &str, ipv6: bool) -> Result<(), Error> {
    let settings: &[(&str, &str)] = if ipv6 {
        &[
            ("net/ipv6/conf/default/addr_gen_mode", "1"),
            ("net/ipv6/conf/default/accept_ra", "0"),
            ("net/ipv6/conf/all/accept_ra", "0"),
        ]
    } else {
        &[
            ("net/ipv6/conf/default/disable_ipv6", "1"),
            ("net/ipv6/conf/all/disable_ipv6", "1"),
        ]
    };
    in_netns(Some(ns), || {
        for (path, value) in settings {
            let path = format!("/proc/sys/{path}");
            std::fs::write(&path, value)
                .map_err(|e| Error::failed(format!("{path} = {value} in {ns}: {e}")))?;
        }
        Ok(())
    })
}

/// A namespace with `ports` (veths, peers up, ports up).
fn make_namespace(name: &str, ports: &[String], ipv6: bool, dir: &Path) -> Result<Netns, Error> {
    let ns = Netns::create(name).map_err(tb("namespace"))?;
    quiet_ipv6(&ns.name, ipv6)?;
    let mut lines = Vec::new();
    for p in ports {
        let peer = Netns::peer(p);
        lines.push(format!("link add {p} type veth peer name {peer}"));
        lines.push(format!("link set {peer} up"));
        lines.push(format!("link set {p} up"));
    }
    ip_batch(Some(&ns.name), &lines, &dir.join("ports.batch"), false)?;
    Ok(ns)
}

/// The ifindex of each port in `netns`, which must all exist.
fn ifindexes(netns: Option<&str>, ports: &[String]) -> Result<Vec<i32>, Error> {
    let links = Requests::open(netns)?.dump()?;
    ports
        .iter()
        .map(|p| match links.get(p) {
            Some(l) if l.admin => Ok(l.ifindex),
            Some(_) => Err(Error::Usage(format!(
                "port {p} is down in namespace {}: neighbors on it would be flushed",
                netns.unwrap_or("(current)")
            ))),
            None => Err(Error::Usage(format!(
                "no port {p} in namespace {}",
                netns.unwrap_or("(current)")
            ))),
        })
        .collect()
}

/// Attach: what flood added to someone else's set-up, removed at the end.
struct Cleanup {
    netns: Option<String>,
    /// (port, address) of every neighbor flood added in the daemon's
    /// namespace.
    neighbors: BTreeSet<(String, std::net::IpAddr)>,
    file: PathBuf,
    address: Address,
    floor_db: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let lines: Vec<String> = self
            .neighbors
            .iter()
            .map(|(dev, dst)| plan::del_line(*dst, dev))
            .collect();
        if !lines.is_empty() {
            let _ = ip_batch(self.netns.as_deref(), &lines, &self.file, true);
        }
        // The floor's database holds only what the floor wrote.
        if let Some(db) = self.floor_db {
            if let Ok(mut c) = Client::connect_db(&self.address, db, Duration::from_secs(5)) {
                if let Ok(keys) = crate::neigh::table::appl_table(&mut c, STAGING) {
                    for k in keys.keys() {
                        let _ = c.cmd(&["DEL", &format!("{STAGING}{k}")]);
                    }
                }
                let _ = c.cmd(&["DEL", "NEIGH_TABLE_KEY_SET", "NEIGH_TABLE_DEL_SET"]);
            }
        }
    }
}

/// The daemon, its Redis and ports, and the floor's twin.
pub struct NeighBench {
    pub ports: Vec<String>,
    pub layout: Layout,
    pub dut_netns: Option<String>,
    pub floor_netns: Option<String>,
    pub address: Address,
    pub appl_db: u32,
    pub floor_db: u32,
    pub daemon_pid: Option<i32>,
    pub description: String,
    /// Per side: each port's ifindex.
    pub ifindex: [Vec<i32>; 2],
    bin: Option<PathBuf>,
    dbconfig: Option<PathBuf>,
    // Owned parts; dropped in this order.
    daemon: Option<DaemonProcess>,
    cleanup: Option<Cleanup>,
    _keyspace: Option<KeyspaceRestore>,
    _floor_ns: Option<Netns>,
    _dut_ns: Option<Netns>,
    _redis: Option<RedisServer>,
    _limits: NeighborLimits,
    dir: TempDir,
}

/// Room in the kernel's (global) neighbor tables for `o`'s neighbors, in
/// the daemon's namespace and the floor's twin, and some to spare.
fn limits(o: &NeighOptions) -> Result<NeighborLimits, Error> {
    NeighborLimits::raise(2 * o.total_neighbors() + 1024).map_err(tb("neighbor limits"))
}

impl NeighBench {
    /// `flood neigh MODE`: everything private; the daemon is started
    /// later ([`NeighBench::start_daemon`]), after the neighbors to sync
    /// at its start are loaded.
    pub fn run(o: &NeighOptions) -> Result<NeighBench, Error> {
        let bin = find_daemon(o.daemon.as_deref(), "neighsyncd")?;
        let limits = limits(o)?;
        let dir = TempDir::new().map_err(tb("temporary directory"))?;
        let redis = RedisServer::start().map_err(tb("redis-server"))?;
        let dbconfig = redis
            .write_database_config(dir.path(), true)
            .map_err(tb("database_config.json"))?;
        let pid = std::process::id();
        let dut = make_namespace(&format!("flood-{pid}-neigh"), &o.ports, o.ipv6, dir.path())?;
        let floor = if o.floor {
            Some(make_namespace(
                &format!("flood-{pid}-nfloor"),
                &o.ports,
                o.ipv6,
                dir.path(),
            )?)
        } else {
            None
        };
        let ifindex = [
            ifindexes(Some(&dut.name), &o.ports)?,
            match &floor {
                Some(ns) => ifindexes(Some(&ns.name), &o.ports)?,
                None => Vec::new(),
            },
        ];
        Ok(NeighBench {
            ports: o.ports.clone(),
            layout: Layout {
                ports: o.ports.len(),
                ipv6: o.ipv6,
            },
            dut_netns: Some(dut.name.clone()),
            floor_netns: floor.as_ref().map(|ns| ns.name.clone()),
            address: redis.address(),
            appl_db: APPL_DB,
            floor_db: o.floor_db,
            daemon_pid: None,
            description: format!(
                "{} ports in namespace {}, daemon {}",
                o.ports.len(),
                dut.name,
                bin.display()
            ),
            ifindex,
            bin: Some(bin),
            dbconfig: Some(dbconfig),
            daemon: None,
            cleanup: None,
            _keyspace: None,
            _floor_ns: floor,
            _dut_ns: Some(dut),
            _redis: Some(redis),
            _limits: limits,
            dir,
        })
    }

    /// `flood neigh attach MODE`: the daemon, its Redis and ports exist;
    /// the floor's twin is flood's.
    pub fn attach(o: &NeighOptions) -> Result<NeighBench, Error> {
        let (address, appl_db, used) = match &o.redis {
            RedisSource::Address(a) => (parse_address(a)?, APPL_DB, vec![0, 4, 6]),
            RedisSource::DatabaseConfig(p) => {
                let dbs = Databases::load(p).map_err(|e| Error::Usage(e.to_string()))?;
                if dbs.appl.separator != b':' {
                    return Err(Error::Usage(format!(
                        "{}: APPL_DB's separator is {:?}, not ':'",
                        p.display(),
                        dbs.appl.separator as char
                    )));
                }
                (
                    dbs.appl.instance.address(),
                    dbs.appl.id,
                    vec![dbs.appl.id, dbs.config.id, dbs.state.id],
                )
            }
        };
        if o.floor && used.contains(&o.floor_db) {
            return Err(Error::Usage(format!(
                "--floor-db {} is one of the databases SONiC uses ({used:?}); pick another",
                o.floor_db
            )));
        }
        if let Some(ns) = &o.netns {
            if !Path::new(&format!("/var/run/netns/{ns}")).exists() {
                return Err(Error::Usage(format!(
                    "--netns: no network namespace {ns:?} (see ip netns list)"
                )));
            }
        }
        if let Some(pid) = o.pid {
            if crate::procfs::process_cpu(pid).is_none() {
                return Err(Error::Usage(format!("--pid: no process {pid}")));
            }
        }
        let dut_ifindex = ifindexes(o.netns.as_deref(), &o.ports)?;
        let limits = limits(o)?;
        let dir = TempDir::new().map_err(tb("temporary directory"))?;
        let mut c = Client::connect(&address, Duration::from_secs(5))
            .map_err(|e| Error::failed(format!("connecting to Redis at {address}: {e}")))?;
        let keyspace = ensure_keyspace_events(&mut c, &address)?;
        let floor = if o.floor {
            let name = format!("flood-{}-nfloor", std::process::id());
            Some(make_namespace(&name, &o.ports, o.ipv6, dir.path())?)
        } else {
            None
        };
        let floor_ifindex = match &floor {
            Some(ns) => ifindexes(Some(&ns.name), &o.ports)?,
            None => Vec::new(),
        };
        Ok(NeighBench {
            ports: o.ports.clone(),
            layout: Layout {
                ports: o.ports.len(),
                ipv6: o.ipv6,
            },
            dut_netns: o.netns.clone(),
            floor_netns: floor.as_ref().map(|ns| ns.name.clone()),
            address: address.clone(),
            appl_db,
            floor_db: o.floor_db,
            daemon_pid: o.pid,
            description: format!(
                "{} ports in namespace {}, Redis {address} APPL_DB {appl_db}{}",
                o.ports.len(),
                o.netns.as_deref().unwrap_or("(current)"),
                o.pid
                    .map(|p| format!(", daemon pid {p}"))
                    .unwrap_or_default()
            ),
            ifindex: [dut_ifindex, floor_ifindex],
            bin: None,
            dbconfig: None,
            daemon: None,
            cleanup: Some(Cleanup {
                netns: o.netns.clone(),
                neighbors: BTreeSet::new(),
                file: dir.path().join("cleanup.batch"),
                address,
                floor_db: o.floor.then_some(o.floor_db),
            }),
            _keyspace: keyspace,
            _floor_ns: floor,
            _dut_ns: None,
            _redis: None,
            _limits: limits,
            dir,
        })
    }

    /// The writers measured and where they are.
    pub fn sides(&self) -> Vec<WatchSide> {
        let mut v = vec![WatchSide {
            side: Side::Daemon,
            netns: self.dut_netns.clone(),
            db: self.appl_db,
        }];
        if let Some(ns) = &self.floor_netns {
            v.push(WatchSide {
                side: Side::Floor,
                netns: Some(ns.clone()),
                db: self.floor_db,
            });
        }
        v
    }

    pub fn netns(&self, side: Side) -> Option<&str> {
        match side {
            Side::Daemon => self.dut_netns.as_deref(),
            Side::Floor => self.floor_netns.as_deref(),
        }
    }

    /// Set neighbors `(index, mac)` in `side`'s namespace with one
    /// `ip -batch`; when it started and how long it took.
    pub fn load(
        &mut self,
        side: Side,
        neighbors: &[(u32, [u8; 6])],
    ) -> Result<(u64, Duration), Error> {
        let lines: Vec<String> = neighbors
            .iter()
            .map(|&(i, mac)| {
                plan::replace_line(
                    self.layout.dst(i),
                    &mac,
                    &self.ports[self.layout.port_of(i)],
                )
            })
            .collect();
        if side == Side::Daemon {
            if let Some(c) = self.cleanup.as_mut() {
                for &(i, _) in neighbors {
                    let dev = self.ports[self.layout.port_of(i)].clone();
                    c.neighbors.insert((dev, self.layout.dst(i)));
                }
            }
        }
        let file = self.dir.path().join(format!("{}.batch", side.name()));
        ip_batch(self.netns(side), &lines, &file, false)
    }

    /// `run`: start the daemon in its namespace; the time just before it
    /// was spawned. Its READY=1 is not waited for (SONiC's C++ daemon
    /// sends none): the modes wait for what it writes.
    pub fn start_daemon(&mut self, o: &NeighOptions) -> Result<u64, Error> {
        let (Some(bin), Some(dbconfig), Some(ns)) = (&self.bin, &self.dbconfig, &self.dut_netns)
        else {
            return Err(Error::failed("no daemon to start (attach)"));
        };
        let d = DaemonProcess::start(
            bin,
            ns,
            dbconfig,
            &o.daemon_sets,
            self.dir.path(),
            o.daemon_log.clone(),
        )?;
        self.daemon_pid = Some(d.pid());
        let at = d.spawned_ns();
        self.daemon = Some(d);
        Ok(at)
    }

    /// An error (with its log) if the daemon flood started has died.
    pub fn check_daemon(&mut self) -> Result<(), Error> {
        match self.daemon.as_mut() {
            Some(d) => d.check_alive(),
            None => Ok(()),
        }
    }

    /// The end of the daemon's log (`run`), for error messages.
    pub fn daemon_log_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_tail())
            .unwrap_or_default()
    }

    /// `run`: stop the daemon in order; the counters of its `totals:` line.
    pub fn stop_daemon(&mut self) -> Vec<(String, u64)> {
        match self.daemon.as_mut() {
            Some(d) => d.stop(),
            None => Vec::new(),
        }
    }
}
