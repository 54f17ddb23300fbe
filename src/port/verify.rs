//! Is STATE_DB `PORT_TABLE` in step with the kernel? The comparison, pure.
//!
//! Inputs are what was read — the kernel's links, APPL_DB `PORT_TABLE`
//! membership, STATE_DB `PORT_TABLE|<name>` hashes — and the output is
//! every port that is not what the daemon's contract (`rules::decide`,
//! `shared/sonic/CONTRACT.md`) says it should be. `portsyncd check` does
//! the reading (`check.rs`); the daemon can reuse [`compare`] on its own
//! view.
//!
//! What is expected, and of whom:
//! - a netdev whose name is a port name, not a team device, and in APPL_DB
//!   `PORT_TABLE`: our four fields, `state ok`, `netdev_oper_status`
//!   (`IFF_RUNNING`), `admin_status` (`IFF_UP`), `mtu`. Any other field of
//!   the hash belongs to another writer and is not looked at;
//! - a netdev not in APPL_DB `PORT_TABLE`: nothing;
//! - a port name with no netdev: no entry of ours (an entry holding any of
//!   our fields is stale: the daemon deletes it when the netdev goes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::rules::{is_port_name, LinkStatus, TEAM_KIND};
use crate::engine::netlink::parse::LinkMessage;

/// One kernel link, owned: what a dump said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLink {
    pub name: Vec<u8>,
    /// `IFLA_INFO_KIND` (`veth`, `team`, …), when the kernel gave one.
    pub kind: Option<Vec<u8>>,
    pub status: LinkStatus,
}

impl KernelLink {
    /// The link a (dump) message describes.
    pub fn of(msg: &LinkMessage<'_>) -> KernelLink {
        KernelLink {
            name: msg.name.to_vec(),
            kind: msg.kind.map(<[u8]>::to_vec),
            status: LinkStatus::of(msg),
        }
    }
}

/// A STATE_DB hash as `HGETALL` returns it: field/value pairs.
pub type FieldPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One of the four STATE_DB fields portsyncd writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    State,
    NetdevOperStatus,
    AdminStatus,
    Mtu,
}

impl Field {
    /// All four, in the order the daemon writes them.
    pub const ALL: [Field; 4] = [
        Field::State,
        Field::NetdevOperStatus,
        Field::AdminStatus,
        Field::Mtu,
    ];

    /// The field's name in the hash.
    pub fn name(self) -> &'static str {
        match self {
            Field::State => "state",
            Field::NetdevOperStatus => "netdev_oper_status",
            Field::AdminStatus => "admin_status",
            Field::Mtu => "mtu",
        }
    }

    /// The value the daemon writes for a link with `status`.
    pub fn expected(self, status: &LinkStatus) -> String {
        match self {
            Field::State => "ok".to_string(),
            Field::NetdevOperStatus => up_down(status.oper_up).to_string(),
            Field::AdminStatus => up_down(status.admin_up).to_string(),
            Field::Mtu => status.mtu.to_string(),
        }
    }

    /// Whether the expected value comes from the kernel (all but `state`).
    fn is_from_kernel(self) -> bool {
        self != Field::State
    }
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// One of our fields whose value in STATE_DB is not the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDrift {
    pub field: Field,
    /// What STATE_DB holds; `None`: the field is absent.
    pub state_db: Option<Vec<u8>>,
    /// What the daemon would write.
    pub expected: String,
}

/// How a port is out of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// An entry is owed and STATE_DB holds none of our fields.
    /// `other_fields`: the hash exists, with other writers' fields only.
    NoEntry {
        kernel: LinkStatus,
        other_fields: bool,
    },
    /// The entry has our fields, but some differ or are absent.
    Fields(Vec<FieldDrift>),
    /// An entry with our fields for a port name that has no netdev.
    NoNetdev,
}

/// One port that is not in step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub port: Vec<u8>,
    pub drift: Drift,
}

/// Bytes as text for one line: invalid UTF-8 replaced, control
/// characters escaped so that a value cannot break the line.
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", show(&self.port))?;
        match &self.drift {
            Drift::NoEntry {
                kernel,
                other_fields,
            } => {
                let what = if *other_fields {
                    "STATE_DB entry has none of our fields"
                } else {
                    "STATE_DB has no entry"
                };
                write!(
                    f,
                    "{what}, kernel {}/{} mtu {}",
                    up_down(kernel.admin_up),
                    up_down(kernel.oper_up),
                    kernel.mtu
                )
            }
            Drift::Fields(fields) => {
                for (i, d) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    match &d.state_db {
                        Some(v) => write!(f, "STATE_DB {} {}", d.field.name(), show(v))?,
                        None => write!(f, "STATE_DB has no {}", d.field.name())?,
                    }
                    let by = if d.field.is_from_kernel() {
                        "kernel"
                    } else {
                        "expected"
                    };
                    write!(f, ", {by} {}", d.expected)?;
                }
                Ok(())
            }
            Drift::NoNetdev => f.write_str("STATE_DB entry but no netdev"),
        }
    }
}

/// The outcome of one comparison. Every list is in port order
/// (`Ethernet4` before `Ethernet12`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Ports with an expectation whose entry matches it.
    pub in_step: Vec<Vec<u8>>,
    /// Ports that are not in step.
    pub differences: Vec<Difference>,
    /// Port netdevs not in APPL_DB `PORT_TABLE`: nothing is expected of
    /// them, so they are not checked.
    pub not_in_port_table: Vec<Vec<u8>>,
}

/// The counts of a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub checked: usize,
    pub in_step: usize,
    pub differing: usize,
    pub not_in_port_table: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} port{} checked: {} in step, {} differing",
            self.checked,
            plural(self.checked),
            self.in_step,
            self.differing
        )?;
        if self.not_in_port_table > 0 {
            write!(
                f,
                " ({} netdev{} not in APPL_DB PORT_TABLE, not checked)",
                self.not_in_port_table,
                plural(self.not_in_port_table)
            )?;
        }
        Ok(())
    }
}

impl Report {
    /// Whether every checked port is in step.
    pub fn is_in_step(&self) -> bool {
        self.differences.is_empty()
    }

    /// Counts for the summary line.
    pub fn summary(&self) -> Summary {
        Summary {
            checked: self.in_step.len() + self.differences.len(),
            in_step: self.in_step.len(),
            differing: self.differences.len(),
            not_in_port_table: self.not_in_port_table.len(),
        }
    }

    /// Keep only the differences `earlier` also found for the same port;
    /// the others count as in step. Two looks a moment apart tell a port
    /// that is out of step from one whose write was on its way.
    pub fn confirmed_by(mut self, earlier: &Report) -> Report {
        let before: BTreeSet<&[u8]> = earlier
            .differences
            .iter()
            .map(|d| d.port.as_slice())
            .collect();
        let (kept, passed): (Vec<_>, Vec<_>) = self
            .differences
            .into_iter()
            .partition(|d| before.contains(d.port.as_slice()));
        self.differences = kept;
        self.in_step.extend(passed.into_iter().map(|d| d.port));
        self.in_step
            .sort_by(|a, b| port_order(a).cmp(&port_order(b)));
        self
    }
}

/// Sort key putting `Ethernet4` before `Ethernet12`: the name without its
/// trailing digits, then their value, then the whole name.
pub fn port_order(name: &[u8]) -> (&[u8], u128, usize, &[u8]) {
    let digits = name.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (stem, number) = name.split_at(name.len() - digits);
    let value = number.iter().fold(0u128, |n, &d| {
        n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
    });
    (stem, value, digits, name)
}

fn value_of(entry: &[(Vec<u8>, Vec<u8>)], field: Field) -> Option<&[u8]> {
    entry
        .iter()
        .find(|(f, _)| f == field.name().as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn has_our_fields(entry: &[(Vec<u8>, Vec<u8>)]) -> bool {
    Field::ALL.iter().any(|&f| value_of(entry, f).is_some())
}

/// How `entry` (absent: `None`) differs from what `status` asks for.
fn drift(status: &LinkStatus, entry: Option<&FieldPairs>) -> Option<Drift> {
    let entry = entry.map(Vec::as_slice).unwrap_or_default();
    if !has_our_fields(entry) {
        return Some(Drift::NoEntry {
            kernel: *status,
            other_fields: !entry.is_empty(),
        });
    }
    let fields: Vec<FieldDrift> = Field::ALL
        .iter()
        .filter_map(|&field| {
            let expected = field.expected(status);
            let held = value_of(entry, field);
            (held != Some(expected.as_bytes())).then(|| FieldDrift {
                field,
                state_db: held.map(<[u8]>::to_vec),
                expected,
            })
        })
        .collect();
    (!fields.is_empty()).then_some(Drift::Fields(fields))
}

/// Compare the kernel's `links` with STATE_DB `state` (port name → hash),
/// given the names in APPL_DB `PORT_TABLE` (`port_table`).
pub fn compare(
    links: &[KernelLink],
    port_table: &BTreeSet<Vec<u8>>,
    state: &BTreeMap<Vec<u8>, FieldPairs>,
) -> Report {
    let mut report = Report::default();
    // By name: a name seen twice (a dump racing a rename) counts once.
    let by_name: BTreeMap<&[u8], &KernelLink> =
        links.iter().map(|l| (l.name.as_slice(), l)).collect();
    for (&name, link) in &by_name {
        if !is_port_name(name) || link.kind.as_deref() == Some(TEAM_KIND) {
            continue;
        }
        if !port_table.contains(name) {
            report.not_in_port_table.push(name.to_vec());
            continue;
        }
        match drift(&link.status, state.get(name)) {
            None => report.in_step.push(name.to_vec()),
            Some(drift) => report.differences.push(Difference {
                port: name.to_vec(),
                drift,
            }),
        }
    }
    for (name, entry) in state {
        if is_port_name(name) && !by_name.contains_key(name.as_slice()) && has_our_fields(entry) {
            report.differences.push(Difference {
                port: name.clone(),
                drift: Drift::NoNetdev,
            });
        }
    }
    report
        .in_step
        .sort_by(|a, b| port_order(a).cmp(&port_order(b)));
    report
        .differences
        .sort_by(|a, b| port_order(&a.port).cmp(&port_order(&b.port)));
    report
        .not_in_port_table
        .sort_by(|a, b| port_order(a).cmp(&port_order(b)));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, admin_up: bool, oper_up: bool, mtu: u32) -> KernelLink {
        KernelLink {
            name: name.as_bytes().to_vec(),
            kind: Some(b"veth".to_vec()),
            status: LinkStatus {
                admin_up,
                oper_up,
                mtu,
            },
        }
    }

    fn pairs(fv: &[(&str, &str)]) -> FieldPairs {
        fv.iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The entry the daemon writes for `link`, in its order.
    fn ours(admin: &str, oper: &str, mtu: &str) -> FieldPairs {
        pairs(&[
            ("state", "ok"),
            ("netdev_oper_status", oper),
            ("admin_status", admin),
            ("mtu", mtu),
        ])
    }

    fn names(list: &[&str]) -> BTreeSet<Vec<u8>> {
        list.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    fn state(entries: Vec<(&str, FieldPairs)>) -> BTreeMap<Vec<u8>, FieldPairs> {
        entries
            .into_iter()
            .map(|(n, e)| (n.as_bytes().to_vec(), e))
            .collect()
    }

    fn lines(r: &Report) -> Vec<String> {
        r.differences.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn matching_entries_are_in_step_whatever_their_field_order() {
        let links = [
            link("Ethernet0", true, true, 9100),
            link("Ethernet4", false, false, 1500),
        ];
        let mut reversed = ours("down", "down", "1500");
        reversed.reverse();
        let r = compare(
            &links,
            &names(&["Ethernet0", "Ethernet4"]),
            &state(vec![
                ("Ethernet0", ours("up", "up", "9100")),
                ("Ethernet4", reversed),
            ]),
        );
        assert!(r.is_in_step(), "{:?}", lines(&r));
        assert_eq!(
            r.in_step,
            names(&["Ethernet0", "Ethernet4"])
                .into_iter()
                .collect::<Vec<_>>()
        );
        let s = r.summary();
        assert_eq!((s.checked, s.in_step, s.differing), (2, 2, 0));
        assert_eq!(s.to_string(), "2 ports checked: 2 in step, 0 differing");
    }

    #[test]
    fn each_of_our_fields_that_differs_is_named_with_both_values() {
        let links = [link("Ethernet4", true, true, 9100)];
        let cases = [
            (
                ours("down", "up", "9100"),
                "Ethernet4: STATE_DB admin_status down, kernel up",
            ),
            (
                ours("up", "down", "9100"),
                "Ethernet4: STATE_DB netdev_oper_status down, kernel up",
            ),
            (
                ours("up", "up", "1500"),
                "Ethernet4: STATE_DB mtu 1500, kernel 9100",
            ),
            (
                pairs(&[
                    ("state", "bad"),
                    ("netdev_oper_status", "up"),
                    ("admin_status", "up"),
                    ("mtu", "9100"),
                ]),
                "Ethernet4: STATE_DB state bad, expected ok",
            ),
            (
                ours("down", "down", "9100"),
                "Ethernet4: STATE_DB netdev_oper_status down, kernel up; \
                 STATE_DB admin_status down, kernel up",
            ),
        ];
        for (entry, want) in cases {
            let r = compare(
                &links,
                &names(&["Ethernet4"]),
                &state(vec![("Ethernet4", entry)]),
            );
            assert_eq!(lines(&r), vec![want.to_string()]);
            assert!(r.in_step.is_empty());
        }
    }

    #[test]
    fn an_entry_missing_some_of_our_fields_names_each() {
        let links = [link("Ethernet4", true, false, 9100)];
        let entry = pairs(&[("state", "ok"), ("admin_status", "up")]);
        let r = compare(
            &links,
            &names(&["Ethernet4"]),
            &state(vec![("Ethernet4", entry)]),
        );
        let Drift::Fields(fields) = &r.differences[0].drift else {
            panic!("{r:?}")
        };
        assert_eq!(
            fields,
            &vec![
                FieldDrift {
                    field: Field::NetdevOperStatus,
                    state_db: None,
                    expected: "down".into()
                },
                FieldDrift {
                    field: Field::Mtu,
                    state_db: None,
                    expected: "9100".into()
                },
            ]
        );
        assert_eq!(
            lines(&r),
            vec![
                "Ethernet4: STATE_DB has no netdev_oper_status, kernel down; \
                  STATE_DB has no mtu, kernel 9100"
            ]
        );
    }

    #[test]
    fn no_entry_and_an_entry_of_other_writers_only() {
        let links = [
            link("Ethernet8", true, true, 9100),
            link("Ethernet12", false, false, 1500),
        ];
        let r = compare(
            &links,
            &names(&["Ethernet8", "Ethernet12"]),
            &state(vec![("Ethernet12", pairs(&[("speed", "100000")]))]),
        );
        assert_eq!(
            lines(&r),
            vec![
                "Ethernet8: STATE_DB has no entry, kernel up/up mtu 9100",
                "Ethernet12: STATE_DB entry has none of our fields, kernel down/down mtu 1500",
            ]
        );
        assert_eq!(
            r.differences[0].drift,
            Drift::NoEntry {
                kernel: links[0].status,
                other_fields: false
            }
        );
    }

    #[test]
    fn other_writers_fields_are_ignored() {
        let links = [link("Ethernet0", true, true, 9100)];
        let mut entry = ours("up", "up", "9100");
        entry.push((b"speed".to_vec(), b"100000".to_vec()));
        entry.insert(0, (b"host_tx_ready".to_vec(), b"true".to_vec()));
        let r = compare(
            &links,
            &names(&["Ethernet0"]),
            &state(vec![("Ethernet0", entry)]),
        );
        assert!(r.is_in_step(), "{:?}", lines(&r));
        assert_eq!(
            r.summary().to_string(),
            "1 port checked: 1 in step, 0 differing"
        );
    }

    #[test]
    fn an_entry_of_ours_without_a_netdev_is_stale_and_others_are_not() {
        let r = compare(
            &[],
            &names(&["Ethernet12", "Ethernet16"]),
            &state(vec![
                ("Ethernet12", ours("up", "up", "9100")),
                // Only one of our fields is enough to be ours.
                ("PortChannel1", pairs(&[("mtu", "9100"), ("speed", "1")])),
                // Another writer's entry: not ours to judge.
                ("Ethernet16", pairs(&[("speed", "100000")])),
                // Not a port name.
                ("Bridge", ours("up", "up", "1500")),
            ]),
        );
        assert_eq!(
            lines(&r),
            vec![
                "Ethernet12: STATE_DB entry but no netdev",
                "PortChannel1: STATE_DB entry but no netdev",
            ]
        );
        assert_eq!(r.summary().checked, 2);
    }

    #[test]
    fn netdevs_not_in_port_table_are_not_checked_either_way() {
        let links = [
            link("Ethernet40", true, true, 9100),
            link("Ethernet44", true, true, 9100),
        ];
        let r = compare(
            &links,
            &names(&[]),
            // A wrong entry and no entry: neither is ours to judge.
            &state(vec![("Ethernet40", ours("down", "down", "1"))]),
        );
        assert!(r.is_in_step());
        assert_eq!(r.summary().checked, 0);
        assert_eq!(
            r.not_in_port_table,
            vec![b"Ethernet40".to_vec(), b"Ethernet44".to_vec()]
        );
        assert_eq!(
            r.summary().to_string(),
            "0 ports checked: 0 in step, 0 differing \
             (2 netdevs not in APPL_DB PORT_TABLE, not checked)"
        );
    }

    #[test]
    fn team_devices_and_non_port_names_are_skipped() {
        let mut team = link("PortChannel1", true, true, 9100);
        team.kind = Some(b"team".to_vec());
        let links = [
            team,
            link("eth0", true, true, 1500),
            link("Bridge", true, true, 1500),
        ];
        let r = compare(
            &links,
            &names(&["PortChannel1", "eth0", "Bridge"]),
            &state(vec![
                ("PortChannel1", ours("down", "down", "1")),
                ("eth0", ours("down", "down", "1")),
            ]),
        );
        assert_eq!(r, Report::default());
    }

    #[test]
    fn a_team_name_whose_netdev_exists_is_not_stale() {
        let mut team = link("PortChannel2", true, true, 9100);
        team.kind = Some(b"team".to_vec());
        let r = compare(
            &[team],
            &names(&[]),
            &state(vec![("PortChannel2", ours("up", "up", "9100"))]),
        );
        assert_eq!(r, Report::default());
    }

    #[test]
    fn bytes_are_compared_as_bytes_and_shown_lossily_on_one_line() {
        let name = b"Ethernet\xff0".to_vec();
        let links = [KernelLink {
            name: name.clone(),
            kind: None,
            status: LinkStatus {
                admin_up: true,
                oper_up: true,
                mtu: 9100,
            },
        }];
        let mut entry = ours("up", "up", "9100");
        entry[2].1 = b"up\xfe\n".to_vec();
        let port_table = [name.clone()].into_iter().collect();
        let r = compare(
            &links,
            &port_table,
            &[(name.clone(), entry)].into_iter().collect(),
        );
        assert_eq!(r.differences[0].port, name);
        assert_eq!(
            lines(&r),
            vec!["Ethernet\u{fffd}0: STATE_DB admin_status up\u{fffd}\\n, kernel up"]
        );
        assert_eq!(show(b"a\tb"), "a\\tb");
    }

    #[test]
    fn ports_come_in_switch_order() {
        let links: Vec<KernelLink> = [
            "Ethernet12",
            "Ethernet4",
            "Ethernet100",
            "Ethernet0",
            "PortChannel2",
        ]
        .iter()
        .map(|n| link(n, true, true, 9100))
        .collect();
        let all = names(&[
            "Ethernet12",
            "Ethernet4",
            "Ethernet100",
            "Ethernet0",
            "PortChannel2",
        ]);
        let r = compare(&links, &all, &BTreeMap::new());
        let order: Vec<String> = r.differences.iter().map(|d| show(&d.port)).collect();
        assert_eq!(
            order,
            [
                "Ethernet0",
                "Ethernet4",
                "Ethernet12",
                "Ethernet100",
                "PortChannel2"
            ]
        );
    }

    #[test]
    fn a_second_look_keeps_only_differences_seen_twice() {
        let links = [
            link("Ethernet0", true, true, 9100),
            link("Ethernet4", true, true, 9100),
            link("Ethernet8", true, true, 9100),
        ];
        let all = names(&["Ethernet0", "Ethernet4", "Ethernet8"]);
        // First look: Ethernet0 and Ethernet4 differ.
        let first = compare(
            &links,
            &all,
            &state(vec![("Ethernet8", ours("up", "up", "9100"))]),
        );
        // Second look: Ethernet0 was written meanwhile; Ethernet8 changed.
        let second = compare(
            &links,
            &all,
            &state(vec![
                ("Ethernet0", ours("up", "up", "9100")),
                ("Ethernet8", ours("down", "up", "9100")),
            ]),
        );
        let r = second.confirmed_by(&first);
        assert_eq!(
            lines(&r),
            vec!["Ethernet4: STATE_DB has no entry, kernel up/up mtu 9100"]
        );
        assert_eq!(
            r.in_step,
            vec![b"Ethernet0".to_vec(), b"Ethernet8".to_vec()]
        );
    }
}
