//! Per-port change lines at NOTICE, the flap history operators grep the
//! log for (`Ethernet0: oper up→down, admin up, mtu 9100`), written by the
//! metrics thread, never the loop: the loop hands over each change packed
//! into one sample (no allocation, no formatting), and this side names the
//! port, words the change and keeps at most one line a second per port,
//! counting what it leaves out.

use std::fmt::Write;

/// A port's netdev status as a change line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub admin_up: bool,
    pub oper_up: bool,
    pub mtu: u32,
}

/// One port's change: what it was and is (`None`: no netdev).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortChange {
    pub port: u32,
    pub was: Option<Shown>,
    pub now: Option<Shown>,
}

/// Ports the packing can name (ids above are not logged).
pub const MAX_PORT_ID: u32 = 0xffff;
/// MTUs the packing keeps (21 bits).
const MTU_MASK: u64 = (1 << 21) - 1;

impl PortChange {
    /// Into one `u64`: the old MTU in bits 0–20 and the new in 21–41
    /// (Linux MTUs fit in 16), the port in 42–57, then was
    /// present/admin/oper in 58–60 and now present/admin/oper in 61–63.
    pub fn pack(&self) -> u64 {
        let mtu = |s: Option<Shown>| u64::from(s.map_or(0, |s| s.mtu).min(MTU_MASK as u32));
        let bits = |s: Option<Shown>, at: u32| -> u64 {
            match s {
                None => 0,
                Some(s) => (1 | u64::from(s.admin_up) << 1 | u64::from(s.oper_up) << 2) << at,
            }
        };
        mtu(self.was)
            | mtu(self.now) << 21
            | u64::from(self.port.min(MAX_PORT_ID)) << 42
            | bits(self.was, 58)
            | bits(self.now, 61)
    }

    pub fn unpack(v: u64) -> PortChange {
        let status = |at: u32, mtu_at: u32| {
            (v >> at & 1 == 1).then(|| Shown {
                admin_up: v >> (at + 1) & 1 == 1,
                oper_up: v >> (at + 2) & 1 == 1,
                mtu: (v >> mtu_at & MTU_MASK) as u32,
            })
        };
        PortChange {
            port: (v >> 42) as u32 & MAX_PORT_ID,
            was: status(58, 0),
            now: status(61, 21),
        }
    }

    /// The line after the port's name: `oper up→down, admin up, mtu 9100`.
    pub fn words(&self) -> String {
        let updown = |b: bool| if b { "up" } else { "down" };
        let (was, now) = match (self.was, self.now) {
            (_, None) => return "netdev deleted".to_string(),
            (None, Some(now)) => {
                return format!(
                    "netdev created, oper {}, admin {}, mtu {}",
                    updown(now.oper_up),
                    updown(now.admin_up),
                    now.mtu
                )
            }
            (Some(was), Some(now)) => (was, now),
        };
        let mut out = String::new();
        let mut field = |name: &str, a: bool, b: bool| {
            let sep = if out.is_empty() { "" } else { ", " };
            if a == b {
                let _ = write!(out, "{sep}{name} {}", updown(b));
            } else {
                let _ = write!(out, "{sep}{name} {}→{}", updown(a), updown(b));
            }
        };
        field("oper", was.oper_up, now.oper_up);
        field("admin", was.admin_up, now.admin_up);
        if was.mtu == now.mtu {
            let _ = write!(out, ", mtu {}", now.mtu);
        } else {
            let _ = write!(out, ", mtu {}→{}", was.mtu, now.mtu);
        }
        out
    }
}

/// At most one line per port per this much.
pub const LINE_EVERY_NS: u64 = 1_000_000_000;

/// Per-port rate limit of change lines.
#[derive(Debug, Default)]
pub struct ChangeLines {
    /// Per port: when its last line was written, and changes left out since.
    ports: Vec<(u64, u64)>,
    /// Changes left out, ever.
    pub suppressed: u64,
}

impl ChangeLines {
    /// A change of `port` at `now_ns`: `Some(left out before it)` when a
    /// line is due, `None` when it is left out (and counted).
    pub fn admit(&mut self, port: u32, now_ns: u64) -> Option<u64> {
        let i = port as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, (0, 0));
        }
        let (last, left_out) = &mut self.ports[i];
        if *last != 0 && now_ns.saturating_sub(*last) < LINE_EVERY_NS {
            *left_out += 1;
            self.suppressed += 1;
            return None;
        }
        *last = now_ns.max(1);
        Some(std::mem::take(left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Shown = Shown {
        admin_up: true,
        oper_up: true,
        mtu: 9100,
    };
    const DOWN: Shown = Shown {
        admin_up: true,
        oper_up: false,
        mtu: 9100,
    };

    #[test]
    fn a_change_survives_its_packing_and_reads_as_operators_expect() {
        let c = PortChange {
            port: 7,
            was: Some(UP),
            now: Some(DOWN),
        };
        assert_eq!(PortChange::unpack(c.pack()), c);
        assert_eq!(
            PortChange::unpack(c.pack()).words(),
            "oper up→down, admin up, mtu 9100"
        );
        let mtu = PortChange {
            port: 65535,
            was: Some(UP),
            now: Some(Shown { mtu: 1500, ..UP }),
        };
        assert_eq!(PortChange::unpack(mtu.pack()), mtu);
        assert_eq!(
            PortChange::unpack(mtu.pack()).words(),
            "oper up, admin up, mtu 9100→1500"
        );
        let created = PortChange {
            port: 1,
            was: None,
            now: Some(DOWN),
        };
        assert_eq!(PortChange::unpack(created.pack()), created);
        assert_eq!(
            created.words(),
            "netdev created, oper down, admin up, mtu 9100"
        );
        let deleted = PortChange {
            port: 2,
            was: Some(UP),
            now: None,
        };
        assert_eq!(PortChange::unpack(deleted.pack()), deleted);
        assert_eq!(deleted.words(), "netdev deleted");
    }

    #[test]
    fn one_line_a_second_per_port_the_rest_counted() {
        let mut l = ChangeLines::default();
        assert_eq!(l.admit(3, 10), Some(0));
        assert_eq!(l.admit(3, 20), None);
        assert_eq!(l.admit(3, 30), None);
        assert_eq!(l.admit(4, 30), Some(0), "ports are apart");
        assert_eq!(
            l.admit(3, 10 + LINE_EVERY_NS),
            Some(2),
            "says what it left out"
        );
        assert_eq!(l.suppressed, 2);
    }
}
