//! The text SONiC's neighsyncd writes for an address, byte for byte, into
//! a fixed buffer (no allocation per message): IPv4 dotted quads, IPv6 as
//! glibc's `inet_ntop` writes it, MAC addresses as libnl writes them.

/// Address text in a fixed buffer.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; 64],
    len: usize,
}

impl Text {
    const fn new() -> Text {
        Text {
            buf: [0; 64],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn push_str(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn push_decimal(&mut self, v: u8) {
        if v >= 100 {
            self.push(b'0' + v / 100);
        }
        if v >= 10 {
            self.push(b'0' + (v / 10) % 10);
        }
        self.push(b'0' + v % 10);
    }

    /// Lower-case hex without leading zeros (at least one digit).
    fn push_hex16(&mut self, v: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let nibble = (v >> shift) & 0xf;
            if nibble != 0 || started || shift == 0 {
                self.push(HEX[nibble as usize]);
                started = true;
            }
        }
    }

    fn push_hex8(&mut self, v: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.push(HEX[(v >> 4) as usize]);
        self.push(HEX[(v & 0xf) as usize]);
    }

    fn push_ipv4(&mut self, a: &[u8]) {
        for (i, &octet) in a.iter().take(4).enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.push_decimal(octet);
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `a.b.c.d`.
pub fn ipv4(a: [u8; 4]) -> Text {
    let mut t = Text::new();
    t.push_ipv4(&a);
    t
}

/// IPv6 text exactly as glibc's `inet_ntop(AF_INET6)`: lower-case words
/// without leading zeros; the longest run of two or more zero words (the
/// first of equal runs) written `::`; and the last 32 bits as a dotted
/// quad when the address is IPv4-mapped (`::ffff:a.b.c.d`) or
/// IPv4-compatible (the first 96 bits zero and the run exactly six words
/// long: `::a.b.c.d`; `::1` and `::` stay hex).
pub fn ipv6(a: [u8; 16]) -> Text {
    let words: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    // The longest run of zero words, as glibc finds it.
    let (mut best, mut cur): ((usize, usize), Option<(usize, usize)>) = ((0, 0), None);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            let run = cur.map_or((i, 1), |(base, len)| (base, len + 1));
            cur = Some(run);
            if run.1 > best.1 {
                best = run;
            }
        } else {
            cur = None;
        }
    }
    let best = (best.1 >= 2).then_some(best);
    let in_run = |i: usize| best.is_some_and(|(base, len)| i >= base && i < base + len);
    let mut t = Text::new();
    for i in 0..8 {
        if in_run(i) {
            // The run is one ':' where it starts (the other comes from
            // the word after it, or the end).
            if best.is_some_and(|(base, _)| base == i) {
                t.push(b':');
            }
            continue;
        }
        if i != 0 {
            t.push(b':');
        }
        // IPv4-compatible (::a.b.c.d) or IPv4-mapped (::ffff:a.b.c.d).
        if i == 6 && matches!(best, Some((0, 6)))
            || (i == 6 && matches!(best, Some((0, 5))) && words[5] == 0xffff)
        {
            t.push_ipv4(&a[12..16]);
            return t;
        }
        t.push_hex16(words[i]);
    }
    if best.is_some_and(|(base, len)| base + len == 8) {
        t.push(b':');
    }
    t
}

/// A link-layer address as libnl's `nl_addr2str` writes it: lower-case
/// hex bytes separated by colons (`02:00:00:00:00:01` for Ethernet),
/// `none` when absent or empty.
pub fn lladdr(a: Option<&[u8]>) -> Text {
    let mut t = Text::new();
    match a {
        None | Some([]) => t.push_str(b"none"),
        Some(bytes) => {
            for (i, &b) in bytes.iter().take(20).enumerate() {
                if i > 0 {
                    t.push(b':');
                }
                t.push_hex8(b);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        String::from_utf8(ipv6(a.octets()).as_bytes().to_vec()).unwrap()
    }

    /// What glibc's inet_ntop prints, for the corner cases that matter
    /// (the right-hand sides are glibc's own output, via Python's
    /// `socket.inet_ntop` on this machine).
    #[test]
    fn ipv6_text_is_glibcs() {
        let cases = [
            ("::", "::"),
            ("::1", "::1"),
            ("::2:0", "::0.2.0.0"),
            ("1::", "1::"),
            ("fe80::1", "fe80::1"),
            ("FE80::AbCd:0001", "fe80::abcd:1"),
            ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0:0:1::1", "2001:0:0:1::1"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
            ("2001:db8:0:1:2:3:4:5", "2001:db8:0:1:2:3:4:5"),
            ("0:0:1::", "0:0:1::"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
            ("::10.0.0.1", "::10.0.0.1"),
            ("::0.0.0.1", "::1"),
            ("::ffff:0:10.0.0.1", "::ffff:0:a00:1"),
            ("0:0:0:0:0:1:10.0.0.1", "::1:a00:1"),
            ("ff02::1:ff00:1", "ff02::1:ff00:1"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ];
        for (input, glibc) in cases {
            assert_eq!(v6(input), glibc, "{input}");
        }
    }

    #[test]
    fn ipv4_and_mac_text() {
        assert_eq!(ipv4([10, 0, 0, 2]).as_bytes(), b"10.0.0.2");
        assert_eq!(ipv4([255, 0, 100, 9]).as_bytes(), b"255.0.100.9");
        assert_eq!(
            lladdr(Some(&[2, 0xAB, 0, 0, 0x0c, 0xff])).as_bytes(),
            b"02:ab:00:00:0c:ff"
        );
        assert_eq!(lladdr(None).as_bytes(), b"none");
        assert_eq!(lladdr(Some(&[])).as_bytes(), b"none");
        assert_eq!(lladdr(Some(&[10, 0, 0, 1])).as_bytes(), b"0a:00:00:01");
    }

    extern "C" {
        /// glibc's own, to compare against.
        fn inet_ntop(
            af: libc::c_int,
            src: *const libc::c_void,
            dst: *mut libc::c_char,
            size: libc::socklen_t,
        ) -> *const libc::c_char;
    }

    /// glibc's text for `a`.
    fn glibc(a: [u8; 16]) -> Vec<u8> {
        let mut out = [0 as libc::c_char; 64];
        // SAFETY: `a` is 16 readable bytes (an in6_addr), `out` 64
        // writable bytes whose size is passed; glibc writes a
        // NUL-terminated string into it or returns null.
        let r = unsafe {
            inet_ntop(
                libc::AF_INET6,
                a.as_ptr().cast(),
                out.as_mut_ptr(),
                out.len() as libc::socklen_t,
            )
        };
        assert!(!r.is_null());
        out.iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect()
    }

    /// 200,000 addresses heavy in zero words (and ::ffff: forms), each
    /// written exactly as glibc writes it.
    #[test]
    fn ipv6_text_equals_glibc_inet_ntop_on_many_addresses() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            let mut a = [0u8; 16];
            for w in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let word = match x % 4 {
                    0 | 1 => 0,
                    2 if w == 5 => 0xffff,
                    _ => (x >> 16) as u16,
                };
                a[2 * w..2 * w + 2].copy_from_slice(&word.to_be_bytes());
            }
            assert_eq!(
                String::from_utf8_lossy(ipv6(a).as_bytes()),
                String::from_utf8_lossy(&glibc(a)),
                "{a:?}"
            );
        }
    }
}
