//! Tests of what is shipped besides the binaries: the systemd units, the FreeBSD rc.d
//! script, the logrotate snippet, scripts/install, and the man pages, which must document
//! every option of their command's `--help`, with its default, and no option it lacks
//! (zfsync(8) does so for each subcommand of `zfsync`).
//!
//! No ZFS here. The tools these checks run (systemd-analyze, logrotate, groff, dash) are
//! required: a missing one fails its test with the package to install, so that a check
//! never silently stops running.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use zfsync_tests::*;

/// The units shipped in dist/systemd, all installed with `--init systemd`.
const UNITS: &[&str] = &[
    "zfsync-recv@.service",
    "zfsyncron@.service",
    "zfsyncron@.timer",
];

/// The man pages in man/, all installed in share/man/man8.
const PAGES: &[&str] = &["zfsync-send.8", "zfsync-recv.8", "zfsyncron.8", "zfsync.8"];

/// The sections every man page has, in this order.
const SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "EXAMPLES",
    "SEE ALSO",
];

// ---------------------------------------------------------------------------------------
// Helpers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// The path of TOOL, or a failed test that names the Debian package providing it.
fn need(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} not found: this test needs it; install the {package} package (apt-get install {package})")
        })
}

/// Runs CMD to completion; panics if it cannot start.
fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs CMD, which must succeed; returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        out.status
    );
    stdout
}

/// `dash scripts/install ARGS` with DESTDIR (none when empty); returns its stdout.
fn install(destdir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(need("dash", "dash"));
    cmd.arg(script("install"))
        .args(["--from", &bin_dir().display().to_string()])
        .args(args)
        .env_remove("DESTDIR");
    if !destdir.as_os_str().is_empty() {
        cmd.env("DESTDIR", destdir);
    }
    run_ok(&mut cmd)
}

/// Every file scripts/install puts in place with `--prefix PREFIX --init INIT`, with its
/// mode, as the absolute path it has on the installed system.
fn expected_files(prefix: &str, init: &str) -> BTreeSet<(String, String)> {
    let mut files: Vec<(String, u32)> = ["zfsync-send", "zfsync-recv", "zfsync", "zfsyncron"]
        .iter()
        .map(|b| (format!("{prefix}/sbin/{b}"), 0o755))
        .collect();
    for page in PAGES {
        files.push((format!("{prefix}/share/man/man8/{page}"), 0o644));
    }
    for example in ["recv-example.conf", "cron-example.conf"] {
        files.push((
            format!("{prefix}/share/doc/zfsync/examples/{example}"),
            0o644,
        ));
    }
    match init {
        "systemd" => {
            for unit in UNITS {
                files.push((format!("{prefix}/lib/systemd/system/{unit}"), 0o644));
            }
            files.push(("/etc/logrotate.d/zfsync".to_string(), 0o644));
        }
        "rc.d" => files.push((format!("{prefix}/etc/rc.d/zfsync_recv"), 0o755)),
        _ => {}
    }
    files
        .into_iter()
        .map(|(path, mode)| (path, format!("{mode:o}")))
        .collect()
}

/// Every file below ROOT, as (path relative to ROOT with a leading '/', octal mode).
fn files_below(root: &Path) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                found.insert((
                    format!("/{}", rel.display()),
                    format!("{:o}", meta.permissions().mode() & 0o7777),
                ));
            }
        }
    }
    found
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// scripts/install

/// The (mode, destination) of every `install -m MODE SRC DEST` line of a dry run.
fn dry_run_listing(stdout: &str, destdir: &Path) -> BTreeSet<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("install -m "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let [mode, _src, dest] = f.as_slice() else {
                panic!("unexpected dry-run line: install -m {l}");
            };
            let dest = dest
                .strip_prefix(&destdir.display().to_string())
                .unwrap_or_else(|| panic!("{dest} is not below DESTDIR"));
            (dest.to_string(), mode.to_string())
        })
        .collect()
}

fn check_dry_run(init: &str) {
    let destdir = temp_dir("dist-dry");
    let stdout = install(&destdir, &["--dry-run", "--init", init]);
    assert_eq!(
        dry_run_listing(&stdout, &destdir),
        expected_files("/usr/local", init),
        "dry run with --init {init}:\n{stdout}"
    );
    assert!(
        fs::read_dir(&destdir).unwrap().next().is_none(),
        "a dry run wrote into DESTDIR {}",
        destdir.display()
    );
    if init != "none" {
        assert!(
            stdout.contains("Nothing was enabled or started"),
            "{stdout}"
        );
    }
    let _ = fs::remove_dir_all(&destdir);
}

#[test]
fn install_dry_run_lists_every_systemd_file_and_writes_nothing() {
    check_dry_run("systemd");
}

#[test]
fn install_dry_run_lists_every_rc_d_file_and_writes_nothing() {
    check_dry_run("rc.d");
}

#[test]
fn install_dry_run_without_service_files() {
    check_dry_run("none");
}

#[test]
fn install_into_destdir_puts_every_file_in_place_with_its_mode() {
    let destdir = temp_dir("dist-install");
    let stdout = install(&destdir, &["--prefix", "/opt/zfsync", "--init", "systemd"]);
    assert_eq!(
        files_below(&destdir),
        expected_files("/opt/zfsync", "systemd")
    );
    // Binaries and scripts byte for byte; the units name the prefix's binaries.
    for (built, installed) in [
        (sender_bin(), "opt/zfsync/sbin/zfsync-send"),
        (receiver_bin(), "opt/zfsync/sbin/zfsync-recv"),
        (admin_bin(), "opt/zfsync/sbin/zfsync"),
        (script("zfsyncron"), "opt/zfsync/sbin/zfsyncron"),
        (
            repo().join("man/zfsync-recv.8"),
            "opt/zfsync/share/man/man8/zfsync-recv.8",
        ),
        (
            repo().join("man/zfsync.8"),
            "opt/zfsync/share/man/man8/zfsync.8",
        ),
    ] {
        assert!(
            fs::read(&built).unwrap() == fs::read(destdir.join(installed)).unwrap(),
            "{installed} differs from {}",
            built.display()
        );
    }
    let units = destdir.join("opt/zfsync/lib/systemd/system");
    for (unit, exec) in [
        ("zfsync-recv@.service", "/opt/zfsync/sbin/zfsync-recv "),
        ("zfsyncron@.service", "/opt/zfsync/sbin/zfsyncron "),
    ] {
        let text = read(&units.join(unit));
        assert!(
            text.contains(&format!("ExecStart={exec}")),
            "{unit}:\n{text}"
        );
        assert!(!text.contains("/usr/local/sbin"), "{unit}:\n{text}");
    }
    assert!(
        stdout.contains("systemctl enable --now zfsync-recv@NAME.service"),
        "install does not say how to enable the receiver:\n{stdout}"
    );
    let _ = fs::remove_dir_all(&destdir);
}

#[test]
fn install_rejects_a_relative_prefix_and_an_unknown_init() {
    for args in [
        &["--prefix", "usr/local"][..],
        &["--init", "upstart"],
        &["--bogus"],
    ] {
        let out = output(
            Command::new(need("dash", "dash"))
                .arg(script("install"))
                .args(["--dry-run", "--from", &bin_dir().display().to_string()])
                .args(args),
        );
        assert_eq!(out.status.code(), Some(2), "install {args:?}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// systemd units

/// Installs with the temp dir as the prefix, so the units' ExecStart= name the installed
/// copies of the built binaries (systemd-analyze checks that they exist), and verifies
/// them: any message at all, even a warning about an unknown key, fails.
#[test]
fn systemd_units_verify_cleanly() {
    let analyze = need("systemd-analyze", "systemd");
    let root = temp_dir("dist-units");
    let prefix = root.display().to_string();
    let sysconfdir = root.join("etc").display().to_string();
    install(
        Path::new(""),
        &[
            "--prefix",
            &prefix,
            "--sysconfdir",
            &sysconfdir,
            "--init",
            "systemd",
        ],
    );
    let unitdir = root.join("lib/systemd/system");
    let out = output(
        Command::new(analyze)
            .args(["verify", "--man=no"])
            .args(UNITS.iter().map(|u| format!("./{u}")))
            .current_dir(&unitdir),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify {UNITS:?}: {}\n{stdout}{stderr}",
        out.status
    );
    let _ = fs::remove_dir_all(&root);
}

/// systemd-analyze does not notice a timer whose service is missing.
#[test]
fn every_timer_has_its_service() {
    for timer in UNITS.iter().filter_map(|u| u.strip_suffix(".timer")) {
        let service = format!("{timer}.service");
        assert!(
            UNITS.contains(&service.as_str()),
            "{timer}.timer has no {service}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// FreeBSD rc.d script

#[test]
fn rc_d_script_parses() {
    let rc = repo().join("dist/freebsd/zfsync_recv");
    for shell in ["sh", "dash"] {
        run_ok(Command::new(need(shell, "dash")).arg("-n").arg(&rc));
    }
}

/// A stand-in for FreeBSD's rc.subr, enough to show what `service zfsync_recv start`
/// would run: rc.subr reads ${name}_flags when the command runs and puts it between
/// $command and $command_args.
const FAKE_RC_SUBR: &str = r#"
load_rc_config() { :; }
err() { echo "err: $2" >&2; exit "$1"; }
run_rc_command() {
    eval "rc_flags=\$${name}_flags"
    [ -z "$start_precmd" ] || $start_precmd
    echo "$command $rc_flags $command_args"
}
"#;

/// Runs the rc.d script's start against FAKE_RC_SUBR with the given rc.conf variables.
fn rc_d_start(vars: &[(&str, &str)]) -> Output {
    let dir = temp_dir("dist-rc");
    let subr = dir.join("rc.subr");
    fs::write(&subr, FAKE_RC_SUBR).unwrap();
    let text = read(&repo().join("dist/freebsd/zfsync_recv"));
    assert!(
        text.contains(". /etc/rc.subr"),
        "the script no longer sources /etc/rc.subr"
    );
    let script = dir.join("zfsync_recv");
    fs::write(
        &script,
        text.replace(". /etc/rc.subr", &format!(". {}", subr.display())),
    )
    .unwrap();
    let out = output(
        Command::new(need("dash", "dash"))
            .arg(&script)
            .arg("start")
            .env_clear()
            .envs(vars.iter().copied()),
    );
    let _ = fs::remove_dir_all(&dir);
    out
}

#[test]
fn rc_d_script_passes_flags_and_target_to_the_receiver_not_to_daemon() {
    let out = rc_d_start(&[
        ("zfsync_recv_enable", "YES"),
        ("zfsync_recv_target", "backup/hosts/fileserver"),
        ("zfsync_recv_flags", "-l 0.0.0.0:7611 --timeout 30"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let argv: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    let expected = "/usr/sbin/daemon -f -S -T zfsync-recv -p /var/run/zfsync_recv.pid \
                    /usr/local/sbin/zfsync-recv -l 0.0.0.0:7611 --timeout 30 backup/hosts/fileserver";
    assert_eq!(argv.join(" "), expected);
}

#[test]
fn rc_d_script_refuses_to_start_without_a_target() {
    let out = rc_d_start(&[("zfsync_recv_enable", "YES")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("zfsync_recv_target"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// logrotate snippet

#[test]
fn logrotate_snippet_parses() {
    let logrotate = need("logrotate", "logrotate");
    let dir = temp_dir("dist-logrotate");
    let out = output(
        Command::new(logrotate)
            .arg("-d")
            .arg("-s")
            .arg(dir.join("state"))
            .arg(repo().join("dist/logrotate/zfsync")),
    );
    // logrotate -d exits 0 even after "error: ... unknown option": read what it says.
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("error") || l.starts_with("warning"))
        .filter(|l| !l.contains("logrotate in debug mode does nothing"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "logrotate -d: {}\n{text}",
        out.status
    );
    assert!(text.contains("/var/log/zfsync-*.log"), "{text}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn logrotate_postrotate_script_parses() {
    let text = read(&repo().join("dist/logrotate/zfsync"));
    let script = text
        .split_once("postrotate")
        .and_then(|(_, rest)| rest.split_once("endscript"))
        .map(|(script, _)| script)
        .expect("the snippet has a postrotate script");
    assert!(script.contains("zfsync-recv"), "{script}");
    run_ok(Command::new(need("dash", "dash")).args(["-n", "-c", script]));
}

// ---------------------------------------------------------------------------------------
// Man pages

/// One option entry, from --help or from a man page: its spellings and its text.
#[derive(Debug)]
struct Entry {
    options: Vec<String>,
    text: String,
}

/// The words of TAG that are options: `-t, --threads N` -> `-t`, `--threads`.
fn option_words(tag: &str) -> Vec<String> {
    tag.split([',', ' '])
        .filter(|w| w.starts_with('-'))
        .map(String::from)
        .collect()
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The entries of the `Options:` block of a --help text. An entry starts on a line that
/// is indented a little and starts with '-'; its description goes on in the lines indented
/// deeper.
fn help_entries(help: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let block = help
        .lines()
        .skip_while(|l| l.trim() != "Options:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    for line in block {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if text.starts_with('-') && indent <= 8 {
            let (tag, rest) = text.split_once("  ").unwrap_or((text, ""));
            entries.push(Entry {
                options: option_words(tag),
                text: rest.to_string(),
            });
        } else {
            let entry = entries
                .last_mut()
                .unwrap_or_else(|| panic!("help text before the first option: {line}"));
            entry.text.push(' ');
            entry.text.push_str(text);
        }
    }
    for e in &mut entries {
        e.text = squeeze(&e.text);
    }
    assert!(!entries.is_empty(), "no options in:\n{help}");
    entries
}

/// The defaults an entry's text gives: "(default X)", "(default: X)", "; default: X",
/// up to the closing ')' or a ';'.
fn defaults(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("default") {
        let before = &rest[..at];
        let after = &rest[at + "default".len()..];
        rest = after;
        if !(before.ends_with('(') || after.starts_with(':')) {
            continue; // prose, such as "used by default"
        }
        let value = after.trim_start_matches(':').trim_start();
        let end = value.find([')', ';']).unwrap_or(value.len());
        found.push(value[..end].trim().to_string());
    }
    found
}

/// Plain text of a line of roff: font changes and escapes removed.
fn roff_text(line: &str) -> String {
    let mut s = line.to_string();
    for (from, to) in [
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
        ("\\c", ""),
        ("\\&", ""),
        ("\\(en", "-"),
        ("\\-", "-"),
        ("\\e", "\\"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// A macro line's arguments as text: `.BR zfsync-send (8),` -> `zfsync-send(8),`. The
/// alternating-font macros join their arguments; `.B` and `.I` keep the spaces.
fn macro_text(line: &str) -> String {
    let (name, args) = line[1..].split_once(' ').unwrap_or((&line[1..], ""));
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => words.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    words.push(word);
    let joined = match name {
        "B" | "I" | "SM" => words.join(" "),
        _ => words.concat(),
    };
    roff_text(&joined)
}

/// The lines of section NAME (`.SH NAME` up to the next `.SH`).
fn section<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.lines()
        .skip_while(|l| l.trim() != format!(".SH {name}") && l.trim() != format!(".SH \"{name}\""))
        .skip(1)
        .take_while(|l| !l.starts_with(".SH"))
        .collect()
}

/// The `.TP` entries of a section: the line after `.TP` is the tag, the lines up to the
/// next `.TP`, `.PP` (which ends the indented text), `.SS` or the section's end are the
/// text.
fn tp_entries(lines: &[&str]) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_entry = false;
    let mut lines = lines.iter();
    while let Some(line) = lines.next() {
        if line.starts_with(".TP") {
            in_entry = true;
            let tag = lines.next().expect("a tag after .TP");
            let tag = if tag.starts_with('.') {
                macro_text(tag)
            } else {
                roff_text(tag)
            };
            entries.push((tag, String::new()));
        } else if line.starts_with(".SS") {
            break;
        } else if [".PP", ".P", ".LP"].contains(&line.trim_end()) {
            in_entry = false;
        } else if let Some((_, text)) = entries.last_mut().filter(|_| in_entry) {
            let t = if line.starts_with(".\\\"") {
                String::new()
            } else if line.starts_with('.') {
                macro_text(line)
            } else {
                roff_text(line)
            };
            text.push(' ');
            text.push_str(&t);
        }
    }
    entries
        .into_iter()
        .map(|(tag, text)| (tag, squeeze(&text)))
        .collect()
}

fn man_entries(page: &str) -> Vec<Entry> {
    tp_entries(&section(page, "OPTIONS"))
        .into_iter()
        .map(|(tag, text)| Entry {
            options: option_words(&tag),
            text,
        })
        .collect()
}

/// The exit codes a --help text lists in its "Exit status:" paragraph (up to the next
/// blank line: the examples after it have numbers too).
fn help_exit_codes(help: &str) -> BTreeSet<String> {
    let (_, tail) = help
        .split_once("Exit status:")
        .unwrap_or_else(|| panic!("no 'Exit status:' in:\n{help}"));
    let paragraph = tail.split("\n\n").next().unwrap_or("");
    paragraph
        .split_whitespace()
        .filter(|w| w.len() == 1 && w.as_bytes()[0].is_ascii_digit())
        .map(String::from)
        .collect()
}

/// What a man page documents of one command: its option entries and its exit codes.
struct Documented {
    options: Vec<Entry>,
    codes: BTreeSet<String>,
}

/// Checks man/PAGE against `COMMAND --help`: every option of the help has an entry in
/// OPTIONS with the same spellings and every default of the help, the page has no option
/// the help lacks, and EXIT STATUS lists the same codes.
fn check_man_page(page_name: &str, help_cmd: &mut Command) {
    let help = run_ok(help_cmd);
    let page = read(&repo().join("man").join(page_name));
    let documented = Documented {
        options: man_entries(&page),
        codes: tp_entries(&section(&page, "EXIT STATUS"))
            .into_iter()
            .map(|(tag, _)| tag)
            .collect(),
    };
    check_documented(page_name, &help, &documented);
}

/// Checks what WHAT (a page, or a subcommand's subsection) documents against HELP, as
/// [`check_man_page`] says.
fn check_documented(what: &str, help: &str, documented: &Documented) {
    let from_help = help_entries(help);
    let from_page = &documented.options;

    let spellings = |entries: &[Entry]| -> BTreeSet<String> {
        entries.iter().flat_map(|e| e.options.clone()).collect()
    };
    let (in_help, in_page) = (spellings(&from_help), spellings(from_page));
    let missing: Vec<_> = in_help.difference(&in_page).collect();
    let extra: Vec<_> = in_page.difference(&in_help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: options of --help missing from OPTIONS: {missing:?}; \
         options in OPTIONS that --help lacks: {extra:?}"
    );

    for h in &from_help {
        let m = from_page
            .iter()
            .find(|m| m.options == h.options)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no OPTIONS entry spelled {:?} as --help does (the page has {:?})",
                    h.options,
                    from_page.iter().map(|m| &m.options).collect::<Vec<_>>()
                )
            });
        for default in defaults(&h.text) {
            assert!(
                m.text.contains(&default),
                "{what}: {:?}: --help gives the default {default:?}, the page says: {}",
                h.options,
                m.text
            );
        }
    }

    assert_eq!(
        documented.codes,
        help_exit_codes(help),
        "{what}: EXIT STATUS"
    );
}

/// The subcommands of a --help text's `Subcommands:` block, but `help`.
fn help_subcommands(help: &str) -> BTreeSet<String> {
    let found: BTreeSet<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Subcommands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect();
    assert!(!found.is_empty(), "no subcommands in:\n{help}");
    found
}

/// The `.SS` subsections of LINES (a section), by name, each with its lines up to the
/// next `.SS`.
fn subsections<'a>(lines: &[&'a str]) -> Vec<(String, Vec<&'a str>)> {
    let mut found: Vec<(String, Vec<&'a str>)> = Vec::new();
    for line in lines {
        if let Some(name) = line.strip_prefix(".SS ") {
            found.push((name.trim().trim_matches('"').to_string(), Vec::new()));
        } else if let Some((_, body)) = found.last_mut() {
            body.push(line);
        }
    }
    found
}

/// A subcommand's subsection: its synopsis (the text before the first `.PP`) and what it
/// documents. Its `.TP` entries are options when the tag starts with '-', exit codes when
/// the tag is one digit, and prose otherwise (such as the checks of `zfsync check`).
fn subcommand_documented(lines: &[&str]) -> (String, Documented) {
    let synopsis: Vec<String> = lines
        .iter()
        .take_while(|l| !l.starts_with(".PP") && !l.starts_with(".TP"))
        .map(|l| {
            if l.starts_with('.') {
                macro_text(l)
            } else {
                roff_text(l)
            }
        })
        .collect();
    let mut documented = Documented {
        options: Vec::new(),
        codes: BTreeSet::new(),
    };
    for (tag, text) in tp_entries(lines) {
        if tag.starts_with('-') {
            documented.options.push(Entry {
                options: option_words(&tag),
                text,
            });
        } else if tag.len() == 1 && tag.as_bytes()[0].is_ascii_digit() {
            documented.codes.insert(tag);
        }
    }
    (squeeze(&synopsis.join(" ")), documented)
}

/// Checks man/PAGE's SUBCOMMANDS against `COMMAND --help` and `COMMAND help SUBCOMMAND`:
/// one subsection `COMMAND SUBCOMMAND` for each subcommand of the help and no other,
/// each opening with the subcommand's usage line and documenting its options and exit
/// codes as [`check_man_page`] says.
fn check_man_page_subcommands(page_name: &str, command: &Path) {
    let help = run_ok(Command::new(command).arg("--help"));
    let page = read(&repo().join("man").join(page_name));
    let name = command.file_name().unwrap().to_string_lossy().into_owned();
    let found = subsections(&section(&page, "SUBCOMMANDS"));
    let in_page: BTreeSet<String> = found.iter().map(|(title, _)| title.clone()).collect();
    let in_help: BTreeSet<String> = help_subcommands(&help)
        .into_iter()
        .map(|sub| format!("{name} {sub}"))
        .collect();
    assert_eq!(in_page, in_help, "{page_name}: subsections of SUBCOMMANDS");
    for (title, lines) in &found {
        let sub = title.rsplit(' ').next().unwrap();
        let sub_help = run_ok(Command::new(command).args(["help", sub]));
        let usage = sub_help
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("Usage: "))
            .unwrap_or_else(|| panic!("no 'Usage: ' line opens {title}'s help:\n{sub_help}"));
        let (synopsis, documented) = subcommand_documented(lines);
        assert_eq!(synopsis, usage, "{page_name}: {title}: synopsis");
        check_documented(&format!("{page_name}: {title}"), &sub_help, &documented);
    }
}

#[test]
fn zfsync_send_man_page_matches_help() {
    check_man_page("zfsync-send.8", Command::new(sender_bin()).arg("--help"));
}

#[test]
fn zfsync_recv_man_page_matches_help() {
    check_man_page("zfsync-recv.8", Command::new(receiver_bin()).arg("--help"));
}

#[test]
fn zfsyncron_man_page_matches_help() {
    check_man_page(
        "zfsyncron.8",
        Command::new(need("dash", "dash"))
            .arg(script("zfsyncron"))
            .arg("--help"),
    );
}

#[test]
fn zfsync_man_page_matches_help_of_zfsync_and_of_every_subcommand() {
    check_man_page("zfsync.8", Command::new(admin_bin()).arg("--help"));
    check_man_page_subcommands("zfsync.8", &admin_bin());
}

#[test]
fn man_pages_have_every_section_and_render_without_warnings() {
    let groff = need("groff", "groff");
    for page in PAGES {
        let path = repo().join("man").join(page);
        let text = read(&path);
        let sections: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .map(|s| s.trim_matches('"'))
            .filter(|s| SECTIONS.contains(s))
            .collect();
        assert_eq!(sections, SECTIONS, "{page}: sections");
        let out = output(
            Command::new(&groff)
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path),
        );
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff -man -ww {page}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------
// The parsers above, on small inputs

/// Entries as (spellings joined by spaces, text), to compare with a table.
fn summary(entries: &[Entry]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| (e.options.join(" "), e.text.clone()))
        .collect()
}

fn table(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(o, t)| (o.to_string(), t.to_string()))
        .collect()
}

#[test]
fn help_entries_join_continued_lines_and_split_spellings() {
    let help = "Usage: x\n\nOptions:\n  -t, --threads N   parallel (default 8)\n      --zfs PATH    zfs\n                    binary (default: zfs)\n  -- ARGS           more\n\nExit status: 0 ok, 2 usage.\n";
    assert_eq!(
        summary(&help_entries(help)),
        table(&[
            ("-t --threads", "parallel (default 8)"),
            ("--zfs", "zfs binary (default: zfs)"),
            ("--", "more"),
        ])
    );
    assert_eq!(
        help_exit_codes(help),
        BTreeSet::from(["0".to_string(), "2".to_string()])
    );
}

#[test]
fn defaults_are_found_in_parentheses_and_after_a_colon_only() {
    for (text, expected) in [
        ("parallel sessions (default 8)", &["8"][..]),
        ("silent (default 60), and kill", &["60"]),
        ("waits (default 2; 0: at once)", &["2"]),
        ("(default: beside it, then PATH)", &["beside it, then PATH"]),
        ("(destroys its contents; default: refuse)", &["refuse"]),
        ("which are used by default where", &[]),
    ] {
        assert_eq!(defaults(text), expected, "{text}");
    }
}

#[test]
fn man_entries_read_tags_and_text_of_options() {
    let page = ".SH OPTIONS\n.TP\n\\fB\\-t\\fR, \\fB\\-\\-threads\\fR \\fIN\\fR\nParallel\n.I sessions\n(default 8).\n.TP\n\\fB\\-\\-\\fR \\fIARGS\\fR\nMore.\n.SH EXIT STATUS\n";
    assert_eq!(
        summary(&man_entries(page)),
        table(&[
            ("-t --threads", "Parallel sessions (default 8)."),
            ("--", "More."),
        ])
    );
}

#[test]
fn a_subcommand_subsection_has_a_synopsis_options_exit_codes_and_prose() {
    let page = ".SH SUBCOMMANDS\n.SS \"zfsync check\"\n.B zfsync check\n.I CHECK\n.RI [ options ]\n.PP\nChecks:\n.TP\n\\fBall\\fR [\\fIDATASET\\fR]\nEvery check.\n.PP\nOptions:\n.TP\n\\fB\\-\\-zfs\\fR \\fIPATH\\fR\nThe zfs binary (default: zfs).\n.PP\nExit status, 3 kinds:\n.TP\n.B 0\nOK.\n.TP\n.B 3\nUNKNOWN.\n.SS \"zfsync forget\"\n.B zfsync forget\n.SH OPTIONS\n";
    let found = subsections(&section(page, "SUBCOMMANDS"));
    let titles: Vec<&str> = found.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(titles, ["zfsync check", "zfsync forget"]);
    let (synopsis, documented) = subcommand_documented(&found[0].1);
    assert_eq!(synopsis, "zfsync check CHECK [options]");
    assert_eq!(
        summary(&documented.options),
        table(&[("--zfs", "The zfs binary (default: zfs).")])
    );
    assert_eq!(
        documented.codes,
        BTreeSet::from(["0".to_string(), "3".to_string()])
    );
}
