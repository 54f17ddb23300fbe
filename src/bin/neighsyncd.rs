//! The `neighsyncd` binary: the daemon is `syncd::neigh::run`, its check
//! `syncd::neigh::check`; the command line and configuration are the
//! engine's.

use std::process::ExitCode;

use syncd::engine::runtime::cli::{self, Daemon};
use syncd::engine::runtime::config::NEIGHSYNCD;
use syncd::neigh::{check, run};

fn main() -> ExitCode {
    ExitCode::from(cli::main(&Daemon {
        config: &NEIGHSYNCD,
        help: syncd::neigh::cli::HELP,
        run: run::run,
        check: check::run,
        cannot_check: check::cannot_check,
    }))
}
