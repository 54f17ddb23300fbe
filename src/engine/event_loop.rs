//! The event loop every syncer runs: one thread, every fd, one Redis write
//! per turn.
//!
//! A turn: wait for readiness → dispatch it (netlink, signals, or one of the
//! syncer's Redis sessions) → drain netlink into the syncer (up to
//! `max_batch_datagrams`) → let the syncer write what it owes, one `send`
//! per connection. The loop owns what every syncer has — the reactor, the
//! netlink reader and its dumps, signals and SIGHUP, the systemd
//! notifications, the stop grace, burst coalescing, the housekeeping tick —
//! and dispatches; the syncer ([`Syncer`]) supplies the middle: how
//! messages change its table, its Redis sessions, its timers.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::engine::metrics::export::MetricsControl;
use crate::engine::metrics::Recorder;
use crate::engine::netlink::drain::{drain, request_dump, Drained, KernelFollow};
use crate::engine::netlink::reader::LinkReader;
use crate::engine::reactor::{Reactor, Readiness, Token};
use crate::engine::runtime::config::{Config, ConfigSource, RELOADABLE};
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::signals::{Signal, Signals};
use crate::engine::sys::{monotonic_ns, thread_cpu_ns};
use crate::{log_error, log_notice, log_warn};

/// The netlink event socket's token.
pub const NETLINK: Token = 0;
/// The signalfd's token.
pub const SIGNALS: Token = 1;
/// The first token a syncer may use for its own fds.
pub const FIRST_SYNCER_TOKEN: Token = 2;

/// How long a stop waits for the batch in flight to be acknowledged.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Netlink turns in a row, each closer than [`BURST_GAP_NS`] (or
/// `coalesce_us`, when shorter) to the one before, that make a burst.
const BURST_TURNS: u32 = 3;
/// The most time between two turns of one burst, not counting a coalescing
/// sleep. Apart from the sleep, so that a longer sleep (neighsyncd's) never
/// makes changes that come one at a time look like a burst.
const BURST_GAP_NS: u64 = 200_000;
/// Housekeeping period: gauges, status line.
const TICK_NS: u64 = 1_000_000_000;

/// What the loop lends a syncer while it handles an event.
pub struct LoopIo<'a> {
    /// To register and deregister the syncer's sockets.
    pub reactor: &'a mut Reactor,
    /// systemd's `STATUS=` line.
    pub notifier: &'a Notifier,
    /// Counters and latency samples.
    pub recorder: &'a Recorder,
}

/// What a syncer supplies to the loop: the middle of every turn.
pub trait Syncer {
    /// Its view of the kernel: where datagrams go, and its dumps.
    type Follow: KernelFollow;

    /// The kernel follower, for the loop's drain.
    fn follow(&mut self) -> &mut Self::Follow;
    /// A readiness event on one of the syncer's tokens.
    fn on_ready(&mut self, ev: Readiness, io: &mut LoopIo<'_>);
    /// Timers due at `now_ns` (reconnects, polls, retries); returns the
    /// next instant it wants a turn, if any.
    fn on_timers(&mut self, now_ns: u64, io: &mut LoopIo<'_>) -> Option<u64>;
    /// Encode what is owed and send it: one `send` per connection.
    fn write(&mut self, io: &mut LoopIo<'_>);
    /// Whether every connection is usable (for `READY=1`).
    fn ready(&self) -> bool;
    /// Writes sent and not yet acknowledged, or owed and not yet sent;
    /// `None` when Redis is down (nothing more can settle).
    fn unsettled(&self) -> Option<usize>;
    /// Once a second: refresh the syncer's gauges.
    fn tick(&mut self, recorder: &Recorder);
    /// SIGHUP reloaded the configuration; `new` is the running one now.
    /// The syncer applies `[log]` (it knows what CONFIG_DB's LOGGER entry
    /// says, which wins where set).
    fn reloaded(&mut self, new: &Config);
    /// The one-line totals logged at exit.
    fn log_totals(&self, recorder: &Recorder);
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A stop signal; the batch in flight was finished.
    Stopped(i32),
}

/// Sleeps between turns while events come in a burst. A turn read netlink
/// datagrams: when several such turns in a row came closer together than
/// the window, events arrive in a burst, so sleep the window and the next
/// turn takes a bigger batch (a wake-up costs more than several messages).
/// One change at a time (a port's message, its peer's, the operstate change
/// later) never looks like a burst. The loop spends the window in its next
/// wait (`Reactor::wait_coalescing`: a sleep and a poll with epoll, one
/// `io_uring_enter` with io_uring).
#[derive(Debug)]
struct Coalescer {
    window_ns: u64,
    /// Every turn of a burst sleeps (else one in `BURST_TURNS + 1`).
    every_turn: bool,
    last_turn_ns: u64,
    close_turns: u32,
}

impl Coalescer {
    /// Note a turn that read datagrams at `now` (its end); true when the
    /// loop should sleep [`Coalescer::window`] before the next one.
    fn burst(&mut self, now: u64) -> bool {
        let gap = self.window_ns.min(BURST_GAP_NS);
        if self.window_ns > 0 && now.saturating_sub(self.last_turn_ns) < gap {
            self.close_turns = self.close_turns.saturating_add(1);
        } else {
            self.close_turns = 0;
        }
        self.last_turn_ns = now;
        self.close_turns >= BURST_TURNS
    }

    fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }

    /// The coalescing sleep ended at `now`. With `every_turn`, the next
    /// turn's distance is measured from here, so the burst goes on while
    /// its turns keep finding datagrams. Without, it is measured from the
    /// turn before the sleep, which the sleep puts out of reach: the count
    /// starts again and at most one turn in `BURST_TURNS + 1` sleeps,
    /// bounding the latency added to a burst.
    fn slept(&mut self, now: u64) {
        if self.every_turn {
            self.last_turn_ns = now;
        }
    }
}

/// The netlink event socket and our dumps on it.
struct Netlink {
    reader: LinkReader,
    dump_seq: u32,
    /// A drain stopped at the per-turn cap: more may be queued.
    more: bool,
    max_batch: usize,
}

/// The loop: what every syncer shares, around the syncer's middle.
pub struct EventLoop<S: Syncer> {
    cfg: Config,
    /// Declared before `netlink`, so dropped first: with io_uring the
    /// kernel receives into the netlink reader's ring until the reactor's
    /// drop has ended that receive.
    reactor: Reactor,
    signals: Signals,
    notifier: Notifier,
    recorder: Recorder,
    netlink: Netlink,
    syncer: S,
    coalescer: Coalescer,
    /// The last turn was part of a burst: the next wait gathers first.
    coalescing: bool,
    next_tick_ns: u64,
    next_watchdog_ns: u64,
    /// A stop signal and the deadline of its grace.
    stopping: Option<(i32, u64)>,
    /// `READY=1` status waiting for the syncer's connections.
    ready_status: Option<String>,
    /// What SIGHUP reloads, and the metrics thread's control.
    reload: Option<(ConfigSource, MetricsControl)>,
    /// Scratch buffer reused every turn.
    ready: Vec<Readiness>,
}

impl<S: Syncer> EventLoop<S> {
    /// Assemble the loop: `reader` is the netlink event socket start-up
    /// subscribed (`dump_seq` the last dump sequence it used).
    pub fn new(
        cfg: Config,
        mut reactor: Reactor,
        signals: Signals,
        notifier: Notifier,
        recorder: Recorder,
        (mut reader, dump_seq): (LinkReader, u32),
        syncer: S,
    ) -> std::io::Result<EventLoop<S>> {
        let fd = reader.socket().as_raw_fd();
        let in_ring = match reader.ring_memory() {
            // SAFETY: the ring is the reader's, which the loop owns with
            // the reactor and drops after it (see the field order); the
            // reader reads it only at the offsets the reactor reports.
            Some(memory) => unsafe { reactor.receive_netlink(fd, NETLINK, memory)? },
            None => false,
        };
        if in_ring {
            reader.receive_through_ring();
        } else {
            reactor.register(fd, NETLINK)?;
        }
        reactor.register(signals.as_raw_fd(), SIGNALS)?;
        recorder.counters.reactor.set(reactor.gauge());
        let now = monotonic_ns();
        Ok(EventLoop {
            netlink: Netlink {
                reader,
                dump_seq,
                more: true,
                max_batch: cfg.netlink.max_batch_datagrams,
            },
            coalescer: Coalescer {
                window_ns: cfg.runtime.coalesce_us * 1_000,
                every_turn: crate::engine::runtime::config::daemon().coalesce_every_turn,
                last_turn_ns: 0,
                close_turns: 0,
            },
            coalescing: false,
            next_tick_ns: now,
            next_watchdog_ns: now,
            stopping: None,
            ready_status: None,
            reload: None,
            ready: Vec::with_capacity(64),
            cfg,
            reactor,
            signals,
            notifier,
            recorder,
            syncer,
        })
    }

    /// Send `READY=1` with `status` once the syncer's connections are
    /// usable: from then on every change is processed and written.
    pub fn announce_ready(&mut self, status: String) {
        self.ready_status = Some(status);
    }

    /// Where the configuration came from, and the metrics thread's
    /// control, for SIGHUP.
    pub fn set_reload(&mut self, source: ConfigSource, metrics: MetricsControl) {
        self.reload = Some((source, metrics));
    }

    /// Run until a stop signal.
    pub fn run(&mut self) -> std::io::Result<Exit> {
        loop {
            let now = monotonic_ns();
            let timeout = self.timers(now);
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            if std::mem::take(&mut self.coalescing) {
                self.reactor
                    .wait_coalescing(self.coalescer.window(), &mut ready)?;
                self.coalescer.slept(monotonic_ns());
            } else {
                self.reactor.wait(timeout, &mut ready)?;
            }
            self.reactor
                .take_datagrams(self.netlink.reader.ring_queue());
            let datagrams_before = self.recorder.counters.datagrams.get();
            self.recorder.counters.loop_turns.inc();
            for ev in &ready {
                self.dispatch(*ev);
            }
            self.ready = ready;
            if self.netlink.more && self.stopping.is_none() {
                self.drain_netlink();
            }
            if self.syncer.follow().dump_due(now) {
                let n = &mut self.netlink;
                request_dump(&n.reader, self.syncer.follow(), &mut n.dump_seq);
            }
            self.syncer.write(&mut LoopIo {
                reactor: &mut self.reactor,
                notifier: &self.notifier,
                recorder: &self.recorder,
            });
            // In a burst the next wait first gathers events for the
            // window (see `Coalescer`).
            self.coalescing = self.recorder.counters.datagrams.get() != datagrams_before
                && self.coalescer.burst(monotonic_ns())
                && self.stopping.is_none();
            if self.syncer.ready() {
                if let Some(status) = self.ready_status.take() {
                    self.notifier.ready(&status);
                }
            }
            if let Some(exit) = self.stop_due() {
                return Ok(exit);
            }
        }
    }

    /// A stop signal came and everything written is acknowledged (or
    /// Redis is down, or the grace ran out).
    fn stop_due(&self) -> Option<Exit> {
        let (sig, deadline) = self.stopping?;
        let unsettled = self.syncer.unsettled();
        let settled = unsettled.is_none_or(|n| n == 0);
        if !settled && monotonic_ns() < deadline {
            return None;
        }
        if let Some(n) = unsettled.filter(|n| *n > 0) {
            log_warn!("stopping with {n} Redis writes unacknowledged or unsent");
        }
        self.syncer.log_totals(&self.recorder);
        Some(Exit::Stopped(sig))
    }

    fn dispatch(&mut self, ev: Readiness) {
        match ev.token {
            NETLINK if self.stopping.is_none() => self.drain_netlink(),
            NETLINK => {}
            SIGNALS => self.read_signals(),
            _ => self.syncer.on_ready(
                ev,
                &mut LoopIo {
                    reactor: &mut self.reactor,
                    notifier: &self.notifier,
                    recorder: &self.recorder,
                },
            ),
        }
    }

    /// Read and apply datagrams until the socket is empty or the per-turn
    /// cap; a capped drain continues next turn, after this turn's write.
    fn drain_netlink(&mut self) {
        let n = &mut self.netlink;
        let counters = &*self.recorder.counters;
        match drain(
            &mut n.reader,
            self.syncer.follow(),
            counters,
            &mut n.dump_seq,
            n.max_batch,
        ) {
            Ok(Drained::Empty) => n.more = false,
            Ok(Drained::Capped) => n.more = true,
            Err(e) => {
                log_error!("netlink recv: {e}");
                n.more = false;
            }
        }
        // Ring buffers read go back to the kernel; a datagram cut in one
        // ends receiving through the ring (the reader peeks from now on).
        self.reactor.give_back(n.reader.read_buffers());
        if self.reactor.netlink_in_ring() && !n.reader.in_ring() {
            if let Err(e) = self.reactor.stop_netlink() {
                log_error!("netlink: leaving the ring for readiness: {e}");
            }
        }
    }

    fn read_signals(&mut self) {
        loop {
            match self.signals.read() {
                Ok(Some(Signal::Stop(sig))) => {
                    if self.stopping.is_none() {
                        log_notice!("signal {sig}: finishing the batch in flight, then exiting");
                        self.notifier.stopping();
                        self.stopping = Some((sig, monotonic_ns() + STOP_GRACE.as_nanos() as u64));
                    }
                }
                Ok(Some(Signal::Reload)) => self.reload(),
                Ok(None) => return,
                Err(e) => {
                    log_error!("reading signals: {e}");
                    return;
                }
            }
        }
    }

    /// Run what is due at `now`; returns how long the reactor may sleep.
    fn timers(&mut self, now: u64) -> Option<Duration> {
        let syncer_next = self.syncer.on_timers(
            now,
            &mut LoopIo {
                reactor: &mut self.reactor,
                notifier: &self.notifier,
                recorder: &self.recorder,
            },
        );
        let dump_next = self.syncer.follow().dump_timer(now);
        self.notifier.flush();
        if let Some(interval) = self.notifier.watchdog_interval() {
            if now >= self.next_watchdog_ns {
                self.notifier.watchdog();
                self.next_watchdog_ns = now + interval.as_nanos() as u64;
            }
        }
        if now >= self.next_tick_ns {
            self.recorder.counters.loop_cpu_ns.set(thread_cpu_ns());
            self.syncer.tick(&self.recorder);
            self.next_tick_ns = now + TICK_NS;
        }
        if self.cfg.runtime.busy_poll || (self.netlink.more && self.stopping.is_none()) {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_tick_ns;
        for t in [syncer_next, dump_next].into_iter().flatten() {
            next = next.min(t);
        }
        if self.notifier.watchdog_interval().is_some() {
            next = next.min(self.next_watchdog_ns);
        }
        if let Some((_, deadline)) = self.stopping {
            next = next.min(deadline);
        }
        Some(Duration::from_nanos(next.saturating_sub(now)))
    }

    /// SIGHUP: load the configuration again and apply what can change at
    /// run time; name what needs a restart.
    fn reload(&mut self) {
        let Some((source, metrics)) = &self.reload else {
            log_notice!("SIGHUP: no configuration source to reload");
            return;
        };
        let new = match source.load() {
            Ok(c) => c,
            Err(e) => {
                log_error!("SIGHUP: configuration not reloaded: {e}");
                return;
            }
        };
        let changed = self.cfg.differences(&new);
        let (applied, ignored): (Vec<&String>, Vec<&String>) = changed
            .iter()
            .partition(|k| RELOADABLE.contains(&k.as_str()));
        metrics.set_log_interval(new.metrics.log_interval_s);
        if !ignored.is_empty() {
            let names: Vec<&str> = ignored.iter().map(|k| k.as_str()).collect();
            log_warn!(
                "SIGHUP: not reloaded, restart to apply: {}",
                names.join(", ")
            );
        }
        let names: Vec<&str> = applied.iter().map(|k| k.as_str()).collect();
        log_notice!(
            "SIGHUP: configuration reloaded{}",
            if names.is_empty() {
                String::new()
            } else {
                format!("; applied {}", names.join(", "))
            }
        );
        // Keep the running values of what was not applied.
        self.cfg.log = new.log;
        self.cfg.metrics.log_interval_s = new.metrics.log_interval_s;
        self.syncer.reloaded(&self.cfg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    fn coalescer(window_us: u64) -> Coalescer {
        Coalescer {
            window_ns: window_us * US,
            every_turn: false,
            last_turn_ns: 0,
            close_turns: 0,
        }
    }

    /// Turns ending `gap_us` apart (plus the sleep, after one) from `now`:
    /// which slept.
    fn turns(c: &mut Coalescer, now: &mut u64, gap_us: u64, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| {
                *now += gap_us * US;
                let sleep = c.burst(*now);
                if sleep {
                    *now += c.window_ns;
                    c.slept(*now);
                }
                sleep
            })
            .collect()
    }

    #[test]
    fn a_burst_sleeps_once_every_four_turns() {
        let (mut c, mut now) = (coalescer(1000), 1_000_000 * US);
        let slept = turns(&mut c, &mut now, 50, 10);
        let (f, t) = (false, true);
        assert_eq!(slept, [f, f, f, t, f, f, f, t, f, f]);
    }

    #[test]
    fn with_every_turn_a_burst_sleeps_after_each_turn_until_it_ends() {
        let (mut c, mut now) = (coalescer(1000), 1_000_000 * US);
        c.every_turn = true;
        let slept = turns(&mut c, &mut now, 50, 8);
        let (f, t) = (false, true);
        assert_eq!(slept, [f, f, f, t, t, t, t, t]);
        // A pause longer than a burst's gap ends it.
        assert_eq!(turns(&mut c, &mut now, 300, 1), [f]);
        assert_eq!(turns(&mut c, &mut now, 50, 3), [f, f, t]);
    }

    #[test]
    fn changes_one_at_a_time_never_sleep_even_with_a_long_window() {
        // neighsyncd's window is 1 ms; flood's latency mode changes one
        // neighbor every ~300 µs: no burst, though closer than the window.
        let mut now = 0;
        assert!(turns(&mut coalescer(1000), &mut now, 300, 20)
            .iter()
            .all(|s| !s));
    }

    #[test]
    fn a_window_shorter_than_the_gap_is_the_gap_and_0_is_off() {
        let mut now = 0;
        let never = |s: Vec<bool>| s.iter().all(|s| !s);
        assert!(never(turns(&mut coalescer(100), &mut now, 150, 10)));
        assert!(!never(turns(&mut coalescer(100), &mut now, 50, 10)));
        assert!(never(turns(&mut coalescer(0), &mut now, 1, 10)));
    }
}
