//! Which neighbors a run makes: one global index per neighbor, from which
//! its address, port and MAC follow, and back. Pure: no sockets.
//!
//! Addresses come from the benchmarking ranges (IPv4 198.18.0.0/15, RFC
//! 2544; IPv6 2001:2::/48, RFC 5180), so flood's neighbors are told apart
//! from anything else in a namespace it attaches to, and the index of a
//! neighbor is read back from its address in a netlink message or a Redis
//! key without a lookup table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 198.18.0.0.
const V4_BASE: u32 = 0xc612_0000;
/// 2001:2::/48.
const V6_PREFIX: [u16; 3] = [0x2001, 0x0002, 0x0000];
/// Neighbors one run may use: the size of the IPv4 range.
pub const MAX_NEIGHBORS: u64 = 1 << 17;

/// How neighbors are spread over ports and families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub ports: usize,
    /// Every other neighbor (odd indices) is IPv6.
    pub ipv6: bool,
}

impl Layout {
    pub fn is_v6(&self, i: u32) -> bool {
        self.ipv6 && i % 2 == 1
    }

    /// The port (index into the port list) neighbor `i` lives on: round
    /// robin, so each port carries both families when both are used.
    pub fn port_of(&self, i: u32) -> usize {
        let step = if self.ipv6 { 2 } else { 1 };
        (i / step) as usize % self.ports.max(1)
    }

    /// Neighbor `i`'s address (`i` below [`MAX_NEIGHBORS`]).
    pub fn dst(&self, i: u32) -> IpAddr {
        if self.is_v6(i) {
            IpAddr::V6(Ipv6Addr::new(
                V6_PREFIX[0],
                V6_PREFIX[1],
                V6_PREFIX[2],
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(V4_BASE + i))
        }
    }
}

/// The index of a neighbor flood made, from its address; `None` for any
/// other address.
pub fn index_of(ip: IpAddr) -> Option<u32> {
    let i = match ip {
        IpAddr::V4(a) => u32::from(a).checked_sub(V4_BASE)?,
        IpAddr::V6(a) => {
            let s = a.segments();
            if s[..3] != V6_PREFIX || s[3..6] != [0, 0, 0] {
                return None;
            }
            (u32::from(s[6]) << 16) | u32::from(s[7])
        }
    };
    (u64::from(i) < MAX_NEIGHBORS).then_some(i)
}

/// [`index_of`] an address as netlink carries it (4 or 16 bytes).
pub fn index_of_bytes(dst: &[u8]) -> Option<u32> {
    match dst.len() {
        4 => index_of(IpAddr::V4(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(dst);
            index_of(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// [`index_of`] the address text of a `<ifname>:<ip>` key.
pub fn index_of_key(key: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(key).ok()?;
    let (_, ip) = text.split_once(':')?;
    index_of(ip.parse().ok()?)
}

/// Neighbor `i`'s MAC at `version`: locally administered unicast
/// (`02:`), the version, then the index, so every (neighbor, version)
/// has its own MAC and a MAC read back names the change that wrote it.
pub fn mac(i: u32, version: u16) -> [u8; 6] {
    let v = version.to_be_bytes();
    [2, v[0], v[1], (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

/// The next version after `v`: 0 is never used, so a fresh table of
/// versions (all 0) differs from every MAC written.
pub fn next_version(v: u16) -> u16 {
    v.checked_add(1).unwrap_or(1)
}

/// A MAC as SONiC writes it: lower-case hex, colons.
pub fn mac_text(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A MAC read back from Redis (or `ip -j`); `None` unless six hex bytes.
pub fn parse_mac(text: &[u8]) -> Option<[u8; 6]> {
    let text = std::str::from_utf8(text).ok()?;
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The `ip -batch` line setting neighbor `dst` on `dev` to `mac`.
pub fn replace_line(dst: IpAddr, mac: &[u8; 6], dev: &str) -> String {
    format!(
        "neigh replace {dst} lladdr {} dev {dev} nud permanent",
        mac_text(mac)
    )
}

/// The `ip -batch` line removing neighbor `dst` from `dev`.
pub fn del_line(dst: IpAddr, dev: &str) -> String {
    format!("neigh del {dst} dev {dev}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_names_its_neighbor() {
        let l = Layout {
            ports: 3,
            ipv6: true,
        };
        for i in [0, 1, 2, 3, 65_535, 65_536, 65_537, 131_071] {
            let dst = l.dst(i);
            assert_eq!(index_of(dst), Some(i), "{dst}");
            let bytes = match dst {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            assert_eq!(index_of_bytes(&bytes), Some(i));
            assert_eq!(index_of_key(format!("Ethernet8:{dst}").as_bytes()), Some(i));
        }
        assert_eq!(l.dst(0).to_string(), "198.18.0.0");
        assert_eq!(l.dst(65_537).to_string(), "2001:2::1:1");
        assert_eq!(l.dst(131_070).to_string(), "198.19.255.254");
        assert_eq!(index_of("198.20.0.0".parse().unwrap()), None);
        assert_eq!(index_of("10.0.0.1".parse().unwrap()), None);
        assert_eq!(index_of("2001:2::2:0".parse().unwrap()), None);
        assert_eq!(index_of("2001:3::1".parse().unwrap()), None);
        assert_eq!(index_of_key(b"Ethernet0"), None);
        assert_eq!(index_of_key(b"Ethernet0:fe80::1"), None);
    }

    #[test]
    fn ports_and_families_alternate() {
        let l = Layout {
            ports: 2,
            ipv6: true,
        };
        let got: Vec<(usize, bool)> = (0..4).map(|i| (l.port_of(i), l.is_v6(i))).collect();
        assert_eq!(got, [(0, false), (0, true), (1, false), (1, true)]);
        let v4 = Layout {
            ports: 2,
            ipv6: false,
        };
        assert!(!v4.is_v6(1));
        assert_eq!(v4.port_of(3), 1);
    }

    #[test]
    fn macs_are_distinct_per_version_and_read_back() {
        let a = mac(70_000, 1);
        assert_eq!(mac_text(&a), "02:00:01:01:11:70");
        assert_eq!(parse_mac(mac_text(&a).as_bytes()), Some(a));
        assert_ne!(mac(5, 1), mac(5, 2));
        assert_ne!(mac(5, 1), mac(6, 1));
        assert_eq!(next_version(u16::MAX), 1);
        assert_eq!(parse_mac(b"02:00:01:01:11"), None);
        assert_eq!(parse_mac(b"02:00:01:01:11:70:00"), None);
        assert_eq!(parse_mac(b"none"), None);
        assert_eq!(
            replace_line(
                Layout {
                    ports: 1,
                    ipv6: false
                }
                .dst(1),
                &a,
                "Ethernet0"
            ),
            "neigh replace 198.18.0.1 lladdr 02:00:01:01:11:70 dev Ethernet0 nud permanent"
        );
    }
}
