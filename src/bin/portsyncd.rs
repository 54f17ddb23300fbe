//! The `portsyncd` binary: the daemon is `syncd::port::run`, its check
//! `syncd::port::check`; the command line and configuration are the
//! engine's.

use std::process::ExitCode;

use syncd::engine::runtime::cli::{self, Daemon};
use syncd::engine::runtime::config::PORTSYNCD;
use syncd::port::{check, run};

fn main() -> ExitCode {
    ExitCode::from(cli::main(&Daemon {
        config: &PORTSYNCD,
        help: syncd::port::cli::HELP,
        run: run::run,
        check: check::run,
        cannot_check: check::cannot_check,
    }))
}
