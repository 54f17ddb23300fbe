//! The receive ring: one anonymous mapping, populated and locked in memory, in
//! which datagrams are received and parsed where they land.
//!
//! Each datagram is read into one contiguous region sized by the peeked
//! length, so a message is never cut. When the tail of the ring is too short
//! the ring wraps; a datagram larger than the whole ring goes to a heap
//! overflow buffer and is counted (`oversize`).

use std::io;

use memmap2::{MmapMut, MmapOptions};

/// Smallest ring accepted. Below a typical link message (~1.5 KB) every
/// datagram goes through the overflow buffer: correct, only slower; the
/// tests use it to force that path.
pub const MIN_RING_BYTES: usize = 256;

/// What happened to the memory lock of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingLock {
    /// `mlock` succeeded.
    Locked,
    /// `mlock` was refused with this errno (typically `EPERM` or `ENOMEM`
    /// without `CAP_IPC_LOCK` or with a low `RLIMIT_MEMLOCK`).
    Refused(i32),
}

/// The mlocked receive ring.
pub struct RecvRing {
    map: MmapMut,
    head: usize,
    lock: RingLock,
    overflow: Vec<u8>,
}

impl RecvRing {
    /// Map `bytes` (at least [`MIN_RING_BYTES`]), pre-fault it and try to lock it.
    pub fn new(bytes: usize) -> io::Result<RecvRing> {
        let len = bytes.max(MIN_RING_BYTES);
        let map = MmapOptions::new().len(len).populate().map_anon()?;
        let lock = match map.lock() {
            Ok(()) => RingLock::Locked,
            Err(e) => RingLock::Refused(e.raw_os_error().unwrap_or(0)),
        };
        Ok(RecvRing {
            map,
            head: 0,
            lock,
            overflow: Vec::new(),
        })
    }

    /// Whether the ring is locked in memory.
    pub fn lock(&self) -> RingLock {
        self.lock
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// A contiguous region for a datagram of `len` bytes, and whether it
    /// did not fit the ring (the overflow buffer was used).
    ///
    /// The region stays valid until the next call; the caller receives into
    /// it and parses it in place before asking for the next one.
    pub fn slot(&mut self, len: usize) -> (&mut [u8], bool) {
        let cap = self.map.len();
        if len > cap {
            if self.overflow.len() < len {
                self.overflow.resize(len, 0);
            }
            return (&mut self.overflow[..len], true);
        }
        if cap - self.head < len {
            self.head = 0;
        }
        let start = self.head;
        // Keep the next datagram 8-byte aligned; parsing does not need it,
        // but it keeps headers off cache-line splits.
        self.head = (start + len + 7) & !7;
        if self.head > cap {
            self.head = cap;
        }
        (&mut self.map[start..start + len], false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_contiguous_and_wrap() {
        let mut ring = RecvRing::new(4096).unwrap();
        let (a, over) = ring.slot(1500);
        assert!(!over);
        assert_eq!(a.len(), 1500);
        let a_ptr = a.as_ptr() as usize;
        let (b, _) = ring.slot(1500);
        let b_ptr = b.as_ptr() as usize;
        assert_eq!(b_ptr - a_ptr, 1504);
        // Only 4096 - 3008 = 1088 bytes left: the next 1500 wraps to the start.
        let (c, over) = ring.slot(1500);
        assert!(!over);
        assert_eq!(c.as_ptr() as usize, a_ptr);
    }

    #[test]
    fn datagram_larger_than_ring_uses_overflow() {
        let mut ring = RecvRing::new(4096).unwrap();
        let (big, over) = ring.slot(10_000);
        assert!(over);
        assert_eq!(big.len(), 10_000);
        let (exact, over) = ring.slot(4096);
        assert!(!over);
        assert_eq!(exact.len(), 4096);
    }
}
