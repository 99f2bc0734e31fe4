//! `zfsync-recv`: the command line becomes a [`Config`]; signals raise the stop flag; the
//! service listens and serves until then.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use zfsync_cli::{Exit, Output, Program};
use zfsync_recv::cli::{self, USAGE};
use zfsync_recv::{check_target, serve, Config};
use zfsync_zfs::Zfs;

const PROGRAM: Program = Program {
    name: "zfsync-recv",
    version: env!("CARGO_PKG_VERSION"),
    usage: USAGE,
    levels: &["info", "debug", "trace"],
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    zfsync_cli::main(&PROGRAM, cli::config, run)
}

fn run(config: &Config, _: &Output) -> zfsync_recv::Result<Exit> {
    // SAFETY: installing a handler that only stores to an atomic.
    let handler: extern "C" fn(libc::c_int) = on_signal;
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
    // zfs recv has its own bound (5 x --timeout without data, or to exit after the
    // stream); the commands run to completion get the same.
    let zfs = Zfs::detect(&config.zfs)?.with_limit(config.timeout * 5);
    log::info!("zfs flavor={:?}", zfs.capabilities().flavor);
    check_target(config, &zfs)?;
    let listener = TcpListener::bind(&config.listen).map_err(|e| {
        zfsync_recv::Error::Setup(format!("cannot listen on {}: {e}", config.listen))
    })?;
    let addr = listener.local_addr()?;
    if config.keys.is_empty() && !addr.ip().is_loopback() {
        let w = format!("listening on {addr} without --key-file: any host that can reach this port can write datasets under {}", config.target);
        log::warn!("{w}");
        eprintln!("zfsync-recv: warning: {w}");
    }
    log::info!(
        "listening addr={addr} target={} buffer={}",
        config.target,
        config.buffer
    );
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    serve(listener, config, &zfs, &STOP)?;
    Ok(Exit::Done)
}
