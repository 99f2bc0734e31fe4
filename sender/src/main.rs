//! `zfsync-send`: the command line becomes a [`Config`], the run's summary is printed, and
//! the exit status tells the truth (0 all done, 1 some dataset failed, 2 usage or
//! configuration error).

use std::process::ExitCode;
use zfsync_cli::{Exit, OnStop, Output, Program};
use zfsync_send::cli::{self, USAGE};
use zfsync_send::{print_summary, run, Config, Error};

const PROGRAM: Program = Program {
    name: "zfsync-send",
    version: env!("CARGO_PKG_VERSION"),
    usage: USAGE,
    levels: &["warn", "info", "debug"],
    // A run cut short leaves nothing to clean up that the next run does not handle
    // (zfs recv discards a cut stream): SIGTERM and SIGINT end it at once, as unhandled.
    on_stop: OnStop::Die,
};

fn main() -> ExitCode {
    zfsync_cli::main(&PROGRAM, cli::config, send)
}

fn send(config: &Config, output: &Output) -> zfsync_send::Result<Exit> {
    let report = match run(config) {
        Ok(r) => r,
        // Said once, with the status the error calls for (2 for a usage error).
        Err(e) => return Ok(PROGRAM.fail(&e, output, Error::exit(&e))),
    };
    let _ = print_summary(&report, output.quiet, &mut std::io::stdout());
    for w in &report.warnings {
        PROGRAM.warn(w, output);
    }
    let undone = report
        .datasets
        .iter()
        .filter(|r| !r.delivery.status.is_ok());
    match (&report.stopped, undone.count()) {
        (Some(why), n) if n > 0 => {
            let why = format!("{why}: {n} of {} datasets not done", report.datasets.len());
            return Ok(PROGRAM.fail(&why, output, Exit::Failed));
        }
        _ => {}
    }
    Ok(if report.all_ok() {
        Exit::Done
    } else {
        Exit::Failed
    })
}
