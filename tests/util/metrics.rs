//! Helpers for the metrics tests: reach a TCP port inside a namespace,
//! speak raw HTTP, read Prometheus text, and count what really happened —
//! the kernel's link messages (our own netlink listener) and the commands
//! Redis executed (`MONITOR`) — independently of the daemon's counters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use syncd::engine::redis::client::{Client, Value};
use testbed::{Netns, RedisServer, WAIT};

/// Run `f` on a thread that joined namespace `ns` (`setns(2)` affects only
/// the calling thread). Sockets it creates stay in that namespace wherever
/// they are used afterwards.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        // SAFETY: setns on an fd we own; it switches only this thread's
        // network namespace and touches no memory of ours.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("thread in the namespace panicked")
}

/// A TCP connection to `addr` inside `ns`, with `WAIT` as read and write
/// timeout.
pub fn connect_in(ns: &Netns, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = in_netns(&ns.name, move || TcpStream::connect_timeout(&addr, WAIT))?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    Ok(s)
}

/// An HTTP response as read off the wire.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: String,
}

/// Read a whole response: everything until the server closes.
pub fn read_response(s: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading a response: {e}; got {raw:?}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {text:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(len, body.len(), "Content-Length of {head:?}");
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Send `raw` as it is and read the response.
pub fn http_raw(ns: &Netns, addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = connect_in(ns, addr).unwrap();
    s.write_all(raw).unwrap();
    read_response(&mut s)
}

/// A scrape: every sample as series text (`name{labels}`) → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let v = value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            m.insert(series.to_string(), v);
        }
        Scrape(m)
    }

    /// The value of one series; panics naming the near misses.
    pub fn get(&self, series: &str) -> f64 {
        match self.0.get(series) {
            Some(v) => *v,
            None => {
                let stem = series.split('{').next().unwrap_or(series);
                let near: Vec<&String> = self.0.keys().filter(|k| k.starts_with(stem)).collect();
                panic!("no series {series} in the scrape; similar: {near:?}")
            }
        }
    }

    /// The name of every series: a histogram's `_bucket`, `_sum` and
    /// `_count` each, as PromQL sees them.
    pub fn names(&self) -> BTreeSet<String> {
        self.0
            .keys()
            .map(|k| k.split('{').next().unwrap_or(k).to_string())
            .collect()
    }

    /// The name of every label on any series.
    pub fn label_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for key in self.0.keys() {
            let Some((_, mut rest)) = key.split_once('{') else {
                continue;
            };
            // `a="x",b="y \"quoted\""}`: a name, `="`, a value with `\`
            // escapes, then `,` or `}`.
            while let Some((name, value)) = rest.split_once("=\"") {
                out.insert(name.to_string());
                let mut escaped = false;
                let end = value
                    .char_indices()
                    .find(|&(_, c)| {
                        let close = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        close
                    })
                    .map(|(i, _)| i)
                    .unwrap_or_else(|| panic!("unterminated label value in {key}"));
                rest = value[end + 1..].trim_start_matches(',');
            }
        }
        out
    }

    /// An integer-valued series.
    pub fn int(&self, series: &str) -> u64 {
        let v = self.get(series);
        assert!(v >= 0.0 && v.fract() == 0.0, "{series} = {v}");
        v as u64
    }
}

/// `GET /metrics` inside `ns`.
pub fn scrape(ns: &Netns, addr: SocketAddr) -> Scrape {
    let r = http_raw(ns, addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.head
            .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.head
    );
    Scrape::parse(&r.body)
}

/// `promtool`, installed by tools/install-deps when missing; `None` only
/// where it is neither there nor installable (not root, no apt).
pub fn promtool() -> Option<std::path::PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let deps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/install-deps");
    let status = std::process::Command::new(deps).arg("--promtool").status();
    eprintln!("promtool missing; tools/install-deps: {status:?}");
    find()
}

/// TCP ports in LISTEN state in the network namespace of `pid`, from
/// `/proc/<pid>/net/tcp` and `tcp6`.
pub fn listening_tcp_ports(pid: i32) -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st …; 0A is TCP_LISTEN.
            if cols.len() > 3 && cols[3] == "0A" {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort();
    ports
}

/// What our own listener on `RTMGRP_LINK` received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounts {
    pub datagrams: u64,
    pub newlink: u64,
    pub dellink: u64,
    pub other: u64,
    /// Link messages whose name is not a port name (`Ethernet*`, `PortChannel*`).
    pub not_port: u64,
    /// Link messages per interface name.
    pub by_name: BTreeMap<String, u64>,
}

/// A netlink socket in a namespace, subscribed to link changes like the
/// daemon's, counting every message.
pub struct LinkMonitor {
    fd: OwnedFd,
    pub counts: LinkCounts,
}

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl LinkMonitor {
    pub fn new(ns: &Netns) -> LinkMonitor {
        let fd = in_netns(&ns.name, || {
            // SAFETY: socket(2) with constant arguments; the fd is owned below.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::NETLINK_ROUTE,
                )
            };
            assert!(
                fd >= 0,
                "netlink socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a fresh fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_nl is plain data; all-zero is valid.
            let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = libc::RTMGRP_LINK as u32;
            // SAFETY: `sa` is a valid sockaddr_nl of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            assert_eq!(r, 0, "netlink bind: {}", std::io::Error::last_os_error());
            let size: libc::c_int = 16 << 20;
            // SAFETY: `size` is a valid c_int for the option's length.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            fd
        });
        LinkMonitor {
            fd,
            counts: LinkCounts::default(),
        }
    }

    /// Wait up to `wait` for a message, then count everything queued.
    pub fn wait_and_drain(&mut self, wait: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        self.drain();
    }

    /// Count every datagram queued now.
    pub fn drain(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) => continue,
                    _ => panic!("the test's link listener lost messages: {e}"),
                }
            }
            self.count(&buf[..n as usize]);
        }
    }

    fn count(&mut self, d: &[u8]) {
        let c = &mut self.counts;
        c.datagrams += 1;
        let mut at = 0;
        while at + 16 <= d.len() {
            let len = u32_at(d, at) as usize;
            let kind = u16_at(d, at + 4);
            assert!(len >= 16 && at + len <= d.len(), "bad nlmsghdr in {d:?}");
            let msg = &d[at..at + len];
            match kind {
                RTM_NEWLINK | RTM_DELLINK => {
                    if kind == RTM_NEWLINK {
                        c.newlink += 1;
                    } else {
                        c.dellink += 1;
                    }
                    // nlmsghdr (16) + ifinfomsg (16), then attributes.
                    let mut a = 32;
                    let mut name = String::new();
                    while a + 4 <= msg.len() {
                        let alen = u16_at(msg, a) as usize;
                        if alen < 4 || a + alen > msg.len() {
                            break;
                        }
                        if u16_at(msg, a + 2) == IFLA_IFNAME {
                            let v = &msg[a + 4..a + alen];
                            let v = v.split(|&b| b == 0).next().unwrap_or(v);
                            name = String::from_utf8_lossy(v).into_owned();
                        }
                        a += (alen + 3) & !3;
                    }
                    if !(name.starts_with("Ethernet") || name.starts_with("PortChannel")) {
                        c.not_port += 1;
                    }
                    *c.by_name.entry(name).or_default() += 1;
                }
                _ => c.other += 1,
            }
            at += (len + 3) & !3;
        }
    }
}

/// Commands Redis executed on STATE_DB `PORT_TABLE|*`, seen by `MONITOR`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateWrites {
    pub hset: u64,
    pub del: u64,
}

/// One command `MONITOR` showed: its database and its arguments as Redis
/// quotes them (`"HSET" "PORT_TABLE|Ethernet0" …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub db: u32,
    /// Run by a Lua script (`[0 lua]`), not sent by a client.
    pub by_script: bool,
    pub command: String,
}

impl Executed {
    /// The command's name, upper case as sent (`EVALSHA`).
    pub fn name(&self) -> &str {
        self.command
            .strip_prefix('"')
            .and_then(|c| c.split('"').next())
            .unwrap_or("")
    }
}

/// A `MONITOR` connection and a way to know it has seen everything
/// executed before a given moment.
pub struct CommandMonitor {
    mon: Client,
    ctl: Client,
    marker: u64,
    pub writes: StateWrites,
}

impl CommandMonitor {
    pub fn new(redis: &RedisServer) -> CommandMonitor {
        let mut mon = Client::connect(&redis.address(), WAIT).unwrap();
        let ok = mon.cmd(&["MONITOR"]).unwrap();
        assert_eq!(ok.as_string().as_deref(), Some("OK"), "{ok:?}");
        CommandMonitor {
            mon,
            ctl: Client::connect(&redis.address(), WAIT).unwrap(),
            marker: 0,
            writes: StateWrites::default(),
        }
    }

    /// The next command executed, waiting for it until `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Executed {
        loop {
            let line = match self.mon.read_until(deadline).unwrap() {
                Value::Status(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("MONITOR sent {other:?}"),
            };
            // `1700000000.123456 [6 unix:/…/redis.sock] "HSET" "PORT_TABLE|Ethernet0" …`
            let Some((client, command)) = line
                .split_once(" [")
                .and_then(|(_, rest)| rest.split_once("] "))
            else {
                continue;
            };
            let Some(db) = client.split(' ').next().and_then(|d| d.parse().ok()) else {
                continue;
            };
            return Executed {
                db,
                by_script: client.ends_with(" lua"),
                command: command.to_string(),
            };
        }
    }

    /// Every command executed from the last call up to now: send a marker
    /// command and read the monitor stream until it shows it.
    pub fn executed(&mut self) -> Vec<Executed> {
        self.marker += 1;
        let marker = format!("metrics-test-marker-{}", self.marker);
        self.ctl.cmd(&["ECHO", &marker]).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        loop {
            let e = self.next(deadline);
            if e.command.contains(&marker) {
                return out;
            }
            out.push(e);
        }
    }

    /// Count the STATE_DB `PORT_TABLE` writes executed up to now.
    pub fn sync(&mut self) -> StateWrites {
        for e in self.executed() {
            if e.db != 6 || e.by_script {
                continue;
            }
            if e.command.starts_with("\"HSET\" \"PORT_TABLE|") {
                self.writes.hset += 1;
            } else if e.command.starts_with("\"DEL\" \"PORT_TABLE|") {
                self.writes.del += 1;
            }
        }
        self.writes.clone()
    }
}

/// Wait until the daemon's log holds `needle`, woken by inotify on the log
/// file; the log text.
pub fn wait_log(log_path: &Path, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
    // SAFETY: inotify_init1 has no memory-safety preconditions.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cpath = std::ffi::CString::new(log_path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `cpath` is a valid NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cpath.as_ptr(), libc::IN_MODIFY) };
    assert!(
        wd >= 0,
        "inotify watch: {}",
        std::io::Error::last_os_error()
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        if cond(&text) {
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}; log:\n{text}"
        );
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        let mut events = [0u8; 4096];
        // SAFETY: `events` is valid for writes of its length.
        unsafe {
            libc::read(
                fd.as_raw_fd(),
                events.as_mut_ptr() as *mut libc::c_void,
                events.len(),
            )
        };
    }
}
