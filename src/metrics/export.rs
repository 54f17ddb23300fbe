//! The metrics thread: turns samples into histograms and exports them.
//! (Placeholder until the metrics issue: it only drains the channel.)

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{Counters, Sample};
use crate::config::MetricsConfig;

/// The running metrics thread.
pub struct MetricsThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl MetricsThread {
    /// Start the thread.
    pub fn spawn(
        _cfg: &MetricsConfig,
        _counters: Arc<Counters>,
        rx: Receiver<Sample>,
    ) -> io::Result<MetricsThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("portsyncd-metrics".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let _ = rx.recv_timeout(Duration::from_millis(100));
                    while rx.try_recv().is_ok() {}
                }
            })?;
        Ok(MetricsThread {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop and join it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
