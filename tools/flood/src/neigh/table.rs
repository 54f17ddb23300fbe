//! The 0-wrong check: APPL_DB's `NEIGH_TABLE` staging hashes beside the
//! kernel's neighbor table (`ip -j neigh show`), for flood's own neighbors.
//!
//! orchagent's pop is not emulated: what the daemon wrote stays in the
//! ProducerStateTable staging hashes `_NEIGH_TABLE:<ifname>:<ip>` (fields
//! `neigh`, `family`), and that is what is compared. Only neighbors in
//! flood's address ranges ([`plan::index_of`]) count, on either side: a
//! namespace flood attaches to may hold others, and the kernel's own (none
//! in the namespaces flood makes) are not flood's to judge.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;
use syncd::engine::redis::client::Client;

use crate::neigh::plan;
use crate::Error;

/// One row of `ip -j neigh show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNeigh {
    pub dev: String,
    /// As iproute2 prints it (`inet_ntop`, SONiC's text too).
    pub dst: String,
    pub lladdr: Option<String>,
    /// `PERMANENT`, `REACHABLE`, …
    pub states: Vec<String>,
}

/// `ip [-n NETNS] -j neigh show`: the kernel's IPv4 and IPv6 neighbors.
pub fn kernel_table(netns: Option<&str>) -> Result<Vec<KernelNeigh>, Error> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-j", "neigh", "show"]);
    let out = cmd
        .output()
        .map_err(|e| Error::failed(format!("ip -j neigh show: {e}")))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "ip -j neigh show ({}): {}",
            netns.unwrap_or("current namespace"),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_kernel(&out.stdout)
}

/// Parse `ip -j neigh show`'s output.
pub fn parse_kernel(json: &[u8]) -> Result<Vec<KernelNeigh>, Error> {
    // An empty table prints nothing at all on some iproute2 versions.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let rows: Value = serde_json::from_slice(json)
        .map_err(|e| Error::failed(format!("ip -j neigh show: not JSON: {e}")))?;
    let Some(rows) = rows.as_array() else {
        return Err(Error::failed("ip -j neigh show: not a JSON array"));
    };
    let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(KernelNeigh {
                dev: text(r, "dev")?,
                dst: text(r, "dst")?,
                lladdr: text(r, "lladdr"),
                states: r
                    .get("state")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// A staging hash's `neigh` and `family`, by key (`<ifname>:<ip>`).
pub type ApplTable = HashMap<String, (String, String)>;

/// Every `_NEIGH_TABLE:*` staging hash of `client`'s database whose
/// address is flood's: `SCAN` (never blocking Redis as `KEYS` would, the
/// daemon may still be writing), then one pipelined `HMGET` per batch.
pub fn appl_table(client: &mut Client, prefix: &str) -> Result<ApplTable, Error> {
    let failed = |e: syncd::engine::redis::client::ClientError| {
        Error::failed(format!("reading APPL_DB {prefix}*: {e}"))
    };
    let pattern = format!("{prefix}*");
    let mut cursor = b"0".to_vec();
    let mut out = ApplTable::new();
    loop {
        let r = client
            .call_ok(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"2000",
            ])
            .map_err(failed)?;
        let items = r.items();
        let (Some(next), Some(keys)) = (items.first().and_then(|c| c.as_bytes()), items.get(1))
        else {
            return Err(Error::failed(format!(
                "SCAN {pattern}: unexpected reply {r:?}"
            )));
        };
        cursor = next.to_vec();
        let ours: Vec<(&[u8], &[u8])> = keys
            .items()
            .iter()
            .filter_map(|k| {
                let k = k.as_bytes()?;
                let key = k.strip_prefix(prefix.as_bytes())?;
                plan::index_of_key(key).map(|_| (k, key))
            })
            .collect();
        let cmds: Vec<Vec<Vec<u8>>> = ours
            .iter()
            .map(|(k, _)| {
                vec![
                    b"HMGET".to_vec(),
                    k.to_vec(),
                    b"neigh".to_vec(),
                    b"family".to_vec(),
                ]
            })
            .collect();
        for ((_, key), v) in ours.iter().zip(client.pipeline_ok(&cmds).map_err(failed)?) {
            let field = |i: usize| {
                v.items()
                    .get(i)
                    .and_then(|x| x.as_string())
                    .unwrap_or_default()
            };
            let key = String::from_utf8_lossy(key).into_owned();
            out.insert(key, (field(0), field(1)));
        }
        if cursor == b"0" {
            return Ok(out);
        }
    }
}

/// How APPL_DB compares with the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// flood's neighbors in the kernel (with a link-layer address).
    pub kernel: u64,
    /// flood's neighbors in APPL_DB.
    pub appl: u64,
    /// In the kernel, not in APPL_DB.
    pub missing: u64,
    /// In both, another MAC.
    pub wrong_mac: u64,
    /// In both, same MAC, family not `IPv4`/`IPv6` as the address is.
    pub wrong_family: u64,
    /// In APPL_DB, not in the kernel.
    pub extra: u64,
    /// A few of each, for the report.
    pub samples: Vec<String>,
}

impl Verdict {
    /// Entries that are wrong, whichever way.
    pub fn wrong(&self) -> u64 {
        self.missing + self.wrong_mac + self.wrong_family + self.extra
    }
}

const SAMPLES: usize = 8;

/// Compare: every flood neighbor the kernel resolves must be in APPL_DB
/// with its MAC and family, and APPL_DB must hold no other flood neighbor.
pub fn compare(kernel: &[KernelNeigh], appl: &ApplTable) -> Verdict {
    let mut v = Verdict::default();
    let mut expected: HashMap<String, (String, &'static str)> = HashMap::new();
    for k in kernel {
        let Ok(ip) = k.dst.parse::<std::net::IpAddr>() else {
            continue;
        };
        let resolved = !k
            .states
            .iter()
            .any(|s| matches!(s.as_str(), "INCOMPLETE" | "FAILED" | "NOARP"));
        let (Some(_), Some(mac), true) = (plan::index_of(ip), &k.lladdr, resolved) else {
            continue;
        };
        let family = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
        expected.insert(
            format!("{}:{}", k.dev, k.dst),
            (mac.to_ascii_lowercase(), family),
        );
    }
    v.kernel = expected.len() as u64;
    v.appl = appl.len() as u64;
    let sample = |v: &mut Verdict, s: String| {
        if v.samples.len() < SAMPLES {
            v.samples.push(s);
        }
    };
    let mut keys: Vec<&String> = expected.keys().collect();
    keys.sort();
    for key in keys {
        let (mac, family) = &expected[key];
        match appl.get(key) {
            None => {
                v.missing += 1;
                sample(&mut v, format!("{key}: kernel {mac}, APPL_DB missing"));
            }
            Some((m, _)) if m != mac => {
                v.wrong_mac += 1;
                sample(&mut v, format!("{key}: kernel {mac}, APPL_DB neigh={m}"));
            }
            Some((_, f)) if f != family => {
                v.wrong_family += 1;
                sample(
                    &mut v,
                    format!("{key}: family {family}, APPL_DB family={f}"),
                );
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = appl.keys().filter(|k| !expected.contains_key(*k)).collect();
    extra.sort();
    for key in extra {
        v.extra += 1;
        sample(&mut v, format!("{key}: not in the kernel, APPL_DB has it"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP_J: &str = r#"[{"dst":"198.18.0.1","dev":"Ethernet0","lladdr":"02:00:01:00:00:01","state":["PERMANENT"]},
        {"dst":"2001:2::3","dev":"Ethernet4","lladdr":"02:00:01:00:00:03","state":["PERMANENT"]},
        {"dst":"198.18.0.5","dev":"Ethernet0","lladdr":"02:00:01:00:00:05","state":["PERMANENT"]},
        {"dst":"198.18.0.7","dev":"Ethernet0","state":["FAILED"]},
        {"dst":"10.0.0.2","dev":"Ethernet0","lladdr":"02:aa:00:00:00:02","state":["REACHABLE"]}]"#;

    fn appl(rows: &[(&str, &str, &str)]) -> ApplTable {
        rows.iter()
            .map(|(k, m, f)| (k.to_string(), (m.to_string(), f.to_string())))
            .collect()
    }

    #[test]
    fn only_floods_resolved_neighbors_are_expected() {
        let kernel = parse_kernel(IP_J.as_bytes()).unwrap();
        assert_eq!(kernel.len(), 5);
        let right = appl(&[
            ("Ethernet0:198.18.0.1", "02:00:01:00:00:01", "IPv4"),
            ("Ethernet4:2001:2::3", "02:00:01:00:00:03", "IPv6"),
            ("Ethernet0:198.18.0.5", "02:00:01:00:00:05", "IPv4"),
        ]);
        let v = compare(&kernel, &right);
        assert_eq!((v.kernel, v.appl, v.wrong()), (3, 3, 0), "{v:?}");
        assert!(parse_kernel(b"\n").unwrap().is_empty());
    }

    #[test]
    fn each_way_of_being_wrong_is_counted_and_named() {
        let kernel = parse_kernel(IP_J.as_bytes()).unwrap();
        let wrong = appl(&[
            ("Ethernet0:198.18.0.1", "02:00:01:00:00:09", "IPv4"),
            ("Ethernet4:2001:2::3", "02:00:01:00:00:03", "IPv4"),
            ("Ethernet0:198.18.0.9", "02:00:01:00:00:09", "IPv4"),
        ]);
        let v = compare(&kernel, &wrong);
        assert_eq!(
            (v.missing, v.wrong_mac, v.wrong_family, v.extra),
            (1, 1, 1, 1),
            "{v:?}"
        );
        assert_eq!(v.wrong(), 4);
        assert!(v
            .samples
            .iter()
            .any(|s| s.contains("198.18.0.5") && s.contains("missing")));
        assert!(v
            .samples
            .iter()
            .any(|s| s.contains("neigh=02:00:01:00:00:09")));
    }
}
