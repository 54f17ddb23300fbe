//! The command line every daemon shares (its `--help` text is its own),
//! and the `main` that reads it and the configuration before handing over
//! to the daemon.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use crate::engine::runtime::config::{
    self, Config, ConfigError, ConfigFile, ConfigSource, DaemonConfig, Override,
};
use crate::engine::runtime::launch::EXIT_USAGE;
use crate::engine::runtime::log;
use crate::engine::runtime::netns;
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::dbglobal::GlobalConfig;
use crate::{log_error, log_notice};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon (or only print its configuration).
    Run {
        config: ConfigFile,
        sets: Vec<Override>,
        print_config: bool,
    },
    /// Compare Redis with the kernel, once, and exit.
    Check {
        config: ConfigFile,
        sets: Vec<Override>,
        /// One JSON document instead of lines.
        json: bool,
    },
    /// Compare live sysctl values with the shipped profile.
    SysctlCheck {
        file: Option<PathBuf>,
    },
    Help,
    Version,
}

/// What a daemon's binary hands [`main`].
pub struct Daemon {
    pub config: &'static DaemonConfig,
    pub help: &'static str,
    /// Run the daemon; returns the exit status.
    pub run: fn(Config, Databases, ConfigSource) -> u8,
    /// `check`: one look, printed; returns the exit status.
    pub check: fn(&Config, &Databases, bool) -> u8,
    /// `check` could not even start (configuration): print why.
    pub cannot_check: fn(bool, &dyn Display) -> u8,
}

/// A daemon's `main`: the command line, the configuration, then the daemon.
pub fn main(d: &Daemon) -> u8 {
    config::set_daemon(d.config);
    let name = d.config.name;
    let cmd = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return EXIT_USAGE;
        }
    };
    let (file, sets, print_config) = match cmd {
        Command::Help => {
            print!("{}", d.help);
            return 0;
        }
        Command::Version => {
            println!("{name} {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Command::SysctlCheck { file } => {
            return crate::engine::runtime::sysctl_check::run(file.as_deref());
        }
        Command::Check { config, sets, json } => return check(d, &config, sets, json),
        Command::Run {
            config,
            sets,
            print_config,
        } => (config, sets, print_config),
    };
    let (cfg, overrides) = match load_config(&file, sets) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{name}: {e}");
            return EXIT_USAGE;
        }
    };
    if print_config {
        print!("{}", cfg.to_toml());
        return 0;
    }
    log::init(name, cfg.log.level.0, cfg.log.output.resolve());
    // Here, in the only thread, before the daemon opens any socket or
    // starts any thread (the metrics thread too): everything it makes is
    // then in the namespace (see netns).
    let dbs = match place(&cfg) {
        Ok(placed) => {
            if let Some(handle) = &placed.netns {
                log_notice!(
                    "in network namespace {} ({}); databases from {}",
                    cfg.runtime.namespace,
                    handle.display(),
                    placed.database_config.display()
                );
            }
            placed.dbs
        }
        Err(e) => {
            log_error!("{e}");
            return EXIT_USAGE;
        }
    };
    let source = ConfigSource { file, overrides };
    (d.run)(cfg, dbs, source)
}

/// The configuration from `file`, the environment and `--set` flags (in
/// rising precedence), and the overrides it was made with.
fn load_config(
    file: &ConfigFile,
    sets: Vec<Override>,
) -> Result<(Config, Vec<Override>), ConfigError> {
    // Flags come after the environment: they win.
    let mut overrides = Override::from_env(std::env::vars())?;
    overrides.extend(sets);
    let cfg = Config::load(file, &overrides)?;
    Ok((cfg, overrides))
}

/// `check`: the daemon's configuration, then one look.
fn check(d: &Daemon, file: &ConfigFile, sets: Vec<Override>, json: bool) -> u8 {
    let cfg = match load_config(file, sets) {
        Ok((cfg, _)) => cfg,
        Err(e) => return (d.cannot_check)(json, &e),
    };
    match place(&cfg) {
        Ok(placed) => (d.check)(&cfg, &placed.dbs, json),
        Err(e) => (d.cannot_check)(json, &e),
    }
}

/// Where the process runs and what it talks to.
struct Placed {
    dbs: Databases,
    /// The file the databases came from.
    database_config: PathBuf,
    /// The namespace's handle, when `runtime.namespace` was entered.
    netns: Option<PathBuf>,
}

/// The databases, and with a `runtime.namespace` the namespace entered:
/// that namespace's `database_config.json` as `redis.database_global_config`
/// lists it (swss-common's `SonicDBConfig::initializeGlobalConfig`), else
/// `redis.database_config`. `Err` names the key at fault. Call it before
/// any thread or socket exists.
fn place(cfg: &Config) -> Result<Placed, String> {
    let ns = cfg.runtime.namespace.as_str();
    let load = |path: &Path, key: &str| Databases::load(path).map_err(|e| format!("{e} ({key})"));
    if ns.is_empty() {
        let path = &cfg.redis.database_config;
        return Ok(Placed {
            dbs: load(path, "redis.database_config")?,
            database_config: path.clone(),
            netns: None,
        });
    }
    let global = GlobalConfig::load(&cfg.redis.database_global_config)
        .map_err(|e| format!("{e} (redis.database_global_config, for runtime.namespace)"))?;
    let path = global
        .database_config(ns)
        .map_err(|e| format!("{e} (runtime.namespace)"))?;
    let dbs = load(
        path,
        &format!(
            "namespace {ns} of redis.database_global_config {}",
            global.path.display()
        ),
    )?;
    let handle = netns::enter(ns).map_err(|e| format!("{e} (runtime.namespace)"))?;
    Ok(Placed {
        dbs,
        database_config: path.to_path_buf(),
        netns: Some(handle),
    })
}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let mut args = args.into_iter().peekable();
    if args.next_if(|a| a == "sysctl-check").is_some() {
        let file = args.next().map(PathBuf::from);
        if let Some(extra) = args.next() {
            return Err(ConfigError(format!(
                "sysctl-check: unexpected argument {extra:?}"
            )));
        }
        return Ok(Command::SysctlCheck { file });
    }
    // `check` takes the daemon's configuration options, and `--json`.
    let check = args.next_if(|a| a == "check").is_some();
    let mut config = ConfigFile::Default;
    let mut sets = Vec::new();
    let mut print_config = false;
    let mut json = false;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, ConfigError> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => Err(ConfigError(format!("{name} needs a value; see --help"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => config = ConfigFile::Given(PathBuf::from(value("--config")?)),
            "-s" | "--set" => sets.push(Override::from_flag(&value("--set")?)?),
            "-n" | "--namespace" => sets.push(Override::from_key_flag(
                "--namespace",
                "runtime",
                "namespace",
                &value("--namespace")?,
            )),
            "--print-config" if !check => print_config = true,
            "--json" if check => json = true,
            other => {
                let context = if check { "check: " } else { "" };
                return Err(ConfigError(format!(
                    "{context}unknown argument {other:?}; see --help"
                )));
            }
        }
    }
    Ok(if check {
        Command::Check { config, sets, json }
    } else {
        Command::Run {
            config,
            sets,
            print_config,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, ConfigError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Run {
                config: ConfigFile::Default,
                sets: vec![],
                print_config: false
            }
        );
        let Command::Run {
            config,
            sets,
            print_config,
        } = p(&[
            "--config",
            "/x.toml",
            "-s",
            "netlink.rcvbuf_bytes=1",
            "--print-config",
        ])
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(config, ConfigFile::Given("/x.toml".into()));
        assert_eq!(sets[0].section, "netlink");
        assert_eq!(sets[0].key, "rcvbuf_bytes");
        assert_eq!(sets[0].value, "1");
        assert!(print_config);
        assert!(matches!(
            p(&["--config=/y.toml"]).unwrap(),
            Command::Run {
                config: ConfigFile::Given(_),
                ..
            }
        ));
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert_eq!(
            p(&["sysctl-check"]).unwrap(),
            Command::SysctlCheck { file: None }
        );
        assert_eq!(
            p(&["sysctl-check", "f.conf"]).unwrap(),
            Command::SysctlCheck {
                file: Some("f.conf".into())
            }
        );
    }

    #[test]
    fn check_takes_the_configuration_options_and_json() {
        assert_eq!(
            p(&["check"]).unwrap(),
            Command::Check {
                config: ConfigFile::Default,
                sets: vec![],
                json: false
            }
        );
        let Command::Check { config, sets, json } = p(&[
            "check",
            "--json",
            "-c",
            "/x.toml",
            "--set=redis.timeout_ms=100",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(config, ConfigFile::Given("/x.toml".into()));
        assert_eq!(
            (sets[0].key.as_str(), sets[0].value.as_str()),
            ("timeout_ms", "100")
        );
        assert!(json);
        assert_eq!(p(&["check", "--help"]).unwrap(), Command::Help);
        // Each command's own flags only.
        let e = p(&["check", "--print-config"]).unwrap_err().0;
        assert!(
            e.contains("check: unknown argument \"--print-config\""),
            "{e}"
        );
        assert!(p(&["--json"]).unwrap_err().0.contains("--json"));
        // `check` is a command only in first place.
        assert!(p(&["--config", "/x", "check"]).is_err());
        assert!(p(&["check", "--set", "novalue"])
            .unwrap_err()
            .0
            .contains("SECTION.KEY=VALUE"));
    }

    #[test]
    fn namespace_is_a_flag_for_runtime_namespace() {
        for args in [
            &["-n", "asic0"][..],
            &["--namespace", "asic0"],
            &["--namespace=asic0"],
            &["check", "-n", "asic0"],
        ] {
            let sets = match p(args).unwrap() {
                Command::Run { sets, .. } | Command::Check { sets, .. } => sets,
                other => panic!("{args:?}: {other:?}"),
            };
            assert_eq!(
                sets,
                [Override::from_key_flag(
                    "--namespace",
                    "runtime",
                    "namespace",
                    "asic0"
                )]
            );
            assert_eq!(sets[0].origin, "--namespace asic0");
        }
        // In order with --set: the later one wins.
        let Command::Run { sets, .. } =
            p(&["-n", "asic0", "--set", "runtime.namespace=asic1"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(sets[1].value, "asic1");
        assert!(p(&["--namespace"])
            .unwrap_err()
            .0
            .contains("--namespace needs a value"));
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(p(&["--bogus"]).unwrap_err().0.contains("--bogus"));
        assert!(p(&["--config"])
            .unwrap_err()
            .0
            .contains("--config needs a value"));
        assert!(p(&["--set", "novalue"])
            .unwrap_err()
            .0
            .contains("SECTION.KEY=VALUE"));
    }
}
