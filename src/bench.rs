//! `sentry bench`: the latency of one guest syscall, natively, at the
//! in-process SIGSYS floor and in the sandbox, measured in one run.
//!
//! ```text
//! sentry bench [--platform P] [--cpus N] [--threads N] [--syscall NAME] [--iters N] [--json]
//! ```
//!
//! The guest is built in ([`guest`]): a loop in assembly that times each
//! call with `rdtsc` and writes the raw cycle counts to its stdout. The
//! bench wraps it in a static ELF file in a temporary directory and runs it
//! three ways, one after the other:
//!
//! ```text
//!   native   the ELF, run directly              --+
//!   floor    sentry bench --floor-child ...       +-- stdout: u64 cycles,
//!            (the same loop in-process, its call  |   threads x (warm-up + iters)
//!             trapped by seccomp, see [`floor`])  |
//!   sandbox  sentry run --platform P -- the ELF --+
//! ```
//!
//! Each thread's first [`WARMUP`] samples are dropped; the rest go, as
//! nanoseconds (cycles over a TSC frequency calibrated in the same run),
//! into one hdrhistogram per runner. The report gives p50, p90, p99,
//! p99.9, max and mean per runner, and the sandbox's ratios to native and
//! to the floor; `--json` prints the same as one JSON object.
//!
//! Exit status: 0, 2 for a usage error, 1 when a run fails.

mod floor;
mod guest;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use guest::{GuestSpec, Layout};

const USAGE: &str = "usage: sentry bench [--platform systrap] [--cpus N] [--threads N] \
[--syscall getpid|gettid|getppid|clock_gettime|write|read] [--iters N] [--json]";

/// Samples dropped at the start of each thread's run.
pub const WARMUP: u64 = 1000;
/// Default measured calls per thread.
const DEFAULT_ITERS: u64 = 200_000;
/// Most threads a run may have.
const MAX_THREADS: u64 = 64;
/// How long the TSC is compared with the monotonic clock.
const CALIBRATION: Duration = Duration::from_millis(100);
/// How long a run's output may stay open after it exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(10);
/// Largest value a histogram holds (one hour in ns); larger ones saturate.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// How the measured syscall gets its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgKind {
    /// No arguments.
    None,
    /// `(CLOCK_MONOTONIC, &scratch)`.
    Clock,
    /// `(fd of /dev/null, &scratch, 1)`.
    WriteNull,
    /// `(fd of /dev/zero, &scratch, 1)`.
    ReadZero,
}

/// A syscall `sentry bench` can measure.
struct BenchSyscall {
    name: &'static str,
    nr: i64,
    args: ArgKind,
}

const SYSCALLS: &[BenchSyscall] = &[
    BenchSyscall {
        name: "getpid",
        nr: libc::SYS_getpid,
        args: ArgKind::None,
    },
    BenchSyscall {
        name: "gettid",
        nr: libc::SYS_gettid,
        args: ArgKind::None,
    },
    BenchSyscall {
        name: "getppid",
        nr: libc::SYS_getppid,
        args: ArgKind::None,
    },
    BenchSyscall {
        name: "clock_gettime",
        nr: libc::SYS_clock_gettime,
        args: ArgKind::Clock,
    },
    BenchSyscall {
        name: "write",
        nr: libc::SYS_write,
        args: ArgKind::WriteNull,
    },
    BenchSyscall {
        name: "read",
        nr: libc::SYS_read,
        args: ArgKind::ReadZero,
    },
];

impl BenchSyscall {
    fn find(name: &str) -> Option<&'static BenchSyscall> {
        SYSCALLS.iter().find(|s| s.name == name)
    }

    fn names() -> String {
        SYSCALLS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The guest's inputs for `layout`.
    fn spec(&self, layout: Layout) -> GuestSpec {
        let (args, open) = match self.args {
            ArgKind::None => ([0; 6], None),
            ArgKind::Clock => (
                [libc::CLOCK_MONOTONIC as u64, guest::SCRATCH, 0, 0, 0, 0],
                None,
            ),
            ArgKind::WriteNull => (
                [0, guest::SCRATCH, 1, 0, 0, 0],
                Some(("/dev/null", libc::O_WRONLY)),
            ),
            ArgKind::ReadZero => (
                [0, guest::SCRATCH, 1, 0, 0, 0],
                Some(("/dev/zero", libc::O_RDONLY)),
            ),
        };
        GuestSpec {
            nr: self.nr as u64,
            args,
            open,
            layout,
        }
    }
}

/// Why a run could not be measured. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A runner could not be started.
    #[error("cannot start the {runner} run ({command}): {source}")]
    Spawn {
        runner: String,
        command: String,
        source: std::io::Error,
    },
    /// A runner did not finish in time (it was killed).
    #[error("the {runner} run did not finish within {limit:?}; killed it{stderr}")]
    Timeout {
        runner: String,
        limit: Duration,
        stderr: String,
    },
    /// A runner exited unsuccessfully.
    #[error("the {runner} run ({command}) failed: {status}{stderr}")]
    Failed {
        runner: String,
        command: String,
        status: String,
        stderr: String,
    },
    /// A runner wrote the wrong amount of samples.
    #[error("the {runner} run wrote {got} bytes of samples, expected {want}{stderr}")]
    ShortOutput {
        runner: String,
        got: usize,
        want: u64,
        stderr: String,
    },
    /// The in-process floor could not be set up.
    #[error("SIGSYS floor: {0}")]
    Floor(String),
}

/// The parsed command line.
#[derive(Debug)]
struct BenchArgs {
    platform: String,
    cpus: Option<usize>,
    threads: u64,
    syscall: &'static BenchSyscall,
    iters: u64,
    json: bool,
    /// Hidden: be the floor's child process.
    floor_child: bool,
}

impl std::fmt::Debug for BenchSyscall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl BenchArgs {
    fn layout(&self) -> Layout {
        Layout {
            threads: self.threads,
            calls: self.iters + WARMUP,
        }
    }
}

fn parse_number(opt: &str, v: &str) -> Result<u64, String> {
    let digits: String = v.chars().filter(|&c| c != '_').collect();
    digits
        .parse::<u64>()
        .map_err(|_| format!("{opt}: not a number: {v:?}"))
}

fn parse(args: &[String]) -> Result<BenchArgs, String> {
    let mut platform = "systrap".to_string();
    let mut cpus = None;
    let mut threads = 1;
    let mut syscall = "getpid".to_string();
    let mut iters = DEFAULT_ITERS;
    let mut json = false;
    let mut floor_child = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (opt, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{opt} needs a value"))
        };
        match opt {
            "--platform" => platform = value()?,
            "--cpus" => {
                let v = value()?;
                let n = parse_number(opt, &v)?;
                if n == 0 || n > sentry_systrap::MAX_WORKERS as u64 {
                    return Err(format!(
                        "--cpus must be between 1 and {}",
                        sentry_systrap::MAX_WORKERS
                    ));
                }
                cpus = Some(n as usize);
            }
            "--threads" => {
                let v = value()?;
                threads = parse_number(opt, &v)?;
                if threads == 0 || threads > MAX_THREADS {
                    return Err(format!("--threads must be between 1 and {MAX_THREADS}"));
                }
            }
            "--syscall" => syscall = value()?,
            "--iters" => {
                let v = value()?;
                iters = parse_number(opt, &v)?;
                if iters == 0 {
                    return Err("--iters must be at least 1".into());
                }
            }
            "--json" if inline.is_none() => json = true,
            "--floor-child" if inline.is_none() => floor_child = true,
            _ => return Err(format!("unknown option {arg}")),
        }
        i += 1;
    }
    let Some(syscall) = BenchSyscall::find(&syscall) else {
        return Err(format!(
            "unknown syscall {syscall:?} for --syscall (available: {})",
            BenchSyscall::names()
        ));
    };
    let parsed = BenchArgs {
        platform,
        cpus,
        threads,
        syscall,
        iters,
        json,
        floor_child,
    };
    // Checked arithmetic: huge --iters must be a usage error, not a wrap.
    let bytes = (iters.checked_add(WARMUP))
        .and_then(|c| c.checked_mul(threads))
        .and_then(|c| c.checked_mul(8));
    match bytes {
        Some(b) if b <= guest::MAX_SAMPLE_BYTES => Ok(parsed),
        _ => Err(format!(
            "--iters {iters} with --threads {threads} needs more than {} MiB of samples; \
             at most {} calls per thread fit",
            guest::MAX_SAMPLE_BYTES >> 20,
            guest::MAX_SAMPLE_BYTES / 8 / threads - WARMUP
        )),
    }
}

/// Entry point of `sentry bench ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sentry bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.floor_child {
        let spec = args.syscall.spec(args.layout());
        let counts = matches!(args.syscall.args, ArgKind::WriteNull | ArgKind::ReadZero);
        let e = floor::run(&spec, counts);
        eprintln!("sentry bench: {e}");
        return ExitCode::from(1);
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentry bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// A fresh temporary directory for the guest image, removed on drop.
fn temp_dir() -> Result<tempfile::TempDir, BenchError> {
    tempfile::Builder::new()
        .prefix("sentry-bench-")
        .tempdir()
        .map_err(|source| BenchError::Io {
            what: "cannot create a temporary directory".into(),
            source,
        })
}

/// Writes the guest ELF to `dir`, mode 0755, closed before anything runs it.
fn write_guest(dir: &Path, args: &BenchArgs) -> Result<PathBuf, BenchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("bench-{}", args.syscall.name));
    let image = guest::elf_image(&args.syscall.spec(args.layout()));
    let io = |source| BenchError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&path)
        .map_err(io)?;
    f.write_all(&image).map_err(io)?;
    drop(f);
    Ok(path)
}

/// Reads the time-stamp counter, after earlier instructions completed.
fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: lfence and rdtsc touch no memory and only the named registers.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// TSC ticks per second, against the monotonic clock over [`CALIBRATION`].
fn tsc_hz() -> f64 {
    let t0 = Instant::now();
    let c0 = rdtsc();
    while t0.elapsed() < CALIBRATION {
        std::hint::spin_loop();
    }
    let c1 = rdtsc();
    let dt = t0.elapsed();
    c1.wrapping_sub(c0) as f64 / dt.as_secs_f64()
}

/// Whether the CPU says its TSC ticks at a constant rate.
fn tsc_is_constant() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains(" constant_tsc") && s.contains(" nonstop_tsc"))
        .unwrap_or(true)
}

/// One way of running the guest.
struct Runner {
    /// Its row in the report: "native", "floor" or the platform name.
    name: String,
    /// What error messages call it.
    label: String,
    command: Command,
}

impl Runner {
    fn describe(&self) -> String {
        let mut s = self.command.get_program().to_string_lossy().into_owned();
        for a in self.command.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Reads all of `r` on a thread; the result arrives on the channel.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// `"; stderr: ..."` with the last lines of `err`, or nothing.
fn stderr_suffix(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let lines: Vec<&str> = text.trim().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(8)..];
    format!("; stderr: {}", tail.join(" | "))
}

/// Describes an exit status, naming the errno a failing guest exits with.
fn describe_status(status: ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        return format!("killed by signal {sig}");
    }
    let code = status.code().unwrap_or(-1);
    if String::from_utf8_lossy(stderr).contains("sentry bench guest:") {
        let errno = std::io::Error::from_raw_os_error(code);
        return format!("exit status {code} (the guest's errno: {errno})");
    }
    format!("exit status {code}")
}

/// Runs one runner to completion and returns its stdout (the samples).
/// A run that outlives `limit` is killed and reaped.
fn collect(runner: &mut Runner, want: u64, limit: Duration) -> Result<Vec<u8>, BenchError> {
    let command = runner.describe();
    let mut child = runner
        .command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            runner: runner.label.clone(),
            command: command.clone(),
            source,
        })?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError::Io {
            what: format!("starting the {} run", runner.label),
            source: std::io::Error::other("the child has no stdout or stderr pipe"),
        });
    };
    let out = drain(out);
    let err = drain(err);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(2)),
            other => {
                // Too slow, or try_wait failed: kill by pid and reap. A
                // sentry's stub processes die with it (PDEATHSIG).
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.recv_timeout(OUTPUT_GRACE).unwrap_or_default();
                if let Err(e) = other {
                    return Err(BenchError::Io {
                        what: format!("waiting for the {} run", runner.label),
                        source: e,
                    });
                }
                return Err(BenchError::Timeout {
                    runner: runner.label.clone(),
                    limit,
                    stderr: stderr_suffix(&stderr),
                });
            }
        }
    };
    let stdout = out.recv_timeout(OUTPUT_GRACE);
    let stderr = err.recv_timeout(OUTPUT_GRACE).unwrap_or_default();
    if !status.success() {
        return Err(BenchError::Failed {
            runner: runner.label.clone(),
            command,
            status: describe_status(status, &stderr),
            stderr: stderr_suffix(&stderr),
        });
    }
    let stdout = stdout.unwrap_or_default();
    if stdout.len() as u64 != want {
        return Err(BenchError::ShortOutput {
            runner: runner.label.clone(),
            got: stdout.len(),
            want,
            stderr: stderr_suffix(&stderr),
        });
    }
    Ok(stdout)
}

/// The latency distribution of one runner, in nanoseconds.
struct Summary {
    count: u64,
    min: u64,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// Drops each thread's warm-up and summarises the rest in ns.
fn summarise(samples: &[u8], layout: Layout, ns_per_cycle: f64) -> Summary {
    let mut hist = match Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3) {
        Ok(h) => h,
        // Constant, valid bounds: cannot fail.
        Err(e) => unreachable!("histogram bounds: {e}"),
    };
    let per_thread = (layout.calls * 8) as usize;
    for thread in samples.chunks_exact(per_thread) {
        for raw in thread.chunks_exact(8).skip(WARMUP as usize) {
            let mut word = [0u8; 8];
            word.copy_from_slice(raw);
            let cycles = u64::from_le_bytes(word);
            // A "negative" delta (a counter step back) counts as 0.
            let cycles = if cycles > i64::MAX as u64 { 0 } else { cycles };
            hist.saturating_record((cycles as f64 * ns_per_cycle).round() as u64);
        }
    }
    Summary {
        count: hist.len(),
        min: hist.min(),
        mean: hist.mean(),
        p50: hist.value_at_quantile(0.50),
        p90: hist.value_at_quantile(0.90),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// `x` rounded to `decimals` places (NaN stays NaN: JSON's null).
fn rounded(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn json_summary(s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "count": s.count,
        "min_ns": s.min,
        "mean_ns": rounded(s.mean, 1),
        "p50_ns": s.p50,
        "p90_ns": s.p90,
        "p99_ns": s.p99,
        "p999_ns": s.p999,
        "max_ns": s.max,
    })
}

fn bench(args: &BenchArgs) -> Result<(), BenchError> {
    if !tsc_is_constant() {
        eprintln!(
            "sentry bench: warning: this CPU does not report constant_tsc and nonstop_tsc; \
             cycle counts may not convert to time reliably"
        );
    }
    let dir = temp_dir()?;
    let elf = write_guest(dir.path(), args)?;
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "cannot find the sentry executable".into(),
        source,
    })?;

    let mut native = Command::new(&elf);
    native.current_dir(dir.path());
    let mut floor = Command::new(&exe);
    floor
        .args(["bench", "--floor-child", "--syscall", args.syscall.name])
        .arg(format!("--iters={}", args.iters))
        .arg(format!("--threads={}", args.threads))
        .current_dir(dir.path());
    let mut sandbox = Command::new(&exe);
    sandbox.args(["run", "--platform", &args.platform]);
    if let Some(n) = args.cpus {
        sandbox.args(["--cpus".to_string(), n.to_string()]);
    }
    sandbox.arg("--").arg(&elf).current_dir(dir.path());
    let mut runners = [
        Runner {
            name: "native".into(),
            label: "native".into(),
            command: native,
        },
        Runner {
            name: "floor".into(),
            label: "SIGSYS floor".into(),
            command: floor,
        },
        Runner {
            name: args.platform.clone(),
            label: format!("sandboxed (platform {})", args.platform),
            command: sandbox,
        },
    ];

    let layout = args.layout();
    let calls = layout.threads * layout.calls;
    // Generous: 50 µs a call is far slower than any platform should be.
    let limit = Duration::from_secs(60) + Duration::from_micros(calls.saturating_mul(50));
    let hz = tsc_hz();
    let ns_per_cycle = 1e9 / hz;
    let mut summaries = Vec::new();
    for r in &mut runners {
        let samples = collect(r, layout.sample_bytes(), limit)?;
        summaries.push(summarise(&samples, layout, ns_per_cycle));
    }
    let [nat, flo, sbx] = &summaries[..] else {
        unreachable!("three runners")
    };
    let p50_native = ratio(sbx.p50 as f64, nat.p50 as f64);
    let p50_floor = ratio(sbx.p50 as f64, flo.p50 as f64);
    let mean_native = ratio(sbx.mean, nat.mean);
    let mean_floor = ratio(sbx.mean, flo.mean);

    if args.json {
        let report = serde_json::json!({
            "platform": args.platform,
            "syscall": args.syscall.name,
            "threads": args.threads,
            "iters": args.iters,
            "warmup": WARMUP,
            "tsc_ghz": rounded(hz / 1e9, 4),
            "native": json_summary(nat),
            "floor": json_summary(flo),
            "sandbox": json_summary(sbx),
            "ratios": {
                "p50_vs_native": rounded(p50_native, 3),
                "p50_vs_floor": rounded(p50_floor, 3),
                "mean_vs_native": rounded(mean_native, 3),
                "mean_vs_floor": rounded(mean_floor, 3),
            },
        });
        println!("{report}");
        return Ok(());
    }

    println!(
        "platform {}, syscall {}, threads {}, {} calls per thread (after {} warm-up), TSC {:.3} GHz",
        args.platform,
        args.syscall.name,
        args.threads,
        args.iters,
        WARMUP,
        hz / 1e9
    );
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9}   (ns)",
        "runner", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for (r, s) in runners.iter().zip(&summaries) {
        println!(
            "{:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9.1}",
            r.name, s.count, s.p50, s.p90, s.p99, s.p999, s.max, s.mean
        );
    }
    let p = &args.platform;
    println!(
        "{p}/native p50 {} (mean {}), {p}/floor p50 {} (mean {})",
        human_ratio(p50_native),
        human_ratio(mean_native),
        human_ratio(p50_floor),
        human_ratio(mean_floor)
    );
    Ok(())
}

fn human_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "n/a".into()
    }
}

/// Held by unit tests that write an executable or start processes: a fork
/// in one test while another holds the new guest open for writing would
/// make its exec fail with ETXTBSY.
#[cfg(test)]
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
        SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn args(list: &[&str]) -> Result<BenchArgs, String> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_options_in_both_forms() {
        let a = args(&[
            "--platform=ptrace",
            "--threads",
            "4",
            "--iters=1_000",
            "--json",
        ])
        .expect("valid");
        assert_eq!(a.platform, "ptrace");
        assert_eq!(a.threads, 4);
        assert_eq!(a.iters, 1000);
        assert!(a.json);
        assert_eq!(a.syscall.name, "getpid");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--syscall", "nosuch"][..],
            &["--iters", "0"],
            &["--iters", "-5"],
            &["--iters", "99999999999999999999"],
            &["--iters", "18446744073709551615"],
            &["--threads", "0"],
            &["--threads", "65"],
            &["--threads", "64", "--iters", "1000000"],
            &["--iters"],
            &["--json=1"],
            &["--bogus"],
        ] {
            assert!(args(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// The guest, run natively with fd 1 closed: its final write fails, it
    /// says so on fd 2 and exits with the errno, which the report names.
    #[test]
    fn guest_reports_a_failed_write_with_its_errno() {
        use std::os::unix::process::CommandExt;
        let _serial = spawn_lock();
        let a = args(&["--iters", "10", "--threads", "2"]).expect("valid");
        let dir = temp_dir().expect("temp dir");
        let elf = write_guest(dir.path(), &a).expect("guest written");
        let mut cmd = Command::new(&elf);
        // SAFETY: close is async-signal-safe and touches no Rust state.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        let out = cmd.stderr(Stdio::piped()).output().expect("run the guest");
        assert_eq!(out.status.code(), Some(libc::EBADF), "{out:?}");
        let why = describe_status(out.status, &out.stderr);
        assert!(
            why.contains("Bad file descriptor"),
            "status described as {why:?}"
        );
    }

    /// The guest, run natively, writes every thread's samples.
    #[test]
    fn guest_writes_all_samples_natively() {
        let _serial = spawn_lock();
        let a = args(&["--iters", "10", "--threads", "3", "--syscall", "write"]).expect("valid");
        let dir = temp_dir().expect("temp dir");
        let elf = write_guest(dir.path(), &a).expect("guest written");
        let mut runner = Runner {
            name: "native".into(),
            label: "native".into(),
            command: Command::new(&elf),
        };
        let layout = a.layout();
        let samples = collect(&mut runner, layout.sample_bytes(), Duration::from_secs(30))
            .expect("native run");
        let s = summarise(&samples, layout, 1.0);
        assert_eq!(s.count, 30);
        assert!(s.min > 0);
    }

    #[test]
    fn summary_drops_warm_up_per_thread() {
        let layout = Layout {
            threads: 2,
            calls: WARMUP + 3,
        };
        let mut raw = Vec::new();
        for t in 0..2u64 {
            for i in 0..layout.calls {
                let v = if i < WARMUP { 1_000_000 } else { 100 + t };
                raw.extend_from_slice(&v.to_le_bytes());
            }
        }
        let s = summarise(&raw, layout, 1.0);
        assert_eq!(s.count, 6);
        assert_eq!(s.min, 100);
        assert_eq!(s.max, 101);
    }
}
