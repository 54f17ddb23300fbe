//! One stream socket (a Redis connection) whose bytes go through the ring:
//! what a multishot receive delivered and the loop has not read yet, and
//! what the loop wrote that the ring has not sent yet.
//!
//! It keeps a socket's semantics for the connection above it: `send`
//! takes what it is given (copied, so the connection's buffer is free
//! again at once) when no send is in flight, else says `WouldBlock`, and
//! the stream reports writable when the send completes; `recv` copies out
//! what arrived, `WouldBlock` when nothing did, `0` at the end of the
//! stream.
//!
//! One send at a time, and nothing taken meanwhile, is the backpressure:
//! a send completes once the kernel's socket buffer has taken all of it,
//! so while Redis is slow the connection's own bounded buffer fills and
//! the syncer's table coalesces changes, as with epoll. (Queueing behind
//! the send in flight instead took every change as its own write; Redis
//! fell behind and a 200,000-change burst saw 20-80 ms tails.)

use std::collections::VecDeque;
use std::os::fd::RawFd;

/// Bytes one send takes at most; the connection keeps the rest.
pub const SEND_ROOM: usize = 4 << 20;

/// A received buffer not wholly read yet.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub bid: u16,
    pub at: usize,
    pub len: usize,
}

/// The ring side of one stream socket.
#[derive(Debug)]
pub struct Stream {
    pub fd: RawFd,
    /// The `user_data` of its receive and send requests.
    pub user_data: u64,
    pub received: VecDeque<Received>,
    /// The peer closed its end.
    pub eof: bool,
    /// A receive or send failed with this errno.
    pub error: Option<i32>,
    /// The multishot receive is armed (or about to be).
    pub receiving: bool,
    /// The send in flight: `in_flight[sent..]` is with the kernel.
    pub in_flight: Vec<u8>,
    pub sent: usize,
    pub sending: bool,
    /// A `send` said `WouldBlock`: report writable when the send completes.
    pub blocked: bool,
}

impl Stream {
    pub fn new(fd: RawFd, user_data: u64) -> Stream {
        Stream {
            fd,
            user_data,
            received: VecDeque::new(),
            eof: false,
            error: None,
            receiving: false,
            in_flight: Vec::new(),
            sent: 0,
            sending: false,
            blocked: false,
        }
    }

    /// Bytes taken and not yet sent.
    pub fn unsent(&self) -> usize {
        self.in_flight.len() - self.sent
    }

    /// Take what `buf` holds (up to [`SEND_ROOM`]) unless a send is in
    /// flight; how much.
    pub fn accept(&mut self, buf: &[u8]) -> usize {
        if self.sending || self.unsent() > 0 {
            self.blocked = true;
            return 0;
        }
        let n = buf.len().min(SEND_ROOM);
        self.in_flight.clear();
        self.in_flight.extend_from_slice(&buf[..n]);
        self.sent = 0;
        n
    }

    /// A send completed having sent `n` bytes; whether the rest is still
    /// to send.
    pub fn sent(&mut self, n: usize) -> bool {
        self.sending = false;
        self.sent = (self.sent + n).min(self.in_flight.len());
        if self.sent < self.in_flight.len() {
            return true;
        }
        self.in_flight.clear();
        self.sent = 0;
        false
    }

    /// What the next send request carries.
    pub fn to_send(&self) -> &[u8] {
        &self.in_flight[self.sent..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_send_at_a_time_and_nothing_taken_meanwhile() {
        let mut s = Stream::new(3, 0);
        assert_eq!(s.accept(b"abc"), 3);
        s.sending = true;
        assert_eq!(s.to_send(), b"abc");
        // In flight: the connection keeps its bytes, and hears when to
        // try again.
        assert_eq!(s.accept(b"de"), 0);
        assert!(s.blocked);
        // A short send: the rest goes next, still nothing taken.
        assert!(s.sent(1));
        assert_eq!(s.to_send(), b"bc");
        assert_eq!(s.accept(b"de"), 0);
        s.sending = true;
        assert!(!s.sent(2));
        assert_eq!(s.unsent(), 0);
        assert_eq!(s.accept(b"de"), 2);
        assert_eq!(s.to_send(), b"de");
    }

    #[test]
    fn one_send_takes_at_most_the_send_room() {
        let mut s = Stream::new(3, 0);
        let big = vec![7u8; SEND_ROOM + 10];
        assert_eq!(s.accept(&big), SEND_ROOM);
    }
}
