//! One stream socket (a Redis connection) whose bytes go through the ring:
//! what a multishot receive delivered and the loop has not read yet, and
//! what the loop wrote that the ring has not sent yet.
//!
//! It keeps a socket's semantics for the connection above it: `send`
//! takes as much as there is room for (copied, so the connection's buffer
//! is free again at once) and `WouldBlock` when full; `recv` copies out
//! what arrived, `WouldBlock` when nothing did, `0` at the end of the
//! stream. One send is in flight at a time; what comes meanwhile waits in
//! `queued` and goes with the next.

use std::collections::VecDeque;
use std::os::fd::RawFd;

/// Bytes a stream holds unsent at most (in flight plus queued): past this
/// `send` says `WouldBlock`, as a full socket buffer does, and the
/// connection keeps the rest under its own limit.
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
    pub queued: Vec<u8>,
    /// A `send` said `WouldBlock`: report writable when room frees.
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
            queued: Vec::new(),
            blocked: false,
        }
    }

    /// Bytes accepted and not yet sent.
    pub fn unsent(&self) -> usize {
        self.in_flight.len() - self.sent + self.queued.len()
    }

    /// Take what `buf` holds, as much as there is room for; how much.
    pub fn accept(&mut self, buf: &[u8]) -> usize {
        let n = buf.len().min(SEND_ROOM.saturating_sub(self.unsent()));
        if n == 0 {
            self.blocked = true;
            return 0;
        }
        if self.sending {
            self.queued.extend_from_slice(&buf[..n]);
        } else {
            self.in_flight.clear();
            self.in_flight.extend_from_slice(&buf[..n]);
            self.sent = 0;
        }
        n
    }

    /// A send completed having sent `n` bytes; whether more is to send
    /// (the rest of this one, or what was queued, now in `in_flight`).
    pub fn sent(&mut self, n: usize) -> bool {
        self.sending = false;
        self.sent = (self.sent + n).min(self.in_flight.len());
        if self.sent < self.in_flight.len() {
            return true;
        }
        std::mem::swap(&mut self.in_flight, &mut self.queued);
        self.queued.clear();
        self.sent = 0;
        !self.in_flight.is_empty()
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
    fn sends_go_one_at_a_time_and_queue_behind_the_one_in_flight() {
        let mut s = Stream::new(3, 0);
        assert_eq!(s.accept(b"abc"), 3);
        s.sending = true;
        assert_eq!(s.to_send(), b"abc");
        assert_eq!(s.accept(b"de"), 2);
        assert_eq!(s.unsent(), 5);
        // A short send: the rest goes next, the queue waits.
        assert!(s.sent(1));
        assert_eq!(s.to_send(), b"bc");
        s.sending = true;
        assert!(s.sent(2));
        assert_eq!(s.to_send(), b"de");
        s.sending = true;
        assert!(!s.sent(2));
        assert_eq!(s.unsent(), 0);
    }

    #[test]
    fn a_full_stream_takes_part_then_nothing_and_says_so() {
        let mut s = Stream::new(3, 0);
        let big = vec![7u8; SEND_ROOM - 10];
        assert_eq!(s.accept(&big), big.len());
        s.sending = true;
        assert_eq!(s.accept(&[1; 64]), 10);
        assert!(!s.blocked);
        assert_eq!(s.accept(&[1; 64]), 0);
        assert!(s.blocked);
    }
}
