//! `cargo xtask test`: the one command that runs Weir's whole test suite on a
//! fresh machine.
//!
//! The tests talk to real programs: `psql` (also on a pseudo-terminal, with
//! util-linux's `script`; and over TLS, with certificates made by `openssl`), a PostgreSQL server (to compare Weir's behaviour
//! with Postgres'), the stock `sqllogictest` CLI, an S3-compatible server
//! (moto's, from PyPI) for checkpoints and sinks in S3. This task
//! installs whichever is missing (Debian packages with apt-get, crates with
//! cargo install, Python packages with pip in a virtual environment), checks
//! formatting and lints, then runs `cargo test`.
//!
//! `cargo xtask test [-- <cargo test arguments>]`; `--no-lint` skips fmt and
//! clippy.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

const SQLLOGICTEST_VERSION: &str = "0.29.1";
const MOTO_VERSION: &str = "5.2.1";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => match test(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask test [--no-lint] [-- <cargo test arguments>]");
            ExitCode::from(2)
        }
    }
}

fn test(args: &[String]) -> Result<(), String> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    let passthrough: Vec<&String> = args
        .iter()
        .skip_while(|a| a.as_str() != "--")
        .skip(1)
        .collect();

    ensure_postgres()?;
    ensure_script()?;
    ensure_openssl()?;
    ensure_sqllogictest()?;
    let moto_server = ensure_moto()?;

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if lint {
        run(Command::new(&cargo).args(["fmt", "--all", "--", "--check"]))?;
        run(Command::new(&cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run_with_deadline(
        Command::new(&cargo)
            .args(["test", "--workspace"])
            .env("WEIR_MOTO_SERVER", moto_server)
            .args(passthrough),
        test_deadline()?,
    )
}

/// How long `cargo test` (build and run) may take before it is stopped as
/// hung: `WEIR_TEST_TIMEOUT` seconds, 40 minutes by default. A test that
/// hangs then fails the run with its name in the log (cargo prints the
/// tests running for over 60 seconds) instead of holding CI until its own
/// limit.
fn test_deadline() -> Result<Duration, String> {
    match env::var("WEIR_TEST_TIMEOUT") {
        Ok(secs) => secs
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| format!("WEIR_TEST_TIMEOUT={secs:?}: {e}")),
        Err(_) => Ok(Duration::from_secs(40 * 60)),
    }
}

/// `script` (util-linux), which runs psql on a pseudo-terminal for the
/// tests that watch it print rows as they come.
fn ensure_script() -> Result<(), String> {
    if find_program("script").is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing script (bsdutils) with apt-get");
    apt_install(&["bsdutils"])?;
    match find_program("script") {
        Some(_) => Ok(()),
        None => Err("script is still missing after apt-get install bsdutils".into()),
    }
}

/// `openssl`, which makes the TLS certificates of the authentication tests.
fn ensure_openssl() -> Result<(), String> {
    if find_program("openssl").is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing openssl with apt-get");
    apt_install(&["openssl"])?;
    match find_program("openssl") {
        Some(_) => Ok(()),
        None => Err("openssl is still missing after apt-get install openssl".into()),
    }
}

/// moto's S3-compatible server (`moto_server`, PyPI package `moto[server]`):
/// the one on PATH, or one installed in a virtual environment under
/// `~/.cache/weir-tools` (system Pythons refuse a plain `pip install`).
fn ensure_moto() -> Result<PathBuf, String> {
    if let Some(found) = find_program("moto_server") {
        return Ok(found);
    }
    let home = env::var_os("HOME").ok_or("HOME is not set")?;
    let venv = Path::new(&home).join(".cache/weir-tools/moto");
    let program = venv.join("bin/moto_server");
    if program.is_file() {
        return Ok(program);
    }
    eprintln!(
        "xtask: installing moto[server] {MOTO_VERSION} with pip in {}",
        venv.display()
    );
    let python = find_program("python3").ok_or("python3 is needed for moto's S3 server")?;
    if run(Command::new(&python).arg("-m").arg("venv").arg(&venv)).is_err() {
        apt_install(&["python3-venv"])?;
        run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .arg(format!("moto[server]=={MOTO_VERSION}")))?;
    if !program.is_file() {
        return Err(format!(
            "moto was installed but {} is missing",
            program.display()
        ));
    }
    Ok(program)
}

/// `psql` and the PostgreSQL server programs, from Debian's packages.
fn ensure_postgres() -> Result<(), String> {
    let have_client = find_program("psql").is_some();
    let have_server = postgres_server_dir().is_some();
    if have_client && have_server {
        return Ok(());
    }
    eprintln!("xtask: installing PostgreSQL (psql and server) with apt-get");
    apt_install(&["postgresql", "postgresql-client"])?;
    if find_program("psql").is_none() || postgres_server_dir().is_none() {
        return Err("PostgreSQL is still missing after apt-get install".into());
    }
    Ok(())
}

/// The stock sqllogictest CLI, which users run against Weir.
fn ensure_sqllogictest() -> Result<(), String> {
    if find_program("sqllogictest").is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing sqllogictest-bin {SQLLOGICTEST_VERSION} with cargo install");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A debug build: it compiles in half the time of a release one, and
    // the tests give it a few small files.
    run(Command::new(cargo)
        .args([
            "install",
            "--locked",
            "--debug",
            "sqllogictest-bin",
            "--version",
        ])
        .arg(SQLLOGICTEST_VERSION))?;
    if find_program("sqllogictest").is_none() {
        return Err("sqllogictest was installed but is not on PATH (add ~/.cargo/bin)".into());
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = |program: &str| {
        if root {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        }
    };
    run(sudo("apt-get").args(["update", "-q"]))?;
    run(sudo("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let paths = env::var_os("PATH")?;
    env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Where `initdb` and `postgres` are: on PATH, or Debian's versioned directory.
fn postgres_server_dir() -> Option<PathBuf> {
    if let (Some(initdb), Some(_)) = (find_program("initdb"), find_program("postgres")) {
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Runs `command` and, if it has not finished within `deadline`, kills it
/// and every process under it (the test binaries, the servers they
/// started).
fn run_with_deadline(command: &mut Command, deadline: Duration) -> Result<(), String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{command:?} failed with {status}")),
            Ok(None) if start.elapsed() < deadline => thread::sleep(Duration::from_secs(1)),
            Ok(None) => {
                let pids = descendants(child.id());
                if !pids.is_empty() {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .args(pids.iter().map(u32::to_string))
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{command:?} was still running after {} s and was stopped: \
                     a test hangs (see the tests running for over 60 seconds above), \
                     or raise WEIR_TEST_TIMEOUT",
                    deadline.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for {command:?}: {e}")),
        }
    }
}

/// The processes under `root` (children, their children, ...), read from
/// `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.split_off(1)
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}
