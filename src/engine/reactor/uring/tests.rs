use super::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

fn reactor() -> Option<UringReactor> {
    match UringReactor::new() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("io_uring refused by this kernel ({e}): skipped");
            None
        }
    }
}

fn wait_for(r: &mut UringReactor, token: Token) -> Readiness {
    for _ in 0..10 {
        let mut out = Vec::new();
        r.wait(Some(Duration::from_secs(1)), &mut out).unwrap();
        if let Some(ev) = out.into_iter().find(|e| e.token == token) {
            return ev;
        }
    }
    panic!("no event for token {token}");
}

#[test]
fn reports_readable_and_writable_edges_and_ignores_stale_tokens() {
    let Some(mut r) = reactor() else { return };
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    r.register(a.as_raw_fd(), 7).unwrap();
    // A fresh socket is writable.
    assert!(wait_for(&mut r, 7).writable);
    b.write_all(b"x").unwrap();
    let ev = wait_for(&mut r, 7);
    assert!(ev.readable);
    // Nothing new: a short wait times out with no event.
    let mut out = Vec::new();
    r.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    // Re-register the token on another fd: only the new fd reports.
    let (c, mut d) = UnixStream::pair().unwrap();
    r.deregister(a.as_raw_fd()).unwrap();
    r.register(c.as_raw_fd(), 7).unwrap();
    b.write_all(b"y").unwrap();
    d.write_all(b"z").unwrap();
    let ev = wait_for(&mut r, 7);
    assert!(ev.readable || ev.writable);
    drop(d);
    let ev = wait_for(&mut r, 7);
    assert!(ev.readable, "hang-up reads as readable: {ev:?}");
}

/// Read what stream `fd` has, waiting for readiness on `token`.
fn recv_all(r: &mut UringReactor, fd: RawFd, token: Token, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    for _ in 0..50 {
        loop {
            match r.recv(fd, &mut buf).unwrap() {
                Some(0) => return got,
                Some(n) => got.extend_from_slice(&buf[..n]),
                None => break,
            }
        }
        if got.len() >= want {
            return got;
        }
        wait_for(r, token);
    }
    got
}

#[test]
fn a_stream_sends_and_receives_through_the_ring_and_sees_the_end() {
    let Some(mut r) = reactor() else { return };
    if !r.completions() {
        eprintln!("no completion I/O on this kernel: skipped");
        return;
    }
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let fd = a.as_raw_fd();
    r.register(fd, 5).unwrap();
    r.start_stream(fd, 5).unwrap();
    assert!(r.is_stream(fd));
    // One send at a time: the second is refused until the first completes,
    // which reports the stream writable.
    assert_eq!(r.send(fd, b"hello ").unwrap(), 6);
    assert_eq!(r.send(fd, b"world").unwrap(), 0);
    assert!(wait_for(&mut r, 5).writable);
    assert_eq!(r.send(fd, b"world").unwrap(), 5);
    let mut out = Vec::new();
    r.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
    let mut got = [0u8; 11];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello world");
    // Bytes from the peer come back in pieces no larger than asked.
    let long: Vec<u8> = (0..100u8).collect();
    b.write_all(&long).unwrap();
    assert_eq!(recv_all(&mut r, fd, 5, long.len()), long);
    // Nothing more: not the end yet.
    assert_eq!(r.recv(fd, &mut [0; 4]).unwrap(), None);
    drop(b);
    wait_for(&mut r, 5);
    assert_eq!(r.recv(fd, &mut [0; 4]).unwrap(), Some(0));
    r.deregister(fd).unwrap();
    assert!(!r.is_stream(fd));
}

#[test]
fn more_replies_than_buffers_all_arrive() {
    let Some(mut r) = reactor() else { return };
    if !r.completions() {
        return;
    }
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let fd = a.as_raw_fd();
    r.register(fd, 9).unwrap();
    r.start_stream(fd, 9).unwrap();
    // Each piece is received before the next is written, so each takes a
    // buffer of its own; none is read, so the ring runs dry.
    let pieces = usize::from(STREAM_BUFFERS) * 2;
    let mut out = Vec::new();
    for i in 0..pieces {
        b.write_all(&[i as u8; 100]).unwrap();
        r.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    }
    assert!(
        r.stream_buffers.as_ref().unwrap().bufs.empty(),
        "the ring ran dry"
    );
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..50 {
        while let Some(n) = r.recv(fd, &mut buf).unwrap() {
            assert!(n > 0, "end of stream before everything arrived");
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == pieces * 100 {
            break;
        }
        r.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    }
    assert_eq!(got.len(), pieces * 100);
    for (i, chunk) in got.chunks(100).enumerate() {
        assert!(
            chunk.iter().all(|&c| c == i as u8),
            "piece {i} out of order"
        );
    }
}

/// Datagrams received through the ring, after a wait.
fn datagrams(r: &mut UringReactor, memory: &[u8]) -> (Vec<Vec<u8>>, Vec<u16>, usize) {
    let mut out = Vec::new();
    r.wait(Some(Duration::from_millis(100)), &mut out).unwrap();
    let mut recvs = Vec::new();
    r.take_datagrams(&mut recvs);
    let (mut bytes, mut bids, mut cut) = (Vec::new(), Vec::new(), 0);
    for recv in recvs {
        match recv {
            RingRecv::Datagram {
                bid,
                at,
                len,
                truncated,
            } => {
                bids.push(bid);
                if truncated {
                    cut += 1;
                } else {
                    bytes.push(memory[at..at + len].to_vec());
                }
            }
            RingRecv::Overrun => panic!("a unix socket does not overrun"),
        }
    }
    (bytes, bids, cut)
}

#[test]
fn datagrams_land_in_the_callers_memory_and_a_dry_ring_loses_nothing() {
    let Some(mut r) = reactor() else { return };
    if !r.completions() {
        return;
    }
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut memory = vec![0u8; 4 * NETLINK_BUFFER_BYTES];
    // SAFETY: `memory` outlives `r` (declared before it is dropped below)
    // and is only read through the offsets the reactor reports.
    let on = unsafe { r.receive_netlink(a.as_raw_fd(), 0, &mut memory) }.unwrap();
    assert!(on && r.netlink_in_ring());
    // Ten datagrams, four buffers: the ring runs dry, which is no overrun.
    for i in 0..10u8 {
        b.send(&[i; 33]).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (bytes, mut bids, cut) = datagrams(&mut r, &memory);
        assert_eq!(cut, 0);
        assert!(bids.len() <= 4, "{} datagrams in 4 buffers", bids.len());
        seen.extend(bytes);
        r.give_back(&mut bids);
        if seen.len() == 10 {
            break;
        }
    }
    let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 33]).collect();
    assert_eq!(seen, want);
    // A datagram larger than a buffer is reported cut.
    b.send(&vec![1u8; NETLINK_BUFFER_BYTES]).unwrap();
    let (bytes, mut bids, cut) = datagrams(&mut r, &memory);
    assert_eq!((bytes.len(), cut), (0, 1));
    r.give_back(&mut bids);
    // Stopped: the fd reports readiness instead, and the datagram waits
    // in the socket.
    r.stop_netlink().unwrap();
    assert!(!r.netlink_in_ring());
    b.send(b"after").unwrap();
    assert!(wait_for(&mut r, 0).readable);
    let mut buf = [0u8; 16];
    assert_eq!(a.recv(&mut buf).unwrap(), 5);
    drop(r);
}

#[test]
fn a_send_larger_than_the_socket_buffer_completes_as_the_peer_reads() {
    let Some(mut r) = reactor() else { return };
    if !r.completions() {
        return;
    }
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let fd = a.as_raw_fd();
    r.register(fd, 4).unwrap();
    r.start_stream(fd, 4).unwrap();
    // Far more than a socket buffer: the kernel sends it in parts as the
    // peer reads, and a non-blocking socket must not turn that into an
    // error.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.send(fd, &big).unwrap(), big.len());
    let reader = std::thread::spawn(move || {
        let mut b = b;
        let mut got = vec![0u8; 3_000_000];
        b.read_exact(&mut got).unwrap();
        got
    });
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.streams.get(&4).is_some_and(|s| s.unsent() > 0) {
        assert!(std::time::Instant::now() < deadline, "send never finished");
        r.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.iter().all(|e| !e.error), "{out:?}");
    }
    assert_eq!(reader.join().unwrap(), big);
}
