//! The multi-threaded syscall throughput benchmark: how guest `getpid`
//! calls per second scale with the number of guest threads.
//!
//! One criterion group, `syscall_throughput`, with six functions measured in
//! the same run so their numbers compare:
//!
//! - `native/1T`, `native/2T`, `native/4T`: `tests/guests/syscall_threads.c`
//!   run directly on the host with 1, 2 and 4 threads;
//! - `systrap/1T`, `systrap/2T`, `systrap/4T`: the same guest under
//!   `sentry run --platform systrap`, so each call goes guest -> SIGSYS ->
//!   stub -> sentry -> back, from several guest threads at once.
//!
//! The guest is compiled once at start-up (`gcc -O2 -static`, into a
//! temporary directory; without gcc or a static libc the bench says so and
//! does nothing). A sample of `iters` calls runs the guest as
//! `syscall_threads T N` with `N = iters / T` (at least 1), so the threads
//! share the calls; the guest prints the time from its start barrier to the
//! last join, and that time, scaled from the `T * N` calls made to `iters`,
//! is the sample. Process and thread start-up (and the sentry's own
//! start-up) are not in the numbers. Each function's throughput is one
//! element per iteration, so criterion reports calls per second.
//!
//! If the sentry cannot run the guest with some thread count, that function
//! is reported and skipped. After the group, every configuration runs once
//! more with `T * N = 400000` calls for a summary table of calls per second
//! and the systrap scaling ratios 2T/1T and 4T/1T.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

/// Total calls (over all threads) per guest run for the summary table.
const SUMMARY_CALLS: u64 = 400_000;

/// The guest thread counts measured.
const THREADS: [u64; 3] = [1, 2, 4];

/// Calls per thread for the run that checks a configuration works.
const PROBE_CALLS: u64 = 1000;

/// One way of running the guest with a fixed thread count:
/// `program prefix_args... T N`.
struct Runner {
    /// `native` or `systrap`.
    kind: &'static str,
    threads: u64,
    program: PathBuf,
    prefix_args: Vec<OsString>,
    /// Where this runner's guest output goes (one run at a time).
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Runner {
    fn new(
        kind: &'static str,
        threads: u64,
        dir: &Path,
        program: PathBuf,
        prefix_args: Vec<OsString>,
    ) -> Self {
        Runner {
            kind,
            threads,
            program,
            prefix_args,
            stdout_path: dir.join(format!("{kind}-{threads}.stdout")),
            stderr_path: dir.join(format!("{kind}-{threads}.stderr")),
        }
    }

    /// `kind/<T>T`, as in criterion's function ids.
    fn name(&self) -> String {
        format!("{}/{}T", self.kind, self.threads)
    }

    /// Runs the guest with `n` calls per thread and returns the time it
    /// printed for all `threads * n` calls.
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
            .arg(self.threads.to_string())
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.program.display()))?;
        let total = n.saturating_mul(self.threads);
        let limit = Duration::from_secs(30) + Duration::from_micros(total.saturating_mul(100));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{}: `{} {n}` gave no exit after {limit:?}; killed it{}",
                        self.name(),
                        self.command_line(),
                        self.stderr_tail()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{}: wait: {e}", self.name()));
                }
            }
        };
        let stdout = std::fs::read_to_string(&self.stdout_path)
            .map_err(|e| format!("read {}: {e}", self.stdout_path.display()))?;
        if !status.success() {
            return Err(format!(
                "{}: `{} {n}` failed ({status}){}",
                self.name(),
                self.command_line(),
                self.stderr_tail()
            ));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match line.map(|l| l.trim().parse::<u64>()) {
            Some(Ok(ns)) => Ok(Duration::from_nanos(ns)),
            _ => Err(format!(
                "{}: `{} {n}` printed {:?}, not the elapsed nanoseconds{}",
                self.name(),
                self.command_line(),
                stdout.chars().take(200).collect::<String>(),
                self.stderr_tail()
            )),
        }
    }

    /// One criterion sample of `iters` calls, shared among the threads:
    /// runs `N = iters / T` (at least 1) calls per thread and scales the
    /// printed time from the `T * N` calls made to `iters`. Panics with the
    /// error: for use inside a sample, after [`Runner::run`] has already
    /// worked once.
    fn sample(&self, iters: u64) -> Duration {
        let n = (iters / self.threads).max(1);
        let total = n * self.threads;
        let elapsed = match self.run(n) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        if total == iters {
            return elapsed;
        }
        let ns = elapsed.as_nanos() * u128::from(iters) / u128::from(total);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Calls per second over one run of `total` calls (split evenly).
    fn calls_per_sec(&self, total: u64) -> Result<f64, String> {
        let n = (total / self.threads).max(1);
        let elapsed = self.run(n)?;
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Err(format!("{}: printed an elapsed time of 0", self.name()));
        }
        Ok((n * self.threads) as f64 / secs)
    }

    /// The command without the `T N` arguments.
    fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.prefix_args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s.push(' ');
        s.push_str(&self.threads.to_string());
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

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sentry-bench-threads-{}-{nanos}",
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

/// The `systrap` runner for `threads` threads, if the sentry can run the
/// guest that way; otherwise says why and returns `None`. Tries the CLI
/// with `--platform systrap` first, then without (systrap being the default
/// platform).
fn systrap_runner(dir: &Path, guest: &Path, threads: u64) -> Option<Runner> {
    let sentry = PathBuf::from(env!("CARGO_BIN_EXE_sentry"));
    let forms: [&[&str]; 2] = [&["run", "--platform", "systrap", "--"], &["run", "--"]];
    let mut errors = Vec::new();
    for form in forms {
        let mut args: Vec<OsString> = form.iter().map(OsString::from).collect();
        args.push(guest.into());
        let runner = Runner::new("systrap", threads, dir, sentry.clone(), args);
        match runner.run(PROBE_CALLS) {
            Ok(_) => return Some(runner),
            Err(e) => errors.push(e),
        }
    }
    eprintln!(
        "skipping syscall_throughput/systrap/{threads}T: the sentry cannot run the guest:\n{}",
        errors.join("\n")
    );
    None
}

fn main() {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping the threads bench: gcc not found (it builds the guest program)");
        return;
    }
    let dir = match TempDir::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping the threads bench: {e}");
            return;
        }
    };
    let guest = match compile(&dir.0, "syscall_threads") {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("skipping the threads bench: cannot build the guest: {e}");
            return;
        }
    };

    // The native runs must work; a failure there is a broken environment,
    // not a sentry bug.
    let mut runners: Vec<Runner> = THREADS
        .iter()
        .map(|&t| Runner::new("native", t, &dir.0, guest.clone(), Vec::new()))
        .filter(|r| match r.run(PROBE_CALLS) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipping syscall_throughput/{}: {e}", r.name());
                false
            }
        })
        .collect();
    runners.extend(
        THREADS
            .iter()
            .filter_map(|&t| systrap_runner(&dir.0, &guest, t)),
    );

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("syscall_throughput");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            // One iteration is one getpid call, whichever thread makes it.
            .throughput(Throughput::Elements(1));
        for r in &runners {
            group.bench_function(BenchmarkId::new(r.kind, format!("{}T", r.threads)), |b| {
                b.iter_custom(|iters| r.sample(iters))
            });
        }
        group.finish();
    }
    c.final_summary();

    // One more run per configuration for a summary from this run's own
    // numbers.
    let rate = |kind: &str, threads: u64| -> Option<f64> {
        let r = runners
            .iter()
            .find(|r| r.kind == kind && r.threads == threads)?;
        match r.calls_per_sec(SUMMARY_CALLS) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("summary run failed: {e}");
                None
            }
        }
    };
    let native: Vec<Option<f64>> = THREADS.iter().map(|&t| rate("native", t)).collect();
    let systrap: Vec<Option<f64>> = THREADS.iter().map(|&t| rate("systrap", t)).collect();
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |r| format!("{r:.0}"));
    let ratio = |num: Option<f64>, den: Option<f64>| match (num, den) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_string(),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!();
    println!("syscall throughput, getpid calls/s (T*N = {SUMMARY_CALLS} calls per run, {cores} host cores):");
    println!("{:>8} {:>16} {:>16}", "threads", "native", "systrap");
    for (i, t) in THREADS.iter().enumerate() {
        println!(
            "{:>8} {:>16} {:>16}",
            format!("{t}T"),
            show(native[i]),
            show(systrap[i])
        );
    }
    println!(
        "systrap scaling: 2T/1T {}, 4T/1T {} (target: 2T/1T >= 1.7x on 2 cores)",
        ratio(systrap[1], systrap[0]),
        ratio(systrap[2], systrap[0])
    );
    println!(
        "native scaling:  2T/1T {}, 4T/1T {}",
        ratio(native[1], native[0]),
        ratio(native[2], native[0])
    );
}
