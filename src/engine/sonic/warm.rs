//! SONiC's warm-start check, as every sync daemon makes it: STATE_DB
//! `WARM_RESTART_ENABLE_TABLE|system` or `|swss` `enable == true` means
//! warm, and `WARM_RESTART_TABLE|<daemon> restore_count` counts the
//! restarts (cold: 0; warm: one more; warm without a count falls back to
//! cold, with a warning).

use crate::engine::redis::client::{Client, ClientError};
use crate::log_warn;

/// The start decided: warm or cold, and the `restore_count` to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmStart {
    pub warm: bool,
    pub restore_count: u64,
}

/// STATE_DB keys of one daemon's warm-start state.
#[derive(Debug, Clone)]
pub struct WarmKeys {
    enable_system: String,
    enable_swss: String,
    /// `WARM_RESTART_TABLE|<daemon>`.
    pub table: String,
}

impl WarmKeys {
    /// The keys for `daemon` in a STATE_DB whose separator is `sep`.
    pub fn new(sep: u8, daemon: &str) -> WarmKeys {
        let sep = sep as char;
        WarmKeys {
            enable_system: format!("WARM_RESTART_ENABLE_TABLE{sep}system"),
            enable_swss: format!("WARM_RESTART_ENABLE_TABLE{sep}swss"),
            table: format!("WARM_RESTART_TABLE{sep}{daemon}"),
        }
    }

    /// Read STATE_DB (on a client already on it) and decide.
    pub fn decide(&self, c: &mut Client) -> Result<WarmStart, ClientError> {
        let enabled = |key: &str, c: &mut Client| -> Result<bool, ClientError> {
            let v = c.call_ok(&[b"HGET", key.as_bytes(), b"enable"])?;
            Ok(v.as_bytes() == Some(b"true"))
        };
        // Both are read, as SONiC does.
        let system = enabled(&self.enable_system, c)?;
        let swss = enabled(&self.enable_swss, c)?;
        if !(system || swss) {
            return Ok(WarmStart {
                warm: false,
                restore_count: 0,
            });
        }
        let count = c.call_ok(&[b"HGET", self.table.as_bytes(), b"restore_count"])?;
        Ok(
            match count.as_string().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) => WarmStart {
                    warm: true,
                    restore_count: n + 1,
                },
                None => {
                    log_warn!(
                        "warm start requested but {} has no restore_count: falling back to cold start",
                        self.table
                    );
                    WarmStart {
                        warm: false,
                        restore_count: 0,
                    }
                }
            },
        )
    }

    /// Write the decided `restore_count`.
    pub fn record(&self, c: &mut Client, start: WarmStart) -> Result<(), ClientError> {
        c.call_ok(&[
            b"HSET",
            self.table.as_bytes(),
            b"restore_count",
            start.restore_count.to_string().as_bytes(),
        ])?;
        Ok(())
    }
}
