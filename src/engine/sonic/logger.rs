//! SONiC's log level switch: CONFIG_DB `LOGGER|<daemon>` `LOGLEVEL`, set
//! by `swssloglevel`. Read at start-up (and registered when absent, as
//! swss-common does), then followed live through keyspace notifications
//! when CONFIG_DB shares an instance with the loop's connection.

use crate::engine::redis::client::{Client, ClientError};
use crate::engine::runtime::log::{self, Level};
use crate::engine::runtime::repeat::cut;
use crate::engine::sonic::dbconfig::Databases;
use crate::log_warn;

/// Longest quoted value in a log line, in bytes; CONFIG_DB can hold any
/// amount of junk.
const MAX_QUOTE: usize = 200;

/// The names one daemon's LOGGER entry goes by, built once.
#[derive(Debug, Clone)]
pub struct LoggerKeys {
    /// CONFIG_DB's number.
    pub config_db: u32,
    /// `LOGGER|<daemon>`.
    pub key: Vec<u8>,
    /// `__keyspace@<config_db>__:LOGGER|<daemon>`.
    pub channel: Vec<u8>,
    /// CONFIG_DB lives on the same instance as APPL_DB, so the level can be
    /// followed (subscribed to and read) on the APPL_DB connections.
    pub live: bool,
}

impl LoggerKeys {
    pub fn new(dbs: &Databases, daemon: &str) -> LoggerKeys {
        let key = format!("LOGGER{}{daemon}", dbs.config.separator as char).into_bytes();
        let channel = [
            format!("__keyspace@{}__:", dbs.config.id).as_bytes(),
            &key[..],
        ]
        .concat();
        LoggerKeys {
            config_db: dbs.config.id,
            key,
            channel,
            live: dbs.config.instance == dbs.appl.instance,
        }
    }

    /// The key as text, for logs.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// Apply the `LOGLEVEL` CONFIG_DB holds (`None`: the field is absent, so
/// the `configured` level). A value that is not a level is ignored with a
/// warning naming it.
pub fn follow_level(keys: &LoggerKeys, value: Option<&[u8]>, configured: Level) {
    let level = match value {
        None => configured,
        Some(v) => match Level::parse(&String::from_utf8_lossy(v)) {
            Some(l) => l,
            None => {
                log_warn!(
                    "CONFIG_DB {} LOGLEVEL {} is not a level; ignored",
                    keys.name(),
                    cut(&format!("{:?}", String::from_utf8_lossy(v)), MAX_QUOTE)
                );
                return;
            }
        },
    };
    log::change_level(level, &format!("CONFIG_DB {}", keys.name()));
}

/// Read `LOGGER|<daemon>` at start-up and register it the way swss-common
/// does (`HSET` of `LOGLEVEL NOTICE` and `LOGOUTPUT SYSLOG` for what is
/// absent); a `LOGLEVEL` CONFIG_DB already held is applied. A level given
/// by the configuration, the environment or a flag stays the run's and is
/// never written.
pub fn register(c: &mut Client, keys: &LoggerKeys) -> Result<(), ClientError> {
    let level = c.call_ok(&[b"HGET", &keys.key, b"LOGLEVEL"])?;
    let output = c.call_ok(&[b"HGET", &keys.key, b"LOGOUTPUT"])?;
    let (level, output) = (level.as_bytes(), output.as_bytes());
    if level.is_none() || output.is_none() {
        c.call_ok(&[
            b"HSET",
            &keys.key,
            b"LOGLEVEL",
            level.unwrap_or(b"NOTICE"),
            b"LOGOUTPUT",
            output.unwrap_or(b"SYSLOG"),
        ])?;
    }
    if level.is_some() {
        follow_level(keys, level, log::level());
    }
    Ok(())
}
