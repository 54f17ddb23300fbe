//! The `portsyncd` binary: the command line and the configuration; the
//! daemon itself is `syncd::port::run`.

use std::process::ExitCode;

use syncd::engine::runtime::config::{Config, ConfigError, ConfigFile, ConfigSource, Override};
use syncd::engine::runtime::launch::EXIT_USAGE;
use syncd::engine::runtime::log;
use syncd::engine::sonic::dbconfig::Databases;
use syncd::log_error;
use syncd::port::check;
use syncd::port::cli::{self, Command};
use syncd::port::keys::DAEMON;

fn main() -> ExitCode {
    ExitCode::from(try_main())
}

fn try_main() -> u8 {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portsyncd: {e}");
            return EXIT_USAGE;
        }
    };
    let (file, sets, print_config) = match cmd {
        Command::Help => {
            print!("{}", cli::HELP);
            return 0;
        }
        Command::Version => {
            println!("portsyncd {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Command::SysctlCheck { file } => {
            return syncd::engine::runtime::sysctl_check::run(file.as_deref());
        }
        Command::Check { config, sets, json } => return check(&config, sets, json),
        Command::Run {
            config,
            sets,
            print_config,
        } => (config, sets, print_config),
    };
    let (cfg, overrides) = match load_config(&file, sets) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("portsyncd: {e}");
            return EXIT_USAGE;
        }
    };
    if print_config {
        print!("{}", cfg.to_toml());
        return 0;
    }
    log::init(DAEMON, cfg.log.level.0, cfg.log.output.resolve());
    let dbs = match Databases::load(&cfg.redis.database_config) {
        Ok(d) => d,
        Err(e) => {
            log_error!("{e} (redis.database_config)");
            return EXIT_USAGE;
        }
    };
    let source = ConfigSource { file, overrides };
    syncd::port::run::run(cfg, dbs, source)
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

/// `portsyncd check`: the daemon's configuration, then one look.
fn check(file: &ConfigFile, sets: Vec<Override>, json: bool) -> u8 {
    let cfg = match load_config(file, sets) {
        Ok((cfg, _)) => cfg,
        Err(e) => return check::cannot_check(json, &e),
    };
    match Databases::load(&cfg.redis.database_config) {
        Ok(dbs) => check::run(&cfg, &dbs, json),
        Err(e) => check::cannot_check(json, &format!("{e} (redis.database_config)")),
    }
}
