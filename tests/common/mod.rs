//! Helpers shared by the integration tests: temporary directories, running a
//! command with a timeout (and checking it left no processes behind),
//! compiling the C guests in `tests/guests/`, and running one program both
//! natively and under the sentry.
//!
//! Every child process of a test binary is started through [`run`], which
//! registers it; the test process is made a child subreaper, so stub processes
//! a sentry leaves behind when it exits are re-parented to the test process,
//! where [`assert_no_leftovers`] finds them (and kills them, by pid).
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long any one child may run before the test kills it and fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long stub processes may take to die after their sentry exited.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// The sentry binary built by cargo for this test run.
pub fn sentry() -> &'static str {
    env!("CARGO_BIN_EXE_sentry")
}

/// The platforms every sandboxed test runs on.
pub const PLATFORMS: [&str; 2] = ["systrap", "ptrace"];

thread_local! {
    static PLATFORM: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The platform the current test runs the sentry on (`--platform`): the one
/// [`both_platforms!`] chose, else `$SENTRY_TEST_PLATFORM`, else systrap.
pub fn platform() -> &'static str {
    PLATFORM.with(|p| p.get()).unwrap_or_else(|| {
        match std::env::var("SENTRY_TEST_PLATFORM").as_deref() {
            Ok("ptrace") => "ptrace",
            _ => "systrap",
        }
    })
}

/// Runs `f` with sandboxed runs on `platform`.
pub fn with_platform<R>(platform: &'static str, f: impl FnOnce() -> R) -> R {
    PLATFORM.with(|p| p.set(Some(platform)));
    let r = f();
    PLATFORM.with(|p| p.set(None));
    r
}

/// Defines a test whose body runs once per platform: `name::systrap` and
/// `name::ptrace`, so a behaviour difference between them fails a test.
#[macro_export]
macro_rules! both_platforms {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body() $body

            #[test]
            $(#[$attr])*
            fn systrap() {
                $crate::common::with_platform("systrap", body)
            }

            #[test]
            $(#[$attr])*
            fn ptrace() {
                $crate::common::with_platform("ptrace", body)
            }
        }
    };
}

/// Where the C guests live.
pub fn guest_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(name)
}

/// A fixed, small environment for native and sandboxed runs alike, so their
/// outputs can be compared byte for byte.
pub fn test_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LC_ALL", "C"),
        ("HOME", "/"),
        ("TZ", "UTC"),
    ]
}

// ---------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir {
    _dir: tempfile::TempDir,
    /// Canonical, so native getcwd() and the path agree.
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sentry-test-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {tag}: {e}"));
        let path = dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| dir.path().to_path_buf());
        TempDir { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// Writes a file (relative to the dir) and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }
}

// ---------------------------------------------------------------------------
// Running children

/// What a finished child did.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// The exit code as a shell reports it: the code, or 128+N for signal N.
    pub fn code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => -1,
        }
    }

    /// True when the process itself (not its guest) was killed by a signal.
    pub fn killed_by_signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// A description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?} (code {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.code(),
            truncate(&self.stdout_str(), 4000),
            truncate(&self.stderr_str(), 4000)
        )
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes in all]", &s[..end], s.len())
}

/// Pids of the children this test process started and has not reaped yet.
fn registry() -> MutexGuard<'static, HashSet<u32>> {
    static REG: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    let reg = REG.get_or_init(|| {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(
            r,
            0,
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
        Mutex::new(HashSet::new())
    });
    reg.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads everything from `r` on a thread; the result arrives on the channel.
fn drain<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` to completion with `stdin` as its input (or /dev/null), and
/// its stdout and stderr captured. The child runs in its own process group;
/// if it has not finished after [`TIMEOUT`] the whole group is killed and the
/// test fails.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    run_with_timeout(cmd, stdin, TIMEOUT)
}

pub fn run_with_timeout(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    try_run_with_timeout(cmd, stdin, timeout).unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// Like [`run`], but returns the error when the program cannot be started
/// at all (execve failed: not found, not executable, bad format...).
pub fn try_run(cmd: &mut Command, stdin: Option<&[u8]>) -> std::io::Result<Output> {
    try_run_with_timeout(cmd, stdin, TIMEOUT)
}

pub fn try_run_with_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let what = format!("{cmd:?}");
    let mut child = {
        let mut reg = registry();
        let child = cmd.spawn()?;
        reg.insert(child.id());
        child
    };
    let pid = child.id();
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            // The child may exit without reading it all (EPIPE): fine.
            let _ = w.write_all(&data);
        });
    }
    let out_rx = drain(child.stdout.take().unwrap());
    let err_rx = drain(child.stderr.take().unwrap());

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        if Instant::now() >= deadline {
            // SAFETY: kill with plain integers; the group is the child's own
            // (process_group(0)), which exists until we reap the child.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait();
            registry().remove(&pid);
            let err = err_rx
                .recv_timeout(Duration::from_secs(2))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let leftovers = kill_leftovers();
            panic!(
                "TIMEOUT: {what} did not finish within {timeout:?}; killed it.\n\
                 leftover processes killed: {leftovers:?}\nstderr so far:\n{}",
                truncate(&err, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    registry().remove(&pid);

    // The pipes close when every holder is gone: the child and anything it
    // left behind. Waiting here long would mean a leftover holds them.
    let _ = deadline;
    let grace = LEFTOVER_GRACE;
    let stdout = out_rx.recv_timeout(grace);
    let stderr = err_rx.recv_timeout(grace);
    match (stdout, stderr) {
        (Ok(stdout), Ok(stderr)) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        _ => {
            let leftovers = kill_leftovers();
            panic!(
                "{what} exited ({status:?}) but its stdout/stderr stayed open: \
                 processes it started are still running; killed {leftovers:?}"
            );
        }
    }
}

/// One process in /proc.
#[derive(Debug)]
struct ProcInfo {
    pid: i32,
    comm: String,
    state: char,
    ppid: i32,
}

fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        comm,
        state,
        ppid,
    })
}

/// Processes whose parent is this test process and that no test started
/// directly: orphans re-parented to us (we are a subreaper). Zombies among
/// them are reaped here and not returned.
fn orphans(reg: &HashSet<u32>) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(info) = proc_info(pid) else { continue };
        if info.ppid != me || reg.contains(&(pid as u32)) {
            continue;
        }
        if info.state == 'Z' || info.state == 'X' {
            let mut st = 0;
            // SAFETY: waitpid on a specific pid that is our (unregistered)
            // child, so no Child handle of a test can be waiting for it.
            unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            continue;
        }
        found.push(info);
    }
    found
}

/// Kills (by pid) and reaps every orphan re-parented to this process.
fn kill_leftovers() -> Vec<String> {
    let reg = registry();
    let found = orphans(&reg);
    let mut names = Vec::new();
    for p in &found {
        // SAFETY: kill/waitpid with plain integers, on our own child.
        unsafe {
            libc::kill(p.pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(p.pid, &mut st, 0);
        }
        names.push(format!("{} ({})", p.pid, p.comm));
    }
    names
}

/// Fails the test if processes a finished child started are still alive
/// after a grace period (they are killed first).
pub fn assert_no_leftovers(what: &str) {
    let deadline = Instant::now() + LEFTOVER_GRACE;
    loop {
        let found = orphans(&registry());
        if found.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let killed = kill_leftovers();
            panic!(
                "{what}: processes were left behind after the sentry exited: {found:?} \
                 (killed {killed:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Native and sandboxed runs

/// Builds a command with the fixed test environment and working directory.
fn base_command(program: impl AsRef<OsStr>, cwd: Option<&Path>) -> Command {
    let mut c = Command::new(program);
    c.env_clear().envs(test_env());
    c.current_dir(cwd.unwrap_or(Path::new("/")));
    c
}

/// Options for a run.
#[derive(Default, Clone)]
pub struct RunOpts<'a> {
    pub stdin: Option<&'a [u8]>,
    pub cwd: Option<&'a Path>,
    pub env: Vec<(String, String)>,
    /// Extra sentry options before `--`.
    pub sentry_flags: Vec<String>,
}

/// Runs `program args` directly on the host.
pub fn run_native<S: AsRef<OsStr>>(program: &Path, args: &[S], opts: &RunOpts) -> Output {
    let mut c = base_command(program, opts.cwd);
    c.args(args);
    c.envs(opts.env.iter().map(|(k, v)| (k, v)));
    // A sandboxed guest starts with stdio only; give the native run the same
    // table, whatever descriptors the harness (or CI) leaks into us.
    // SAFETY: close_range is async-signal-safe and touches no Rust state.
    unsafe {
        c.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    run(&mut c, opts.stdin)
}

/// Runs `sentry run [flags] -- program args` and checks that nothing was
/// left behind and that the sentry did not panic.
pub fn run_sentry<S: AsRef<OsStr>>(program: &Path, args: &[S], opts: &RunOpts) -> Output {
    let mut c = base_command(sentry(), opts.cwd);
    c.arg("run");
    if !opts
        .sentry_flags
        .iter()
        .any(|f| f.starts_with("--platform"))
    {
        c.args(["--platform", platform()]);
    }
    c.args(&opts.sentry_flags).arg("--").arg(program);
    c.args(args);
    c.envs(opts.env.iter().map(|(k, v)| (k, v)));
    let what = format!("{c:?}");
    let out = run(&mut c, opts.stdin);
    assert_no_leftovers(&what);
    assert_sentry_sane(&what, &out);
    out
}

/// The sentry itself must never panic or die of a signal, whatever the guest does.
pub fn assert_sentry_sane(what: &str, out: &Output) {
    assert!(
        out.killed_by_signal().is_none(),
        "{what}: the sentry itself was killed by a signal\n{}",
        out.describe()
    );
    let err = out.stderr_str();
    assert!(
        !err.contains("panicked at") && !err.contains("RUST_BACKTRACE"),
        "{what}: the sentry panicked\n{}",
        out.describe()
    );
}

/// Runs the program natively and under the sentry; asserts equal stdout and
/// exit codes; returns (native, sentry).
pub fn compare<S: AsRef<OsStr>>(program: &Path, args: &[S], opts: &RunOpts) -> (Output, Output) {
    let native = run_native(program, args, opts);
    let sandboxed = run_sentry(program, args, opts);
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let what = format!("{} {argv:?}", program.display());
    if native.stdout != sandboxed.stdout {
        panic!(
            "{what}: stdout differs between the native run and the sentry\n\
             === native ===\n{}\n=== sentry ===\n{}\n{}",
            native.describe(),
            sandboxed.describe(),
            first_difference(&native.stdout_str(), &sandboxed.stdout_str())
        );
    }
    assert_eq!(
        native.code(),
        sandboxed.code(),
        "{what}: exit codes differ\n=== native ===\n{}\n=== sentry ===\n{}",
        native.describe(),
        sandboxed.describe()
    );
    (native, sandboxed)
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (la, lb)) in a.lines().zip(b.lines()).enumerate() {
        if la != lb {
            return format!(
                "first differing line {}:\n  native: {la:?}\n  sentry: {lb:?}",
                i + 1
            );
        }
    }
    format!(
        "one output is a prefix of the other ({} vs {} lines)",
        a.lines().count(),
        b.lines().count()
    )
}

// ---------------------------------------------------------------------------
// Skipping and compiling

/// /bin/busybox, or None after printing a skip message.
pub fn busybox(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIP {test}: /bin/busybox is missing (install the busybox-static package)");
        None
    }
}

/// How to build a C guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `gcc -O2 -static` (glibc, non-PIE).
    Static,
    /// `gcc -O2 -static-pie` (glibc, self-relocating).
    StaticPie,
    /// `musl-gcc -O2 -static`.
    Musl,
}

impl Flavor {
    fn compiler(self) -> &'static str {
        match self {
            Flavor::Static | Flavor::StaticPie => "gcc",
            Flavor::Musl => "/usr/bin/musl-gcc",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Flavor::Static => &["-O2", "-static"],
            Flavor::StaticPie => &["-O2", "-fPIE", "-static-pie"],
            Flavor::Musl => &["-O2", "-static"],
        }
    }
}

fn have_program(p: &str) -> bool {
    if p.contains('/') {
        return Path::new(p).is_file();
    }
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/bin:/bin".into())
        .split(':')
        .any(|d| Path::new(d).join(p).is_file())
}

/// Compiles `tests/guests/<source>` into `dir`. Returns None (after printing
/// a skip message) when the compiler for `flavor` is not installed; panics
/// when it is installed but fails.
pub fn compile(dir: &TempDir, source: &str, flavor: Flavor) -> Option<PathBuf> {
    let cc = flavor.compiler();
    if !have_program(cc) {
        eprintln!("SKIP: {cc} is not installed; cannot build {source} ({flavor:?})");
        return None;
    }
    let src = guest_source(source);
    let stem = source.trim_end_matches(".c");
    let out = dir.join(format!("{stem}-{flavor:?}").to_lowercase());
    let mut c = Command::new(cc);
    c.args(flavor.flags())
        .args(["-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .current_dir(dir.path());
    let res = run(&mut c, None);
    assert!(
        res.status.success() && out.is_file(),
        "compiling {} with {cc} {:?} failed\n{}",
        src.display(),
        flavor.flags(),
        res.describe()
    );
    Some(out)
}

/// Compiles with `gcc -O2 -static`, which the tests require.
pub fn compile_static(dir: &TempDir, source: &str) -> PathBuf {
    compile(dir, source, Flavor::Static)
        .unwrap_or_else(|| panic!("gcc is required to build the test guest {source}"))
}

/// Asserts `hay` contains every one of `needles` (case-insensitive).
pub fn assert_contains_all(what: &str, hay: &str, needles: &[&str]) {
    let lower = hay.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "{what}: expected {n:?} in:\n{hay}"
        );
    }
}

// ---------------------------------------------------------------------------
// A sentry running in the background

/// A sentry started with [`spawn_sentry`]; killed (SIGKILL, by pid) and
/// reaped on drop if still running.
pub struct Background {
    pub child: std::process::Child,
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    stderr_rx: mpsc::Receiver<Vec<u8>>,
    done: bool,
}

impl Background {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads stdout lines until one equals `line` (fails on EOF or after
    /// [`TIMEOUT`]).
    pub fn wait_for_line(&mut self, line: &str) {
        use std::io::BufRead;
        let pid = self.child.id();
        let mut reader = self.stdout.take().expect("stdout is being read");
        let want = line.to_string();
        let (tx, rx) = mpsc::channel();
        // Read on a thread so a hung sentry cannot hang the test; the thread
        // ends at EOF, at the latest when Drop kills the sentry.
        std::thread::spawn(move || {
            let mut l = String::new();
            loop {
                l.clear();
                match reader.read_line(&mut l) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(_) if l.trim_end() == want => {
                        let _ = tx.send(Some(reader));
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(Some(r)) => self.stdout = Some(r),
            Ok(None) => panic!("sentry {pid}: stdout ended before the line {line:?}"),
            Err(_) => panic!("TIMEOUT: sentry {pid} did not print {line:?} within {TIMEOUT:?}"),
        }
    }

    /// Sends `sig` to the sentry process (by pid).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with plain integers, on our unreaped child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits (up to [`TIMEOUT`]) for the sentry to exit; returns its status
    /// and stderr, after checking nothing was left behind.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        let pid = self.child.id();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                drop(self);
                let killed = kill_leftovers();
                panic!("TIMEOUT: sentry {pid} did not exit within {TIMEOUT:?} (killed; leftovers {killed:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.done = true;
        registry().remove(&pid);
        assert_no_leftovers(&format!("sentry {pid}"));
        let err = self
            .stderr_rx
            .recv_timeout(LEFTOVER_GRACE)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| panic!("sentry {pid}: stderr stayed open after it exited"));
        (status, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.done {
            let pid = self.child.id();
            // SAFETY: kill with plain integers; the group is the child's own.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = self.child.wait();
            registry().remove(&pid);
        }
    }
}

/// Starts `sentry run -- program args` in the background with stdout piped.
pub fn spawn_sentry<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Background {
    let mut c = base_command(sentry(), None);
    c.arg("run")
        .args(["--platform", platform()])
        .arg("--")
        .arg(program)
        .args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = {
        let mut reg = registry();
        let child = c.spawn().expect("cannot start the sentry");
        reg.insert(child.id());
        child
    };
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let stderr_rx = drain(child.stderr.take().unwrap());
    Background {
        child,
        stdout: Some(stdout),
        stderr_rx,
        done: false,
    }
}
