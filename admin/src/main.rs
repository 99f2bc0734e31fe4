//! `zfsync`: the administration command; the library chooses and runs the subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    zfsync_admin::main()
}
