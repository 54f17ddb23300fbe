//! The dump state machine without sockets: the kernel's answers as bytes,
//! a follower that records what it was told.

use super::*;
use crate::engine::netlink::parse::{align4, NLMSG_HDRLEN};

const PID: u32 = 4242;
const S: u64 = 1_000_000_000;

/// What the follower heard.
#[derive(Default)]
struct Heard {
    messages: Vec<(u16, bool)>,
    started: u32,
    aborted: u32,
    completed: u32,
}

impl Follower for Heard {
    fn on_message(&mut self, h: &NlHeader, _: &[u8], _: u64, from_dump: bool) {
        self.messages.push((h.msg_type, from_dump));
    }
    fn dump_started(&mut self) {
        self.started += 1;
    }
    fn dump_aborted(&mut self) {
        self.aborted += 1;
    }
    fn dump_complete(&mut self, _: u64) -> usize {
        self.completed += 1;
        0
    }
}

/// One netlink message: header (type, flags, seq, pid) and payload.
fn msg(msg_type: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&pid.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(len), 0);
    m
}

/// A dump reply carrying one (opaque) link message.
fn reply(seq: u32, flags: u16) -> Vec<u8> {
    msg(parse::RTM_NEWLINK, flags | 0x2, seq, PID, &[0; 16])
}

fn done(seq: u32) -> Vec<u8> {
    msg(NLMSG_DONE, 0x2, seq, PID, &0i32.to_ne_bytes())
}

/// The kernel's error answer to request `seq`: `NLMSG_ERROR` with -errno.
fn refused(seq: u32, errno: i32) -> Vec<u8> {
    let mut payload = (-errno).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; 16]); // the request's header
    msg(NLMSG_ERROR, 0, seq, PID, &payload)
}

struct Bench {
    t: DumpTracker,
    c: Counters,
    f: Heard,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            t: DumpTracker::default(),
            c: Counters::default(),
            f: Heard::default(),
        }
    }
    fn feed(&mut self, datagram: &[u8], at: u64) -> Option<DumpEnd> {
        self.t.on_datagram(datagram, at, PID, &self.c, &mut self.f)
    }
    fn start(&mut self, seq: u32, at: u64) {
        assert!(self.t.due(at), "a dump should be due at {at}");
        self.t.started(seq, at, &self.c, &mut self.f);
    }
    fn lose(&mut self) {
        self.t.on_lost_messages(&self.c);
    }
    fn timer(&mut self, at: u64) {
        self.t.on_timer(at, &self.c, &mut self.f);
    }
}

#[test]
fn a_complete_dump_reconciles_and_leaves_nothing_owed() {
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    assert_eq!(b.feed(&reply(1, 0), 1), None);
    assert_eq!(b.f.messages, vec![(parse::RTM_NEWLINK, true)]);
    assert_eq!(b.feed(&done(1), 2), Some(DumpEnd::Complete { vanished: 0 }));
    assert_eq!(b.f.completed, 1);
    assert!(!b.t.running() && !b.t.wanted());
    assert_eq!(b.t.next_timer(), None);
    assert_eq!(b.c.resyncs.get(), 1);
    assert_eq!(b.c.dump_requests.get(), 1);
}

#[test]
fn enobufs_answer_keeps_the_dump_running_and_redoes_it_after() {
    // The kernel answered ENOBUFS yet goes on dumping with seq 1 as we read.
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    assert_eq!(b.feed(&refused(1, libc::ENOBUFS), 1), None);
    assert!(b.t.running(), "the kernel's dump goes on");
    assert_eq!(b.feed(&reply(1, 0), 2), None);
    assert_eq!(b.feed(&done(1), 3), Some(DumpEnd::Redo));
    assert_eq!(
        b.f.completed, 0,
        "a dump that started on a full buffer is not trusted"
    );
    assert!(b.t.due(3), "redone at once");
    b.start(2, 3);
    assert_eq!(b.feed(&done(2), 4), Some(DumpEnd::Complete { vanished: 0 }));
    assert_eq!(b.c.dump_enobufs.get(), 1);
}

/// Issue 11's stall: ENOBUFS on the request, EBUSY on the redo, then
/// nothing more was ever asked. Now the EBUSY waits for the earlier dump's
/// end and asks again; every loss ends in a complete dump.
#[test]
fn ebusy_waits_for_the_earlier_dump_then_asks_again() {
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    // The first dump's answer was lost with an overrun: we gave up on it...
    b.timer(DEADLINE_NS);
    assert_eq!(b.c.dump_timeouts.get(), 1);
    assert!(!b.t.due(DEADLINE_NS), "backoff first");
    let after = b.t.next_timer().unwrap();
    b.start(2, after);
    // ...but the kernel still runs it: the redo is refused EBUSY.
    assert_eq!(
        b.feed(&refused(2, libc::EBUSY), after + 1),
        Some(DumpEnd::Redo)
    );
    assert!(
        b.t.running() && !b.t.due(after + 1),
        "waits for the earlier dump"
    );
    // The earlier dump's replies are plain events; its end frees the kernel.
    assert_eq!(b.feed(&reply(1, 0), after + 2), None);
    assert_eq!(b.f.messages.last(), Some(&(parse::RTM_NEWLINK, false)));
    assert_eq!(b.feed(&done(1), after + 3), None);
    assert!(b.t.due(after + 3), "asks again once the kernel is free");
    b.start(3, after + 3);
    assert_eq!(
        b.feed(&done(3), after + 4),
        Some(DumpEnd::Complete { vanished: 0 })
    );
    assert_eq!(b.c.dump_busy.get(), 1);
}

#[test]
fn ebusy_with_no_end_in_sight_asks_again_after_the_deadline() {
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    b.feed(&refused(1, libc::EBUSY), 1);
    assert_eq!(b.t.next_timer(), Some(1 + DEADLINE_NS));
    b.timer(DEADLINE_NS);
    assert!(!b.t.due(DEADLINE_NS), "not before the deadline");
    b.timer(1 + DEADLINE_NS);
    assert!(b.t.due(1 + DEADLINE_NS));
}

#[test]
fn a_loss_during_a_dump_or_an_interrupted_dump_is_redone() {
    for interrupted in [false, true] {
        let mut b = Bench::new();
        b.lose();
        b.start(1, 0);
        let flags = if interrupted { NLM_F_DUMP_INTR } else { 0 };
        b.feed(&reply(1, flags), 1);
        if !interrupted {
            b.lose();
            assert!(!b.t.due(1), "one dump at a time");
        }
        assert_eq!(b.feed(&done(1), 2), Some(DumpEnd::Redo));
        assert_eq!(b.f.aborted, 1);
        assert!(b.t.due(2));
        assert_eq!(b.c.dump_restarts.get(), 1);
    }
}

#[test]
fn a_silent_dump_is_given_up_at_its_deadline_and_progress_moves_it() {
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    b.feed(&reply(1, 0), 2 * S);
    b.timer(DEADLINE_NS);
    assert!(b.t.running(), "a reply moved the deadline");
    b.timer(2 * S + DEADLINE_NS);
    assert!(!b.t.running() && b.t.wanted());
    assert_eq!(b.f.aborted, 1);
    // A late DONE of the given-up dump concludes nothing.
    assert_eq!(b.feed(&done(1), 3 * S + DEADLINE_NS), None);
    assert_eq!(b.f.completed, 0);
}

#[test]
fn other_refusals_back_off_doubling_up_to_a_cap() {
    let mut b = Bench::new();
    b.lose();
    let mut now = 0;
    let mut gaps = Vec::new();
    for seq in 1..=10 {
        b.start(seq, now);
        assert_eq!(b.feed(&refused(seq, libc::EPERM), now), Some(DumpEnd::Redo));
        let next = b.t.next_timer().unwrap();
        gaps.push(next - now);
        now = next;
    }
    assert_eq!(gaps[0], BACKOFF_FIRST_NS);
    assert_eq!(gaps[1], 2 * BACKOFF_FIRST_NS);
    assert_eq!(*gaps.last().unwrap(), BACKOFF_MAX_NS);
    assert_eq!(b.c.dump_refused.get(), 10);
    // A complete dump resets the backoff.
    b.start(11, now);
    b.feed(&done(11), now);
    b.lose();
    b.start(12, now);
    b.feed(&refused(12, libc::EPERM), now);
    assert_eq!(b.t.next_timer(), Some(now + BACKOFF_FIRST_NS));
}

#[test]
fn replies_of_another_socket_are_events() {
    let mut b = Bench::new();
    b.lose();
    b.start(1, 0);
    let theirs = msg(NLMSG_DONE, 0x2, 1, PID + 1, &0i32.to_ne_bytes());
    assert_eq!(b.feed(&theirs, 1), None);
    assert!(b.t.running());
}
