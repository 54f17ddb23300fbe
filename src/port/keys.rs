//! The Redis names portsyncd uses, built once from `database_config.json`
//! (ids and separators differ between deployments).

use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::logger::LoggerKeys;
use crate::engine::sonic::pst::ProducerTable;
use crate::port::table::PortName;

/// SONiC's name of the port tables (STATE_DB, APPL_DB, CONFIG_DB `PORT`).
pub const PORT_TABLE: &str = "PORT_TABLE";
/// The daemon's name in CONFIG_DB `LOGGER` and STATE_DB `WARM_RESTART_TABLE`.
pub const DAEMON: &str = "portsyncd";

/// Every key prefix and database number portsyncd's sessions need.
#[derive(Debug, Clone)]
pub struct PortKeys {
    /// STATE_DB's number, as `SELECT` wants it.
    pub state_db: String,
    /// APPL_DB's number, as `SELECT` wants it.
    pub appl_db: String,
    /// `PORT_TABLE|` in STATE_DB.
    pub state_prefix: Vec<u8>,
    /// `PORT_TABLE:` in APPL_DB.
    pub appl_prefix: Vec<u8>,
    /// `__keyspace@0__:PORT_TABLE:`: the channel prefix of APPL_DB port events.
    pub keyspace_prefix: Vec<u8>,
    /// APPL_DB `PORT_TABLE` as a ProducerStateTable.
    pub producer: ProducerTable,
    /// CONFIG_DB `LOGGER|portsyncd`.
    pub logger: LoggerKeys,
}

impl PortKeys {
    pub fn new(dbs: &Databases) -> PortKeys {
        let appl_sep = dbs.appl.separator;
        PortKeys {
            state_db: dbs.state.id.to_string(),
            appl_db: dbs.appl.id.to_string(),
            state_prefix: [PORT_TABLE.as_bytes(), &[dbs.state.separator]].concat(),
            appl_prefix: [PORT_TABLE.as_bytes(), &[appl_sep]].concat(),
            keyspace_prefix: format!(
                "__keyspace@{}__:{PORT_TABLE}{}",
                dbs.appl.id, appl_sep as char
            )
            .into_bytes(),
            producer: ProducerTable::new(PORT_TABLE, dbs.appl.id, appl_sep),
            logger: LoggerKeys::new(dbs, DAEMON),
        }
    }
}

/// `<prefix><port name>` on the stack: a port's key built without
/// allocating (a prefix is a table name and its separator; a port name at
/// most [`IFNAME_MAX`](crate::port::table::IFNAME_MAX) bytes).
pub struct PortKey {
    buf: [u8; 64],
    len: usize,
}

impl PortKey {
    pub fn new(prefix: &[u8], name: &PortName) -> PortKey {
        let mut buf = [0u8; 64];
        let len = prefix.len() + name.as_bytes().len();
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()..len].copy_from_slice(name.as_bytes());
        PortKey { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
