//! Oper status changes per port, for `portsyncd_port_flaps_total{port}`.
//!
//! Process-wide (like [`super::fds`]) so the port table can count with one
//! call and no wiring: a fixed array of counters indexed by the table's
//! `PortId`, bounded by its `MAX_PORTS`, beside each port's name, set once
//! when the table first sees the port's netdev. The loop never allocates
//! or locks here: a name is copied into its preset slot, a count is a
//! relaxed load and store. The metrics thread reads both at a scrape.
//! The arrays are zeroed statics: pages a port never touches stay unmapped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::port::table::MAX_PORTS;

/// Longest name kept (an interface name is at most 15 bytes).
const NAME_MAX: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Name {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl Name {
    fn new(name: &[u8]) -> Name {
        let len = name.len().min(NAME_MAX);
        let mut bytes = [0u8; NAME_MAX];
        bytes[..len].copy_from_slice(&name[..len]);
        Name {
            len: len as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Flap counters for ports `0..N`.
pub struct PortFlaps<const N: usize> {
    counts: [AtomicU64; N],
    names: [OnceLock<Name>; N],
    /// One past the highest port named so far.
    named: AtomicUsize,
}

/// The process's counters, written by the port table, read by the
/// metrics thread.
pub static PORT_FLAPS: PortFlaps<MAX_PORTS> = PortFlaps::new();

/// What the metrics thread needs of a [`PortFlaps`], whatever its size.
pub trait FlapCounts {
    /// Each named port's name and flap count, in `PortId` order.
    fn each(&self, f: &mut dyn FnMut(&[u8], u64));
}

impl<const N: usize> PortFlaps<N> {
    pub const fn new() -> PortFlaps<N> {
        PortFlaps {
            counts: [const { AtomicU64::new(0) }; N],
            names: [const { OnceLock::new() }; N],
            named: AtomicUsize::new(0),
        }
    }

    /// Port `id`, named `name`, now has a netdev whose oper status is
    /// `now`; it was `was` (`None`: no netdev until now, not a flap).
    /// Only the loop thread calls it.
    #[inline]
    pub fn saw(&self, id: u32, name: &[u8], was: Option<bool>, now: bool) {
        let i = id as usize;
        let (Some(count), Some(slot)) = (self.counts.get(i), self.names.get(i)) else {
            return;
        };
        if slot.get().is_none() {
            let _ = slot.set(Name::new(name));
            self.named.fetch_max(i + 1, Ordering::Release);
        }
        if was.is_some_and(|w| w != now) {
            // One writer: a relaxed load and store is exact.
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

impl<const N: usize> PortFlaps<N> {
    /// The name of port `id`, once the port table has seen its netdev.
    pub fn name(&self, id: u32) -> Option<&[u8]> {
        self.names.get(id as usize)?.get().map(Name::as_bytes)
    }
}

impl<const N: usize> Default for PortFlaps<N> {
    fn default() -> Self {
        PortFlaps::new()
    }
}

impl<const N: usize> FlapCounts for PortFlaps<N> {
    fn each(&self, f: &mut dyn FnMut(&[u8], u64)) {
        let named = self.named.load(Ordering::Acquire).min(N);
        for (slot, count) in self.names[..named].iter().zip(&self.counts) {
            if let Some(name) = slot.get() {
                f(name.as_bytes(), count.load(Ordering::Relaxed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts<const N: usize>(f: &PortFlaps<N>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        f.each(&mut |n, c| out.push((String::from_utf8_lossy(n).into_owned(), c)));
        out
    }

    #[test]
    fn oper_changes_are_counted_per_port_appearing_is_not() {
        let f = PortFlaps::<4>::new();
        assert!(counts(&f).is_empty());
        f.saw(2, b"Ethernet8", None, false);
        f.saw(0, b"Ethernet0", None, true);
        f.saw(0, b"Ethernet0", Some(true), true);
        f.saw(0, b"Ethernet0", Some(true), false);
        f.saw(0, b"Ethernet0", Some(false), true);
        // Gone and back: a new netdev, not a flap.
        f.saw(0, b"Ethernet0", None, false);
        assert_eq!(
            counts(&f),
            [("Ethernet0".into(), 2), ("Ethernet8".into(), 0)]
        );
    }

    #[test]
    fn ids_past_the_bound_are_ignored() {
        let f = PortFlaps::<2>::new();
        f.saw(2, b"Ethernet8", Some(false), true);
        f.saw(u32::MAX, b"Ethernet9", Some(false), true);
        assert!(counts(&f).is_empty());
    }
}
