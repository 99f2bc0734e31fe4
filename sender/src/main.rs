//! `zfsync-send`: parse the command line, set up logging, run, print the summary, exit
//! with the truth (0 all done, 1 some dataset failed, 2 usage error).

use std::process::ExitCode;
use zfsync_send::cli::{self, Parsed, USAGE};
use zfsync_send::{print_summary, run, Config};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&argv).and_then(|p| match p {
        Parsed::Help => {
            print!("{USAGE}");
            Err(String::new())
        }
        Parsed::Version => {
            println!("zfsync-send {}", env!("CARGO_PKG_VERSION"));
            Err(String::new())
        }
        Parsed::Run(args) => args.into_config(),
    }) {
        Ok(c) => c,
        Err(e) if e.is_empty() => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zfsync-send: {e}\nTry 'zfsync-send --help'.");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("zfsync-send: {e}");
        return ExitCode::from(2);
    }
    match run(&config) {
        Ok(report) => {
            let _ = print_summary(&report, config.quiet, &mut std::io::stdout());
            if report.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            log::error!("{e}");
            eprintln!("zfsync-send: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(config: &Config) -> Result<(), String> {
    let level = match config.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
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
