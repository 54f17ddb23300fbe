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

/// Whether the error text `error` starts with the word `code`.
fn error_code_is(error: &[u8], code: &[u8]) -> bool {
    error.starts_with(code) && matches!(error.get(code.len()), None | Some(b' '))
}

/// Error codes that mean "try again later", not "this command is wrong".
const RETRY_LATER: [&[u8]; 3] = [b"LOADING", b"BUSY", b"TRYAGAIN"];

/// What a command's reply asks of its sender: the one judgement of error
/// replies, shared by the loop's sessions and the blocking start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not an error reply.
    Done,
    /// `NOSCRIPT`: load the script again and resend.
    NoScript,
    /// `LOADING`, `BUSY`, `TRYAGAIN`: Redis cannot serve it yet; resend later.
    RetryLater,
    /// Any other error: the command itself failed.
    Failed,
}

impl Verdict {
    /// The verdict on a reply whose error text is `error` (`None`: not an error).
    pub fn of(error: Option<&[u8]>) -> Verdict {
        match error {
            None => Verdict::Done,
            Some(e) if error_code_is(e, b"NOSCRIPT") => Verdict::NoScript,
            Some(e) if RETRY_LATER.iter().any(|code| error_code_is(e, code)) => Verdict::RetryLater,
            Some(_) => Verdict::Failed,
        }
    }
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
            Reply::Error(e) => error_code_is(e, code),
            _ => false,
        }
    }

    /// The first word of an error reply (`OOM`, `BUSY`, …), for counting
    /// errors by kind.
    pub fn error_code(&self) -> Option<&'a [u8]> {
        let e = self.error()?;
        Some(e.split(|&b| b == b' ').next().unwrap_or(e))
    }

    /// What to do about this reply (see [`Verdict`]).
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.error())
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

/// Arrays nested deeper than this are a protocol error. Redis never sends
/// portsyncd anything nested more than twice; the bound exists because
/// redis-protocol's decoder recurses once per level with no limit of its
/// own, so a hostile or broken peer could overflow the stack.
pub const MAX_NESTING: usize = 512;

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn parse_len(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Walk the first reply's structure without recursion and refuse one
/// nested deeper than [`MAX_NESTING`]. Anything else (incomplete, or
/// malformed) is left for the decoder to report.
fn check_nesting(buf: &[u8]) -> Result<(), ProtocolError> {
    if buf.first() != Some(&b'*') {
        return Ok(());
    }
    let mut remaining = [0i64; MAX_NESTING];
    let mut depth = 0;
    let mut pos = 0;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(());
        };
        let Some(eol) = find_crlf(buf, pos + 1) else {
            return Ok(());
        };
        let line = &buf[pos + 1..eol];
        pos = eol + 2;
        match kind {
            b'*' => {
                let Some(n) = parse_len(line) else {
                    return Ok(());
                };
                if n > 0 {
                    if depth == MAX_NESTING {
                        return Err(ProtocolError(format!(
                            "reply nested deeper than {MAX_NESTING} arrays"
                        )));
                    }
                    remaining[depth] = n;
                    depth += 1;
                    continue;
                }
            }
            b'$' => {
                let Some(n) = parse_len(line) else {
                    return Ok(());
                };
                if n >= 0 {
                    pos = pos.saturating_add(n as usize).saturating_add(2);
                    if pos > buf.len() {
                        return Ok(());
                    }
                }
            }
            b'+' | b'-' | b':' => {}
            _ => return Ok(()),
        }
        // One element complete: close every array it completes.
        loop {
            if depth == 0 {
                return Ok(());
            }
            remaining[depth - 1] -= 1;
            if remaining[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// Decode the first complete reply in `buf`: the reply and the bytes it took,
/// `Ok(None)` when more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    check_nesting(buf)?;
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
    fn nesting_is_bounded_before_the_recursive_decoder_runs() {
        let nested = |depth: usize| {
            let mut b = b"*1\r\n".repeat(depth);
            b.extend_from_slice(b":1\r\n");
            b
        };
        let ok = nested(MAX_NESTING);
        assert_eq!(decode(&ok).unwrap().map(|(_, n)| n), Some(ok.len()));
        assert!(decode(&nested(MAX_NESTING + 1)).is_err());
        // Incomplete and deep: refused as soon as the depth is seen.
        assert!(decode(&b"*1\r\n".repeat(100_000)).is_err());
        // Siblings are not depth.
        let wide = b"*3\r\n*1\r\n:1\r\n*0\r\n$2\r\nab\r\n";
        assert_eq!(decode(wide).unwrap().map(|(_, n)| n), Some(wide.len()));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(decode(b"?what\r\n").is_err());
        assert!(decode(b":abc\r\n").is_err());
    }
}
