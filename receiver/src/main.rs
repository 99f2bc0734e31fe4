//! `zfsync-recv`: parse the command line, set up logging and signals, serve.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use zfsync_recv::cli::{self, Parsed, USAGE};
use zfsync_recv::{check_target, serve, Config};
use zfsync_zfs::Zfs;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&argv).and_then(|p| match p {
        Parsed::Help => {
            print!("{USAGE}");
            Err(String::new())
        }
        Parsed::Version => {
            println!("zfsync-recv {}", env!("CARGO_PKG_VERSION"));
            Err(String::new())
        }
        Parsed::Run(args) => args.into_config(),
    }) {
        Ok(c) => c,
        Err(e) if e.is_empty() => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zfsync-recv: {e}\nTry 'zfsync-recv --help'.");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("zfsync-recv: {e}");
        return ExitCode::from(2);
    }
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("zfsync-recv: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(config: &Config) -> zfsync_recv::Result<()> {
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
    serve(listener, config, &zfs, &STOP)
}

fn init_logging(config: &Config) -> Result<(), String> {
    let level = match config.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    if let Some(path) = &config.log_file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    b.format_timestamp_millis();
    b.init();
    Ok(())
}
