//! `zfsync-recv`: the command line becomes a [`Config`]; the service listens and serves
//! until SIGTERM or SIGINT raise the stop flag.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use zfsync_cli::{Exit, OnStop, Output, Program};
use zfsync_recv::cli::{self, Command, USAGE};
use zfsync_recv::{check_target, owner, serve, Config};
use zfsync_text::quoted;
use zfsync_zfs::Zfs;

/// Raised on SIGTERM or SIGINT: the service stops accepting and lets streams finish.
static STOP: AtomicBool = AtomicBool::new(false);

static PROGRAM: Program = Program {
    name: "zfsync-recv",
    version: env!("CARGO_PKG_VERSION"),
    usage: USAGE,
    levels: &["info", "debug", "trace"],
    on_stop: OnStop::Flag(&STOP),
};

fn main() -> ExitCode {
    zfsync_cli::main(&PROGRAM, cli::command, run)
}

fn run(command: &Command, output: &Output) -> zfsync_recv::Result<Exit> {
    match command {
        Command::Serve(config) => match serve_target(config, output) {
            // A TARGET, lock or address that cannot be used: the configuration must change,
            // and a service manager must not restart it as it is (exit 2).
            Err(e @ zfsync_recv::Error::Setup(_)) => Ok(PROGRAM.fail(&e, output, Exit::Usage)),
            other => other,
        },
        Command::GenKey(name) => gen_key(name),
    }
}

/// Prints a new key for client `name`: the same line serves both key files (the
/// receiver's may get a SUBTREE after it).
fn gen_key(name: &str) -> zfsync_recv::Result<Exit> {
    let line = format!("{name} {}", zfsync_protocol::auth::new_secret()?);
    let mut out = std::io::stdout();
    writeln!(
        out,
        "# receiver's key file (zfsync-recv --key-file, mode 600); a SUBTREE may follow:\n\
         {line}\n\
         # sender's key file (zfsync-send --key-file, mode 600):\n\
         {line}"
    )?;
    Ok(Exit::Done)
}

fn serve_target(config: &Config, output: &Output) -> zfsync_recv::Result<Exit> {
    // zfs recv has its own bound (5 x --timeout without data, or to exit after the
    // stream); the commands run to completion get the same.
    let zfs = Zfs::detect(&config.zfs)?.with_limit(config.timeout * 5);
    log::info!("zfs flavor={:?}", zfs.capabilities().flavor);
    check_target(config, &zfs)?;
    // Held until the process ends: a second service on this TARGET is refused.
    let _owner = owner::claim(&owner::default_lock_dir(), config.target.as_str())
        .map_err(|e| zfsync_recv::Error::Setup(e.to_string()))?;
    let listener = TcpListener::bind(&config.listen).map_err(|e| {
        let e = zfsync_text::IoWords(&e);
        zfsync_recv::Error::Setup(format!("cannot listen on {}: {e}", config.listen))
    })?;
    let http =
        match &config.http {
            Some(a) => Some(zfsync_recv::http::bind(a).map_err(|e| {
                zfsync_recv::Error::Setup(format!("cannot serve --http on {a}: {e}"))
            })?),
            None => None,
        };
    if let Some(h) = &http {
        let at = h.local_addr()?;
        if !at.ip().is_loopback() {
            let w = format!("serving the status page and /metrics on {at}: any host that can reach this port can read the names and state of the datasets under {}", config.target);
            log::warn!("{w}");
            eprintln!("zfsync-recv: warning: {w}");
        }
        log::info!("http addr={at}");
    }
    let addr = listener.local_addr()?;
    if config.keys.is_empty() && !addr.ip().is_loopback() {
        let w = format!("listening on {addr} without --key-file: any host that can reach this port can write datasets under {}", config.target);
        PROGRAM.warn(&w, output);
    }
    log::info!(
        "listening addr={addr} target={} buffer={}",
        quoted(&config.target),
        quoted(&config.buffer)
    );
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    serve(listener, http, config, &zfs, &STOP)?;
    Ok(Exit::Done)
}
