//! What the criterion benches share: building the C guests, running them
//! natively and under each sentry platform, and turning the time a guest
//! printed into criterion samples and summary numbers.
//!
//! Every bench follows the same path:
//!
//! ```text
//!  tests/guests/x.c --gcc -O2 -static--> TempDir/x --+--> native:  x ARGS... N
//!                                                    +--> systrap: sentry run --platform systrap -- x ARGS... N
//!                                                    +--> ptrace:  sentry run --platform ptrace  -- x ARGS... N
//!                                                              |
//!                  guest prints the ns its measured loop took  v
//!            criterion sample (iter_custom) <-- Runner::run --> summary line
//! ```
//!
//! A guest takes its operation count `N` as its last argument, times only
//! its measured loop with `CLOCK_MONOTONIC` and prints the elapsed
//! nanoseconds as the last line of stdout, so process start-up (and the
//! sentry's) is not in the numbers. Each [`Runner`] is probed with a short
//! run before the measurements: one that fails (no ptrace in this sandbox,
//! a platform not built yet, a sentry bug) is reported as
//! `group/name: skipped (reason)` and left out, and the rest of the bench
//! carries on.

// Each bench file includes this module and uses its own part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
pub use tempfile::TempDir;

/// The sentry platforms every bench measures besides `native`.
pub const PLATFORMS: [&str; 2] = ["systrap", "ptrace"];

/// Operations per guest run for the probe that checks a runner works.
const PROBE_OPS: u64 = 200;

/// A compiled guest and the arguments it takes before `N`.
#[derive(Clone)]
pub struct Guest {
    exe: PathBuf,
    args: Vec<OsString>,
    /// How many operations the guest makes per unit of `N` (its thread
    /// count, for a guest whose threads each make `N`).
    ops_per_n: u64,
    /// Shown after the runner's kind: `native/2T`.
    param: Option<String>,
}

impl Guest {
    pub fn new(exe: &Path) -> Self {
        Guest {
            exe: exe.to_path_buf(),
            args: Vec::new(),
            ops_per_n: 1,
            param: None,
        }
    }

    /// Appends an argument that goes before `N`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Says the guest makes `k` operations per unit of `N` and names the
    /// configuration `param` (as in criterion's `function/parameter`).
    pub fn shared(mut self, k: u64, param: impl Into<String>) -> Self {
        self.ops_per_n = k.max(1);
        self.param = Some(param.into());
        self
    }
}

/// One way of running a guest: `program prefix_args... N`.
pub struct Runner {
    /// `native`, `sigsys_floor`, or a platform name.
    kind: String,
    param: Option<String>,
    program: PathBuf,
    prefix_args: Vec<OsString>,
    ops_per_n: u64,
    /// Where this runner's guest output goes (one run at a time).
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Runner {
    /// The guest run directly on the host, named `kind` (`native`, or
    /// what the guest stands for).
    pub fn native(kind: &str, dir: &Path, guest: &Guest) -> Self {
        Self::build(kind, dir, guest.exe.clone(), guest.args.clone(), guest)
    }

    /// The guest run by `sentry run --platform <platform>`.
    pub fn sandboxed(platform: &str, dir: &Path, guest: &Guest) -> Self {
        let mut args: Vec<OsString> = ["run", "--platform", platform, "--"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(guest.exe.clone().into());
        args.extend(guest.args.iter().cloned());
        Self::build(platform, dir, sentry(), args, guest)
    }

    fn build(
        kind: &str,
        dir: &Path,
        program: PathBuf,
        prefix_args: Vec<OsString>,
        guest: &Guest,
    ) -> Self {
        let file = match &guest.param {
            Some(p) => format!("{kind}-{p}"),
            None => kind.to_string(),
        };
        Runner {
            kind: kind.to_string(),
            param: guest.param.clone(),
            program,
            prefix_args,
            ops_per_n: guest.ops_per_n,
            stdout_path: dir.join(format!("{file}.stdout")),
            stderr_path: dir.join(format!("{file}.stderr")),
        }
    }

    /// `kind` or `kind/param`, as in criterion's function ids.
    pub fn name(&self) -> String {
        match &self.param {
            Some(p) => format!("{}/{p}", self.kind),
            None => self.kind.clone(),
        }
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Runs the guest once with a few operations: `Some(self)` if that
    /// worked, else reports `group/name: skipped (reason)` and gives `None`.
    pub fn probe(self, group: &str) -> Option<Self> {
        match self.run(PROBE_OPS) {
            Ok(_) => Some(self),
            Err(e) => {
                eprintln!("{group}/{}: skipped ({e})", self.name());
                None
            }
        }
    }

    /// Runs the guest with argument `n` and returns the time it printed.
    ///
    /// Output goes to files rather than pipes so a chatty stderr cannot
    /// block the child while we wait; a run that outlives a generous
    /// limit is killed (and reaped).
    pub fn run(&self, n: u64) -> Result<Duration, String> {
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
        let ops = n.saturating_mul(self.ops_per_n);
        let limit = Duration::from_secs(30) + Duration::from_micros(ops.saturating_mul(200));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "`{} {n}` gave no exit after {limit:?}; killed it{}",
                        self.command_line(),
                        self.stderr_tail()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("wait for `{}`: {e}", self.command_line()));
                }
            }
        };
        let stdout = std::fs::read_to_string(&self.stdout_path)
            .map_err(|e| format!("read {}: {e}", self.stdout_path.display()))?;
        if !status.success() {
            return Err(format!(
                "`{} {n}` failed ({status}){}",
                self.command_line(),
                self.stderr_tail()
            ));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match line.map(|l| l.trim().parse::<u64>()) {
            Some(Ok(ns)) => Ok(Duration::from_nanos(ns)),
            _ => Err(format!(
                "`{} {n}` printed {:?}, not the elapsed nanoseconds{}",
                self.command_line(),
                stdout.chars().take(200).collect::<String>(),
                self.stderr_tail()
            )),
        }
    }

    /// One criterion sample of `iters` operations: runs the guest with
    /// `N = iters / ops_per_n` (at least 1) and scales the printed time
    /// from the operations made to `iters`. Panics with the error: for use
    /// inside a sample, after [`Runner::probe`] has shown the runner works.
    pub fn sample(&self, iters: u64) -> Duration {
        let n = (iters / self.ops_per_n).max(1);
        let ops = n * self.ops_per_n;
        let elapsed = match self.run(n) {
            Ok(d) => d,
            Err(e) => panic!("{}: {e}", self.name()),
        };
        if ops == iters {
            return elapsed;
        }
        let ns = elapsed.as_nanos() * u128::from(iters) / u128::from(ops);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Nanoseconds per operation over one run of about `ops` operations.
    pub fn ns_per_op(&self, ops: u64) -> Result<f64, String> {
        let n = (ops / self.ops_per_n).max(1);
        let elapsed = self.run(n)?;
        Ok(elapsed.as_nanos() as f64 / (n * self.ops_per_n) as f64)
    }

    /// The command without `N`.
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

/// The `native` runner and one per sentry platform for `guest`, each probed;
/// those that fail are reported as skipped and left out.
pub fn runners(group: &str, dir: &Path, guest: &Guest) -> Vec<Runner> {
    std::iter::once(Runner::native("native", dir, guest))
        .chain(PLATFORMS.iter().map(|p| Runner::sandboxed(p, dir, guest)))
        .filter_map(|r| r.probe(group))
        .collect()
}

/// The sentry binary cargo built for the benches.
fn sentry() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sentry"))
}

/// Benchmarks every runner in one criterion group, so their numbers come
/// from the same run: 10 samples, 1 s warm-up, `measurement` per function.
/// A sample of `iters` operations is [`Runner::sample`].
pub fn bench_group(
    c: &mut Criterion,
    group: &str,
    runners: &[Runner],
    measurement: Duration,
    throughput: Option<Throughput>,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    if let Some(t) = throughput {
        g.throughput(t);
    }
    for r in runners {
        let routine = |b: &mut criterion::Bencher| b.iter_custom(|iters| r.sample(iters));
        match &r.param {
            Some(p) => g.bench_function(BenchmarkId::new(r.kind.as_str(), p), routine),
            None => g.bench_function(r.kind.as_str(), routine),
        };
    }
    g.finish();
}

/// Nanoseconds per operation of the runner called `name` over one run of
/// about `ops` operations, for a summary line; `None` if that runner was
/// skipped or this run failed (which is reported).
pub fn summary_ns(runners: &[Runner], name: &str, ops: u64) -> Option<f64> {
    let r = runners.iter().find(|r| r.name() == name)?;
    match r.ns_per_op(ops) {
        Ok(ns) => Some(ns),
        Err(e) => {
            eprintln!("summary run of {name} failed: {e}");
            None
        }
    }
}

/// `123 ns`, or `1.23 µs` from 1 µs up; `n/a` for a missing value.
pub fn show_ns(v: Option<f64>) -> String {
    match v {
        Some(ns) if ns >= 1000.0 => format!("{:.2} µs", ns / 1000.0),
        Some(ns) => format!("{ns:.0} ns"),
        None => "n/a".to_string(),
    }
}

/// `num / den` as `1.23x`, `n/a` when either is missing.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_string(),
    }
}

/// Compiles `tests/guests/<name>.c` to `dir/<name>` with
/// `gcc -O2 -static -pthread`.
fn compile(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-O2", "-static", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("run gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc -O2 -static -pthread {} failed ({}):\n{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(exe)
}

/// The start of every bench: checks gcc is there, makes a temporary
/// directory and compiles `guests` into it. On failure says why the bench
/// `bench` is skipped and gives `None` (the bench then does nothing).
pub fn setup(bench: &str, guests: &[&str]) -> Option<(TempDir, Vec<PathBuf>)> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping the {bench} bench: gcc not found (it builds the guest programs)");
        return None;
    }
    let dir = match tempfile::Builder::new()
        .prefix(&format!("sentry-bench-{bench}-"))
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("skipping the {bench} bench: cannot create a temporary directory: {e}");
            return None;
        }
    };
    let mut exes = Vec::new();
    for name in guests {
        match compile(dir.path(), name) {
            Ok(exe) => exes.push(exe),
            Err(e) => {
                eprintln!("skipping the {bench} bench: cannot build the guests: {e}");
                return None;
            }
        }
    }
    Some((dir, exes))
}
