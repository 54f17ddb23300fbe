//! The receive ring: one anonymous mapping, populated and locked in memory, in
//! which datagrams are received and parsed where they land.
//!
//! The reader takes contiguous regions from it: a batch of fixed-size slots,
//! or one region sized by a peeked length. When the tail of the ring is too
//! short the ring wraps. A datagram larger than the whole ring goes to a heap
//! overflow buffer.

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

    /// Take `len` contiguous bytes (at most the capacity); their offset.
    /// The region stays the caller's until the next call.
    pub fn take(&mut self, len: usize) -> usize {
        let cap = self.map.len();
        debug_assert!(len <= cap);
        if cap - self.head < len {
            self.head = 0;
        }
        let start = self.head;
        // Keep regions 8-byte aligned; parsing does not need it, but it
        // keeps headers off cache-line splits.
        self.head = ((start + len + 7) & !7).min(cap);
        start
    }

    /// The ring's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The ring's bytes, to receive into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The overflow buffer, at least `len` bytes (grown on demand).
    pub fn overflow_mut(&mut self, len: usize) -> &mut [u8] {
        if self.overflow.len() < len {
            self.overflow.resize(len, 0);
        }
        &mut self.overflow[..len]
    }

    /// The overflow buffer's first `len` bytes.
    pub fn overflow(&self, len: usize) -> &[u8] {
        &self.overflow[..len.min(self.overflow.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_contiguous_aligned_and_wrap() {
        let mut ring = RecvRing::new(4096).unwrap();
        assert_eq!(ring.take(1500), 0);
        assert_eq!(ring.take(1500), 1504);
        // Only 4096 - 3008 = 1088 bytes left: the next 1500 wraps.
        assert_eq!(ring.take(1500), 0);
        assert_eq!(ring.take(4096 - 1504), 1504);
        assert_eq!(ring.take(4096), 0);
    }

    #[test]
    fn overflow_grows_on_demand() {
        let mut ring = RecvRing::new(4096).unwrap();
        assert_eq!(ring.overflow_mut(10_000).len(), 10_000);
        assert_eq!(ring.overflow(10_000).len(), 10_000);
        assert_eq!(ring.overflow_mut(5).len(), 5);
    }
}
