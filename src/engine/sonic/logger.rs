//! SONiC's log switches: CONFIG_DB `LOGGER|<daemon>` `LOGLEVEL` (set by
//! `swssloglevel`) and `LOGOUTPUT` (`SYSLOG`, `STDOUT`, `STDERR`). Read at
//! start-up and registered when absent, as swss-common's `linkToDbNative`
//! does, then followed live through keyspace notifications when CONFIG_DB
//! shares an instance with the loop's connection.
//!
//! Who wins ([`LoggerFollow`], pure): the run's own settings (`[log]`
//! from flag, environment or file) hold from the start. A field absent at
//! start-up is registered with SONiC's default (`NOTICE`, `SYSLOG`), never
//! with the run's setting, so a `--set log.level=debug` run leaves `NOTICE`
//! behind, not `DEBUG` for every later start. Since every entry holds those
//! defaults unless someone changed them, a default found at start-up is no
//! choice and the run's setting stays; any other value found at start-up
//! wins once read (`swssloglevel -l INFO` outlives restarts, as in SONiC),
//! and every change made while the daemon runs is followed, whatever the
//! value (`swssloglevel -l NOTICE` quiets a `debug` run).

use crate::engine::runtime::log::{self, Level, Output};
use crate::engine::runtime::repeat::cut;
use crate::engine::sonic::dbconfig::Databases;
use crate::{log_error, log_warn};

/// swss-common's `linkToDbNative` default level.
pub const DEFAULT_LOGLEVEL: &[u8] = b"NOTICE";
/// swss-common's `linkToDb` default output.
pub const DEFAULT_LOGOUTPUT: &[u8] = b"SYSLOG";

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

/// The run's own log settings: `[log] level` and `output` (resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLog {
    pub level: Level,
    pub output: Output,
}

/// The fields and values start-up writes to an incomplete LOGGER entry.
pub type Registration = [(&'static [u8], Vec<u8>); 2];

/// One field of the LOGGER entry, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    value: Option<Vec<u8>>,
    /// Someone chose the value: changed while the daemon ran, or other
    /// than SONiC's default at start-up.
    chosen: bool,
}

impl Seen {
    /// The value, when it is someone's choice.
    fn chosen(&self) -> Option<&[u8]> {
        self.value.as_deref().filter(|_| self.chosen)
    }
}

/// What a read asks for the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelMove {
    /// To this level; `from_db`: CONFIG_DB's value (else the run's).
    To { level: Level, from_db: bool },
    /// CONFIG_DB holds something that is not a level: said, and the run's
    /// level applies.
    NotALevel { value: Vec<u8>, run: Level },
}

/// What a read asks for the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputMove {
    /// To this output; `from_db`: CONFIG_DB's value (else the run's).
    To { output: Output, from_db: bool },
    /// Not `SYSLOG`, `STDOUT` or `STDERR`: said, and syslog, as
    /// swss-common's `swssOutputNotify` does.
    Unknown { value: Vec<u8> },
}

/// The changes one read (or a reload) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    pub level: Option<LevelMove>,
    pub output: Option<OutputMove>,
}

/// One daemon's LOGGER entry followed: what was read last, what the run
/// itself says, and what follows from both. Pure: [`apply`] acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerFollow {
    run: RunLog,
    level: Seen,
    output: Seen,
}

impl LoggerFollow {
    pub fn new(run: RunLog) -> LoggerFollow {
        LoggerFollow {
            run,
            level: Seen::default(),
            output: Seen::default(),
        }
    }

    /// Start-up, with both fields as read: the fields to `HSET` when either
    /// is absent (both, the value read or SONiC's default, as swss-common
    /// writes them), and the moves. Only a value other than the default
    /// applies.
    pub fn register(
        &mut self,
        level: Option<&[u8]>,
        output: Option<&[u8]>,
    ) -> (Option<Registration>, Moves) {
        let seen = |value: Option<&[u8]>, default: &[u8]| Seen {
            chosen: value.is_some_and(|v| v != default),
            value: Some(value.unwrap_or(default).to_vec()),
        };
        self.level = seen(level, DEFAULT_LOGLEVEL);
        self.output = seen(output, DEFAULT_LOGOUTPUT);
        let write = (level.is_none() || output.is_none()).then(|| {
            [
                (
                    &b"LOGLEVEL"[..],
                    self.level.value.clone().unwrap_or_default(),
                ),
                (
                    &b"LOGOUTPUT"[..],
                    self.output.value.clone().unwrap_or_default(),
                ),
            ]
        });
        let moves = Moves {
            level: Some(self.level_move()),
            output: Some(self.output_move()),
        };
        (write, moves)
    }

    /// A later read of both fields (a keyspace notification, a reconnect):
    /// only a field whose value changed moves anything, as in
    /// swss-common's `settingThread`. A field gone gives the run's setting.
    pub fn on_read(&mut self, level: Option<&[u8]>, output: Option<&[u8]>) -> Moves {
        let mut moves = Moves::default();
        if self.level.value.as_deref() != level {
            self.level = Seen {
                value: level.map(<[u8]>::to_vec),
                chosen: level.is_some(),
            };
            moves.level = Some(self.level_move());
        }
        if self.output.value.as_deref() != output {
            self.output = Seen {
                value: output.map(<[u8]>::to_vec),
                chosen: output.is_some(),
            };
            moves.output = Some(self.output_move());
        }
        moves
    }

    /// SIGHUP: the run's new settings, in force where CONFIG_DB holds no
    /// choice.
    pub fn set_run(&mut self, run: RunLog) -> Moves {
        self.run = run;
        let level_chosen = self.level.chosen().and_then(level_value).is_some();
        Moves {
            level: (!level_chosen).then_some(LevelMove::To {
                level: run.level,
                from_db: false,
            }),
            output: self.output.chosen().is_none().then_some(OutputMove::To {
                output: run.output,
                from_db: false,
            }),
        }
    }

    fn level_move(&self) -> LevelMove {
        match self.level.chosen() {
            None => LevelMove::To {
                level: self.run.level,
                from_db: false,
            },
            Some(v) => match level_value(v) {
                Some(level) => LevelMove::To {
                    level,
                    from_db: true,
                },
                None => LevelMove::NotALevel {
                    value: v.to_vec(),
                    run: self.run.level,
                },
            },
        }
    }

    fn output_move(&self) -> OutputMove {
        match self.output.chosen() {
            None => OutputMove::To {
                output: self.run.output,
                from_db: false,
            },
            Some(v) => match Output::from_sonic(v) {
                Some(output) => OutputMove::To {
                    output,
                    from_db: true,
                },
                None => OutputMove::Unknown { value: v.to_vec() },
            },
        }
    }
}

fn level_value(v: &[u8]) -> Option<Level> {
    Level::parse(&String::from_utf8_lossy(v))
}

/// A value for a log line: quoted, cut.
fn quoted(v: &[u8]) -> String {
    cut(&format!("{:?}", String::from_utf8_lossy(v)), MAX_QUOTE).into_owned()
}

/// Carry out `moves`: change the level and the output, saying why.
/// `run_why` names where the run's settings came from (`configuration`,
/// `SIGHUP`).
pub fn apply(keys: &LoggerKeys, moves: Moves, run_why: &str) {
    let db_why = format!("CONFIG_DB {}", keys.name());
    match moves.level {
        Some(LevelMove::To { level, from_db }) => {
            log::change_level(level, if from_db { &db_why } else { run_why })
        }
        Some(LevelMove::NotALevel { value, run }) => {
            log_warn!(
                "{db_why} LOGLEVEL {} is not a level; ignored",
                quoted(&value)
            );
            log::change_level(run, run_why);
        }
        None => {}
    }
    match moves.output {
        Some(OutputMove::To { output, from_db }) => {
            log::change_output(output, if from_db { &db_why } else { run_why })
        }
        Some(OutputMove::Unknown { value }) => {
            log_error!(
                "{db_why} LOGOUTPUT {} is not SYSLOG, STDOUT or STDERR; syslog, as SONiC's daemons do",
                quoted(&value)
            );
            log::change_output(Output::Syslog, &db_why);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: RunLog = RunLog {
        level: Level::Debug,
        output: Output::Stderr,
    };

    fn to_level(level: Level, from_db: bool) -> Option<LevelMove> {
        Some(LevelMove::To { level, from_db })
    }

    fn to_output(output: Output, from_db: bool) -> Option<OutputMove> {
        Some(OutputMove::To { output, from_db })
    }

    /// The bug this fixes: `--set log.level=debug` was written to CONFIG_DB
    /// and ruled every later start.
    #[test]
    fn an_absent_entry_is_registered_with_sonics_defaults_not_the_run() {
        let mut f = LoggerFollow::new(RUN);
        let (write, moves) = f.register(None, None);
        assert_eq!(
            write,
            Some([
                (&b"LOGLEVEL"[..], b"NOTICE".to_vec()),
                (&b"LOGOUTPUT"[..], b"SYSLOG".to_vec())
            ])
        );
        // SONiC's defaults are no choice: the run's own settings hold.
        assert_eq!(moves.level, to_level(Level::Debug, false));
        assert_eq!(moves.output, to_output(Output::Stderr, false));
        // Our own HSET comes back as a notification: nothing changed.
        assert_eq!(
            f.on_read(Some(b"NOTICE"), Some(b"SYSLOG")),
            Moves::default()
        );
        // An operator's change is followed.
        let moves = f.on_read(Some(b"INFO"), Some(b"SYSLOG"));
        assert_eq!(moves.level, to_level(Level::Info, true));
        assert_eq!(moves.output, None);
        // Even back to the default: someone did it while we ran.
        let moves = f.on_read(Some(b"NOTICE"), Some(b"SYSLOG"));
        assert_eq!(moves.level, to_level(Level::Notice, true));
    }

    /// The next start finds what the last one registered: still no
    /// choice, so `--set log.level=debug` works on every run, not the
    /// first only.
    #[test]
    fn defaults_found_at_start_up_leave_the_runs_settings() {
        let mut f = LoggerFollow::new(RUN);
        let (write, moves) = f.register(Some(b"NOTICE"), Some(b"SYSLOG"));
        assert_eq!(write, None);
        assert_eq!(moves.level, to_level(Level::Debug, false));
        assert_eq!(moves.output, to_output(Output::Stderr, false));
    }

    /// swss-common writes both fields when either is missing, keeping the
    /// one that is there.
    #[test]
    fn one_absent_field_writes_both_keeping_the_other() {
        let mut f = LoggerFollow::new(RUN);
        let (write, moves) = f.register(Some(b"ERROR"), None);
        assert_eq!(
            write,
            Some([
                (&b"LOGLEVEL"[..], b"ERROR".to_vec()),
                (&b"LOGOUTPUT"[..], b"SYSLOG".to_vec())
            ])
        );
        assert_eq!(moves.level, to_level(Level::Error, true));
        assert_eq!(moves.output, to_output(Output::Stderr, false));
        let (write, moves) = f.register(Some(b"INFO"), Some(b"STDERR"));
        assert_eq!(write, None);
        assert_eq!(moves.level, to_level(Level::Info, true));
        assert_eq!(moves.output, to_output(Output::Stderr, true));
    }

    #[test]
    fn what_config_db_holds_wins_once_read_and_changes_are_followed() {
        let mut f = LoggerFollow::new(RUN);
        let (_, moves) = f.register(Some(b"WARN"), Some(b"STDOUT"));
        assert_eq!(moves.level, to_level(Level::Warn, true));
        assert_eq!(moves.output, to_output(Output::Stdout, true));
        // Read again unchanged (a reconnect): nothing.
        assert_eq!(f.on_read(Some(b"WARN"), Some(b"STDOUT")), Moves::default());
        let moves = f.on_read(Some(b"WARN"), Some(b"SYSLOG"));
        assert_eq!(moves.output, to_output(Output::Syslog, true));
        // A field deleted: the run's setting again.
        let moves = f.on_read(None, Some(b"SYSLOG"));
        assert_eq!(moves.level, to_level(Level::Debug, false));
        assert_eq!(moves.output, None);
    }

    /// swss-common's `swssOutputNotify`: an unknown value means SYSLOG.
    #[test]
    fn an_unknown_logoutput_is_syslog_and_a_junk_level_the_runs() {
        let mut f = LoggerFollow::new(RUN);
        let (_, moves) = f.register(Some(b"LOUD"), Some(b"stderr"));
        assert_eq!(
            moves.level,
            Some(LevelMove::NotALevel {
                value: b"LOUD".to_vec(),
                run: Level::Debug
            })
        );
        assert_eq!(
            moves.output,
            Some(OutputMove::Unknown {
                value: b"stderr".to_vec()
            })
        );
    }

    /// SIGHUP's settings apply where CONFIG_DB holds no choice.
    #[test]
    fn a_reload_applies_where_config_db_chose_nothing() {
        let mut f = LoggerFollow::new(RUN);
        f.register(None, Some(b"STDERR"));
        let new = RunLog {
            level: Level::Info,
            output: Output::Syslog,
        };
        let moves = f.set_run(new);
        assert_eq!(moves.level, to_level(Level::Info, false));
        assert_eq!(moves.output, None);
        // A junk level is no choice either.
        f.on_read(Some(b"LOUD"), Some(b"STDERR"));
        assert_eq!(f.set_run(RUN).level, to_level(Level::Debug, false));
    }
}
