//! The Redis names portsyncd uses, built once from `database_config.json`
//! (ids and separators differ between deployments).

use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::logger::LoggerKeys;
use crate::engine::sonic::pst::ProducerTable;

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
