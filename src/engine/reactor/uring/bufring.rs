//! A provided-buffer ring: memory the kernel picks receive buffers from.
//!
//! `count` buffers of `len` bytes lie back to back from `base`. The ring of
//! entries naming them is a page-aligned mapping shared with the kernel: we
//! write entries at our tail and publish the tail; the kernel takes them at
//! its head, one per completed receive, and says which in the completion
//! (`bid`). A buffer handed to us stays ours until [`BufRing::give_back`].
//!
//! `held` counts the buffers completions gave us and we have not given
//! back. With `DEFER_TASKRUN` the kernel receives only inside our
//! `io_uring_enter`, and we give buffers back only outside it, so when a
//! multishot receive ends with `ENOBUFS`, `held == count` says exactly that
//! the ring was empty (not a socket overrun): DESIGN.md's "track free ring
//! entries to tell them apart".

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use memmap2::{MmapMut, MmapOptions};

/// One registered provided-buffer ring.
pub struct BufRing {
    /// The entries, shared with the kernel.
    entries: MmapMut,
    group: u16,
    count: u16,
    /// Our tail: the next entry to write.
    tail: u16,
    base: *mut u8,
    len: usize,
    held: usize,
}

impl BufRing {
    /// Register `count` (a power of two, at most 32768) buffers of `len`
    /// bytes each, from `base`, as buffer group `group`, all given to the
    /// kernel.
    ///
    /// # Safety
    ///
    /// `base .. base + count * len` must stay valid, writable and otherwise
    /// unused while the ring is registered, that is until the io_uring
    /// that `submitter` belongs to is closed and no receive using `group`
    /// is in flight.
    pub unsafe fn register(
        submitter: &Submitter<'_>,
        group: u16,
        base: *mut u8,
        len: usize,
        count: u16,
    ) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || len == 0 || len > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a buffer ring of {count} buffers of {len} bytes"),
            ));
        }
        let bytes = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // Anonymous mappings are page-aligned, as the kernel requires.
        let mut entries = MmapOptions::new().len(bytes).populate().map_anon()?;
        let ring_addr = entries.as_mut_ptr() as u64;
        // SAFETY: `entries` is a page-aligned mapping of `count` entries,
        // owned by the BufRing, which unregisters it in Drop before the
        // mapping goes; the buffers are the caller's promise.
        unsafe { submitter.register_buf_ring_with_flags(ring_addr, count, group, 0)? };
        let mut ring = BufRing {
            entries,
            group,
            count,
            tail: 0,
            base,
            len,
            held: 0,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The buffer group id, for receive requests.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Buffers in the ring.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes per buffer.
    pub fn buffer_len(&self) -> usize {
        self.len
    }

    /// A completion handed us buffer `bid`.
    pub fn taken(&mut self) {
        self.held += 1;
    }

    /// Every buffer is ours: the kernel had none to receive into.
    pub fn empty(&self) -> bool {
        self.held >= usize::from(self.count)
    }

    /// The bytes of buffer `bid` (`len` of them at most).
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.count);
        let len = len.min(self.len);
        // SAFETY: `bid < count`, so the buffer lies inside the memory the
        // caller of `register` vouched for; the kernel wrote `len` bytes of
        // it before handing it to us and does not touch it until it is
        // given back.
        unsafe { std::slice::from_raw_parts(self.base.add(bid * self.len), len) }
    }

    /// Give buffer `bid` back to the kernel (visible at the next
    /// [`publish`](Self::publish)).
    pub fn give_back(&mut self, bid: u16) {
        self.held = self.held.saturating_sub(1);
        self.push(bid);
    }

    fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        let at = usize::from(self.tail & mask);
        let entries = self.entries.as_mut_ptr().cast::<BufRingEntry>();
        // SAFETY: `at < count`: the entry lies in our mapping. The kernel
        // reads only entries between its head and the published tail, and
        // this one is past the published tail.
        let entry = unsafe { &mut *entries.add(at) };
        let bid_usize = usize::from(bid % self.count);
        // SAFETY: as in `bytes`.
        entry.set_addr(unsafe { self.base.add(bid_usize * self.len) } as u64);
        entry.set_len(self.len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see every buffer given back so far.
    pub fn publish(&self) {
        let entries = self.entries.as_ptr().cast::<BufRingEntry>();
        // SAFETY: the tail field overlays the first entry's reserved
        // field, inside our mapping; the kernel reads it with acquire
        // semantics, so a release store orders the entries before it.
        let tail = unsafe { &*BufRingEntry::tail(entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregister (the caller has ended every receive using the group).
    pub fn unregister(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.group)
    }
}
