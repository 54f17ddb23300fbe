//! A session: one Redis connection and the conversation a syncer holds on
//! it. The loop only dispatches; each session owns its protocol (what it
//! sends on connect, how it reads its replies, what its unanswered
//! commands mean when the connection drops). What every session does the
//! same way — connecting, registering with the reactor, reporting, losing
//! the connection — is here, once.

use crate::engine::event_loop::LoopIo;
use crate::engine::reactor::{Readiness, Token};
use crate::engine::redis::conn::{ConnectStep, Connection, LinkState, Lost};
use crate::engine::sys::monotonic_ns;
use crate::{log_error, log_warn};

/// One Redis conversation of a syncer.
pub trait Session {
    /// What the session works on besides its connection (the syncer's
    /// table, and what its sessions tell each other).
    type Work;

    /// The connection.
    fn conn(&mut self) -> &mut dyn Connection;
    /// The connection just came up: queue what a fresh connection needs.
    fn on_connected(&mut self, work: &mut Self::Work, io: &mut LoopIo<'_>);
    /// Read and handle every reply that arrived.
    fn read(&mut self, work: &mut Self::Work, io: &mut LoopIo<'_>) -> Result<(), Lost>;
    /// Close the connection (already deregistered) and settle every
    /// command that got no answer.
    fn drop_connection(&mut self, work: &mut Self::Work, now_ns: u64);
}

/// If the session's connection is down and due, start connecting.
pub fn poll_connect<S: Session>(s: &mut S, work: &mut S::Work, token: Token, io: &mut LoopIo<'_>) {
    match s.conn().poll_connect(monotonic_ns()) {
        ConnectStep::Idle => {}
        ConnectStep::Started { fd, ready } => {
            if let Err(e) = io.reactor.register(fd, token) {
                log_error!("registering a Redis socket: {e}");
                lose(s, work, Lost::Io(e), io);
                return;
            }
            if ready {
                connected(s, work, token, io);
            }
        }
        ConnectStep::Failed(e) => report_connect_failure(s.conn(), &e, io),
    }
}

/// A readiness event on the session's socket: finish connecting, flush,
/// read replies.
pub fn on_ready<S: Session>(s: &mut S, work: &mut S::Work, ev: Readiness, io: &mut LoopIo<'_>) {
    if s.conn().state() == LinkState::Connecting {
        if !(ev.writable || ev.error) {
            return;
        }
        match s.conn().finish_connect() {
            Ok(true) => connected(s, work, ev.token, io),
            Ok(false) => return,
            Err(Lost::Io(e)) => {
                report_connect_failure(s.conn(), &e, io);
                close(s, work, io);
                return;
            }
            Err(other) => return lose(s, work, other, io),
        }
    }
    if ev.writable {
        if let Err(e) = s.conn().flush(io.reactor) {
            return lose(s, work, e, io);
        }
    }
    if ev.readable || ev.error {
        if let Err(e) = s.read(work, io) {
            lose(s, work, e, io);
        }
    }
}

/// Send what the session queued (as much as the socket takes); `false`
/// if that lost the connection.
pub fn flush<S: Session>(s: &mut S, work: &mut S::Work, io: &mut LoopIo<'_>) -> bool {
    match s.conn().flush(io.reactor) {
        Ok(_) => true,
        Err(e) => {
            lose(s, work, e, io);
            false
        }
    }
}

/// The connection is up: its bytes go through the reactor from now on
/// (io_uring's ring, when it does I/O), then the session opens it.
fn connected<S: Session>(s: &mut S, work: &mut S::Work, token: Token, io: &mut LoopIo<'_>) {
    if let Some(fd) = s.conn().fd() {
        if let Err(e) = io.reactor.start_stream(fd, token) {
            return lose(s, work, Lost::Io(e), io);
        }
    }
    s.on_connected(work, io);
}

/// The connection broke: say so, close it, settle what it carried.
pub fn lose<S: Session>(s: &mut S, work: &mut S::Work, why: Lost, io: &mut LoopIo<'_>) {
    let role = s.conn().role();
    log_warn!("{role}: Redis connection lost ({why}); reconnecting");
    io.notifier.status(&format!(
        "{role}: Redis connection lost ({why}); reconnecting"
    ));
    close(s, work, io);
}

fn close<S: Session>(s: &mut S, work: &mut S::Work, io: &mut LoopIo<'_>) {
    if let Some(fd) = s.conn().fd() {
        let _ = io.reactor.deregister(fd);
    }
    s.drop_connection(work, monotonic_ns());
}

/// Say that an attempt to connect failed: the first in a row, then the
/// 2nd, 4th, 8th… (a Redis away for a minute is retried every couple of
/// seconds by each connection: a line per attempt said nothing new).
fn report_connect_failure(conn: &mut dyn Connection, e: &std::io::Error, io: &LoopIo<'_>) {
    let attempt = conn.note_failed_attempt();
    if !attempt.is_power_of_two() {
        return;
    }
    let (role, addr) = (
        conn.role(),
        conn.address().map(|a| a.to_string()).unwrap_or_default(),
    );
    log_warn!(
        "{role}: cannot connect to Redis at {addr}: {e}; retrying (attempt {attempt}; the next said at {})",
        attempt * 2
    );
    io.notifier
        .status(&format!("Redis unreachable at {addr}: {e}; retrying"));
}
