//! Decoding Redis replies (RESP2) incrementally from a receive buffer.
//!
//! `redis-protocol`'s range decoder finds frame boundaries without copying;
//! scalar replies (the hot path's `:1`) become a borrowed [`Reply`] with no
//! allocation. Only arrays (start-up reads, pub/sub messages) allocate.

use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

/// One reply, borrowing the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`
    Status(&'a [u8]),
    /// `-ERR …`
    Error(&'a [u8]),
    /// `:n`
    Int(i64),
    /// `$n …`
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`
    Nil,
    /// `*n …`
    Array(Vec<Reply<'a>>),
}

impl<'a> Reply<'a> {
    /// The bytes of a status or bulk reply.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Reply::Status(b) | Reply::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The error text of an error reply.
    pub fn error(&self) -> Option<&'a [u8]> {
        match *self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// An error reply whose first word is `code` (`NOSCRIPT`, `LOADING`, …).
    pub fn is_error_code(&self, code: &[u8]) -> bool {
        match self {
            Reply::Error(e) => {
                e.starts_with(code) && matches!(e.get(code.len()), None | Some(b' '))
            }
            _ => false,
        }
    }

    /// Pairs of an `HGETALL` reply.
    pub fn pairs(&self) -> Vec<(&'a [u8], &'a [u8])> {
        match self {
            Reply::Array(items) => items
                .chunks_exact(2)
                .filter_map(|kv| Some((kv[0].as_bytes()?, kv[1].as_bytes()?)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The stream of replies could not be decoded: the connection is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn convert<'a>(buf: &'a [u8], frame: &RangeFrame) -> Reply<'a> {
    let slice = |r: &(usize, usize)| buf.get(r.0..r.1).unwrap_or(&[]);
    match frame {
        RangeFrame::SimpleString(r) => Reply::Status(slice(r)),
        RangeFrame::Error(r) => Reply::Error(slice(r)),
        RangeFrame::Integer(i) => Reply::Int(*i),
        RangeFrame::BulkString(r) => Reply::Bulk(slice(r)),
        RangeFrame::Array(items) => Reply::Array(items.iter().map(|f| convert(buf, f)).collect()),
        RangeFrame::Null => Reply::Nil,
    }
}

/// Decode the first complete reply in `buf`: the reply and the bytes it took,
/// `Ok(None)` when more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    match decode_range(buf) {
        Ok(Some((frame, used))) => Ok(Some((convert(buf, &frame), used))),
        Ok(None) => Ok(None),
        Err(e) => Err(ProtocolError(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(decode(b":1\r\n").unwrap(), Some((Reply::Int(1), 4)));
        assert_eq!(
            decode(b"+OK\r\n:2").unwrap(),
            Some((Reply::Status(b"OK"), 5))
        );
        assert_eq!(decode(b"$-1\r\n").unwrap(), Some((Reply::Nil, 5)));
        assert_eq!(
            decode(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Bulk(b"abc"), 9))
        );
        let (r, _) = decode(b"-NOSCRIPT No matching script.\r\n")
            .unwrap()
            .unwrap();
        assert!(r.is_error_code(b"NOSCRIPT"));
        assert!(!r.is_error_code(b"NOSCRIPTS"));
        assert!(!r.is_error_code(b"ERR"));
    }

    #[test]
    fn incomplete_needs_more() {
        for partial in [&b""[..], b":1", b"$3\r\nab", b"*2\r\n:1\r\n", b"-ERR"] {
            assert_eq!(decode(partial).unwrap(), None, "{partial:?}");
        }
    }

    #[test]
    fn arrays_and_pairs() {
        let (r, used) = decode(b"*4\r\n$5\r\nlanes\r\n$1\r\n0\r\n$3\r\nmtu\r\n$4\r\n9100\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(used, 41);
        assert_eq!(
            r.pairs(),
            vec![(&b"lanes"[..], &b"0"[..]), (&b"mtu"[..], &b"9100"[..])]
        );
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(decode(b"?what\r\n").is_err());
        assert!(decode(b":abc\r\n").is_err());
    }
}
