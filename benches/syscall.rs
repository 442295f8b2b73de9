//! The syscall round-trip benchmark: what one guest `getpid` costs.
//!
//! Three functions in one criterion group, `getpid`, measured in the same
//! run so their numbers compare:
//!
//! - `native`: `tests/guests/getpid_loop.c` run directly on the host;
//! - `sigsys_floor`: `tests/guests/sigsys_floor.c`, which traps its own
//!   getpid with seccomp and answers it in an in-process SIGSYS handler: the
//!   floor for any seccomp-trap design, with nobody else to wake;
//! - `systrap`: the same `getpid_loop` under `sentry run --platform systrap`,
//!   so each call goes guest -> SIGSYS -> stub -> sentry -> back.
//!
//! The guests are compiled once at start-up (`gcc -O2 -static`, into a
//! temporary directory; without gcc or a static libc the bench says so and
//! does nothing). Every sample runs a guest with `N = iters` and uses the
//! time the guest itself measured around its loop and printed on stdout, so
//! process start-up (and the sentry's own start-up) is not in the numbers.
//! If the sentry cannot run the guest, `systrap` is reported and skipped.
//! After the group, each guest runs once more with `N = 200000` for a
//! one-line summary of the per-call costs and the systrap/floor ratio.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Calls per guest run for the summary line.
const SUMMARY_CALLS: u64 = 200_000;

/// One way of running a getpid guest: `program prefix_args... N`.
struct Runner {
    name: &'static str,
    program: PathBuf,
    prefix_args: Vec<OsString>,
    /// Where this runner's guest output goes (one run at a time).
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Runner {
    fn new(name: &'static str, dir: &Path, program: PathBuf, prefix_args: Vec<OsString>) -> Self {
        Runner {
            name,
            program,
            prefix_args,
            stdout_path: dir.join(format!("{name}.stdout")),
            stderr_path: dir.join(format!("{name}.stderr")),
        }
    }

    /// Runs the guest with `n` calls and returns the time it printed.
    ///
    /// Output goes to files rather than pipes so a chatty stderr cannot
    /// block the child while we wait; a run that outlives a generous
    /// limit is killed (and reaped).
    fn run(&self, n: u64) -> Result<Duration, String> {
        let out = File::create(&self.stdout_path)
            .map_err(|e| format!("create {}: {e}", self.stdout_path.display()))?;
        let err = File::create(&self.stderr_path)
            .map_err(|e| format!("create {}: {e}", self.stderr_path.display()))?;
        let mut child = Command::new(&self.program)
            .args(&self.prefix_args)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.program.display()))?;
        let limit = Duration::from_secs(30) + Duration::from_micros(n.saturating_mul(100));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{}: no exit after {limit:?}; killed it{}",
                        self.name,
                        self.stderr_tail()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{}: wait: {e}", self.name));
                }
            }
        };
        let stdout = std::fs::read_to_string(&self.stdout_path)
            .map_err(|e| format!("read {}: {e}", self.stdout_path.display()))?;
        if !status.success() {
            return Err(format!(
                "{}: `{}` with N={n} failed ({status}){}",
                self.name,
                self.command_line(),
                self.stderr_tail()
            ));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match line.map(|l| l.trim().parse::<u64>()) {
            Some(Ok(ns)) => Ok(Duration::from_nanos(ns)),
            _ => Err(format!(
                "{}: `{}` with N={n} printed {:?}, not the elapsed nanoseconds{}",
                self.name,
                self.command_line(),
                stdout.chars().take(200).collect::<String>(),
                self.stderr_tail()
            )),
        }
    }

    /// Runs `n` calls, panicking with the error: for use inside a sample,
    /// after [`Runner::run`] has already worked once.
    fn sample(&self, n: u64) -> Duration {
        match self.run(n) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.prefix_args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// The end of the last run's stderr, as a suffix for error messages.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("; stderr:\n{}", tail.join("\n"))
    }
}

/// Compiles `tests/guests/<name>.c` to `dir/<name>`.
fn compile(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("run gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc -O2 -static {} failed ({}):\n{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(exe)
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sentry-bench-syscall-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `systrap` runner, if the sentry can run the guest; otherwise says
/// why and returns `None`. Tries the CLI with `--platform systrap` first,
/// then without (systrap being the default platform).
fn systrap_runner(dir: &Path, getpid_loop: &Path) -> Option<Runner> {
    let sentry = PathBuf::from(env!("CARGO_BIN_EXE_sentry"));
    let forms: [&[&str]; 2] = [&["run", "--platform", "systrap", "--"], &["run", "--"]];
    let mut errors = Vec::new();
    for form in forms {
        let mut args: Vec<OsString> = form.iter().map(OsString::from).collect();
        args.push(getpid_loop.into());
        let runner = Runner::new("systrap", dir, sentry.clone(), args);
        match runner.run(1000) {
            Ok(_) => return Some(runner),
            Err(e) => errors.push(e),
        }
    }
    eprintln!(
        "skipping getpid/systrap: the sentry cannot run the guest:\n{}",
        errors.join("\n")
    );
    None
}

fn main() {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping the syscall bench: gcc not found (it builds the guest programs)");
        return;
    }
    let dir = match TempDir::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping the syscall bench: {e}");
            return;
        }
    };
    let (getpid_loop, sigsys_floor) = match (
        compile(&dir.0, "getpid_loop"),
        compile(&dir.0, "sigsys_floor"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("skipping the syscall bench: cannot build the guests: {e}");
            return;
        }
    };

    let mut runners = vec![
        Runner::new("native", &dir.0, getpid_loop.clone(), Vec::new()),
        Runner::new("sigsys_floor", &dir.0, sigsys_floor, Vec::new()),
    ];
    // The two host-only guests must work; a failure there is a broken
    // environment (e.g. seccomp unavailable), not a sentry bug.
    runners.retain(|r| match r.run(1000) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping getpid/{}: {e}", r.name);
            false
        }
    });
    runners.extend(systrap_runner(&dir.0, &getpid_loop));

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("getpid");
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for r in &runners {
            group.bench_function(r.name, |b| b.iter_custom(|iters| r.sample(iters)));
        }
        group.finish();
    }
    c.final_summary();

    // One more run each for a summary line from this run's own numbers.
    let per_call = |name: &str| -> Option<f64> {
        let r = runners.iter().find(|r| r.name == name)?;
        match r.run(SUMMARY_CALLS) {
            Ok(d) => Some(d.as_nanos() as f64 / SUMMARY_CALLS as f64),
            Err(e) => {
                eprintln!("summary run failed: {e}");
                None
            }
        }
    };
    let native = per_call("native");
    let floor = per_call("sigsys_floor");
    let systrap = per_call("systrap");
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |ns| format!("{ns:.0} ns"));
    let ratio = match (systrap, floor) {
        (Some(s), Some(f)) if f > 0.0 => format!("{:.2}x", s / f),
        _ => "n/a".to_string(),
    };
    println!(
        "getpid per call (N={SUMMARY_CALLS}): native {}, sigsys_floor {}, systrap {}; \
         systrap/floor {ratio}",
        show(native),
        show(floor),
        show(systrap)
    );
}
