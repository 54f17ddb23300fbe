//! The Redis names neighsyncd uses, built once from `database_config.json`.

use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::logger::LoggerKeys;
use crate::engine::sonic::pst::ProducerTable;
use crate::engine::sonic::warm::WarmKeys;
use crate::neigh::context::{LINK_LOCAL_TABLES, PEER_SWITCH};

/// The table neighsyncd writes.
pub const NEIGH_TABLE: &str = "NEIGH_TABLE";
/// The daemon's name in CONFIG_DB `LOGGER` and STATE_DB `WARM_RESTART_TABLE`.
pub const DAEMON: &str = "neighsyncd";

/// Every key, prefix and database number neighsyncd's sessions need.
#[derive(Debug, Clone)]
pub struct NeighKeys {
    /// APPL_DB's, CONFIG_DB's and STATE_DB's numbers, as `SELECT` wants them.
    pub appl_db: String,
    pub config_db: String,
    pub state_db: String,
    /// APPL_DB `NEIGH_TABLE` as a ProducerStateTable.
    pub producer: ProducerTable,
    /// `NEIGH_TABLE:` in APPL_DB: the table orchagent moves entries to.
    pub appl_prefix: Vec<u8>,
    /// CONFIG_DB `<table><sep>` of `PEER_SWITCH` and the link-local tables.
    pub peer_switch_prefix: Vec<u8>,
    pub link_local_prefixes: Vec<(&'static str, Vec<u8>)>,
    /// `__keyspace@<config>__:`.
    pub config_keyspace: Vec<u8>,
    /// CONFIG_DB `LOGGER|neighsyncd`.
    pub logger: LoggerKeys,
    /// STATE_DB `WARM_RESTART_TABLE|neighsyncd` and the enable flags.
    pub warm: WarmKeys,
    /// STATE_DB `NEIGH_RESTORE_TABLE|Flags`.
    pub restore_flags: Vec<u8>,
    /// CONFIG_DB `WARM_RESTART|swss`.
    pub warm_timer_key: Vec<u8>,
    /// STATE_DB and APPL_DB share an instance: the state can be written on
    /// the APPL_DB connection.
    pub state_with_appl: bool,
}

impl NeighKeys {
    pub fn new(dbs: &Databases) -> NeighKeys {
        let csep = dbs.config.separator;
        let table = |name: &str| [name.as_bytes(), &[csep]].concat();
        NeighKeys {
            appl_db: dbs.appl.id.to_string(),
            config_db: dbs.config.id.to_string(),
            state_db: dbs.state.id.to_string(),
            producer: ProducerTable::new(NEIGH_TABLE, dbs.appl.id, dbs.appl.separator),
            appl_prefix: [NEIGH_TABLE.as_bytes(), &[dbs.appl.separator]].concat(),
            peer_switch_prefix: table(PEER_SWITCH),
            link_local_prefixes: LINK_LOCAL_TABLES
                .iter()
                .map(|(_, t)| (*t, table(t)))
                .collect(),
            config_keyspace: format!("__keyspace@{}__:", dbs.config.id).into_bytes(),
            logger: LoggerKeys::new(dbs, DAEMON),
            warm: WarmKeys::new(dbs.state.separator, DAEMON),
            restore_flags: format!("NEIGH_RESTORE_TABLE{}Flags", dbs.state.separator as char)
                .into_bytes(),
            warm_timer_key: format!("WARM_RESTART{}swss", csep as char).into_bytes(),
            state_with_appl: dbs.state.instance == dbs.appl.instance,
        }
    }

    /// The CONFIG_DB key patterns whose changes alter the rules.
    pub fn config_patterns(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.peer_switch_prefix)
            .chain(self.link_local_prefixes.iter().map(|(_, p)| p))
            .map(|p| [&self.config_keyspace[..], p, b"*"].concat())
            .collect()
    }
}
