//! busybox-static applets under the sentry, compared with native runs.
//!
//! Each test runs the same `/bin/busybox APPLET ARGS` directly and under
//! `sentry run --`, and compares stdout and the exit code. Tests print a skip
//! message and pass when /bin/busybox is not installed.

#[macro_use]
mod common;

use common::{busybox, compare, run_sentry, RunOpts, TempDir};

/// Native vs sentry for one applet invocation; returns the sentry's stdout.
fn check(test: &str, args: &[&str], opts: &RunOpts) -> Option<String> {
    let bb = busybox(test)?;
    let (native, sandboxed) = compare(&bb, args, opts);
    let _ = native;
    Some(sandboxed.stdout_str())
}

fn lines(n: usize) -> String {
    (1..=n)
        .map(|i| format!("line {i}: the quick brown fox {}\n", i * 7919 % 1000))
        .collect()
}

both_platforms! {
fn echo_hello_world() {
    if let Some(out) = check("echo", &["echo", "hello", "world"], &RunOpts::default()) {
        assert_eq!(out, "hello world\n");
    }
}
}

both_platforms! {
fn cat_file() {
    let dir = TempDir::new("bb-cat");
    let f = dir.write("input.txt", lines(20));
    let f = f.to_str().unwrap();
    if let Some(out) = check("cat", &["cat", f], &RunOpts::default()) {
        assert_eq!(out, lines(20));
    }
}
}

both_platforms! {
fn cat_large_file() {
    // Bigger than any single read or pipe buffer: exercises partial writes.
    let dir = TempDir::new("bb-cat-large");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let f = dir.write("big.bin", &data);
    if let Some(bb) = busybox("cat_large_file") {
        let (_, s) = compare(&bb, &["cat", f.to_str().unwrap()], &RunOpts::default());
        assert!(s.stdout == data, "cat of a 3 MB file changed its bytes");
    }
}
}

both_platforms! {
fn wc_file() {
    let dir = TempDir::new("bb-wc");
    let f = dir.write("input.txt", lines(57));
    let f = f.to_str().unwrap();
    if let Some(out) = check("wc", &["wc", f], &RunOpts::default()) {
        assert!(out.contains(" 57 "), "wc line count: {out}");
        assert!(out.contains(f), "{out}");
    }
}
}

both_platforms! {
fn head_n_3() {
    let dir = TempDir::new("bb-head");
    let f = dir.write("input.txt", lines(10));
    if let Some(out) = check(
        "head",
        &["head", "-n", "3", f.to_str().unwrap()],
        &RunOpts::default(),
    ) {
        assert_eq!(out, lines(3));
    }
}
}

both_platforms! {
fn sort_stdin() {
    let input = b"pear\napple\nzucchini\nbanana\napple\nCherry\n";
    let opts = RunOpts {
        stdin: Some(input),
        ..Default::default()
    };
    if let Some(out) = check("sort", &["sort"], &opts) {
        assert_eq!(out, "Cherry\napple\napple\nbanana\npear\nzucchini\n");
    }
}
}

both_platforms! {
fn sort_large_stdin() {
    // More input than one pipe buffer holds.
    let input: String = (0..20000u32)
        .map(|i| format!("{:08}\n", i.wrapping_mul(2654435761) % 100_000_000))
        .collect();
    let opts = RunOpts {
        stdin: Some(input.as_bytes()),
        ..Default::default()
    };
    if let Some(out) = check("sort_large_stdin", &["sort", "-n"], &opts) {
        assert_eq!(out.lines().count(), 20000);
    }
}
}

both_platforms! {
fn md5sum_file() {
    let dir = TempDir::new("bb-md5");
    let f = dir.write("data.txt", "The quick brown fox jumps over the lazy dog");
    let f = f.to_str().unwrap();
    if let Some(out) = check("md5sum", &["md5sum", f], &RunOpts::default()) {
        assert_eq!(out, format!("9e107d9d372bb6826bd81d3542a419d6  {f}\n"));
    }
}
}

both_platforms! {
fn sha256sum_stdin() {
    let opts = RunOpts {
        stdin: Some(b"abc"),
        ..Default::default()
    };
    if let Some(out) = check("sha256sum", &["sha256sum"], &opts) {
        assert!(
            out.starts_with("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{out}"
        );
    }
}
}

both_platforms! {
fn ls_root() {
    if let Some(out) = check("ls /", &["ls", "/"], &RunOpts::default()) {
        assert!(out.lines().any(|l| l == "bin"), "{out}");
    }
}
}

both_platforms! {
fn ls_long_temp_dir() {
    let dir = TempDir::new("bb-ls");
    dir.write("a.txt", "aaa");
    dir.write("b.txt", "bbbbbb");
    dir.write("sub/c.txt", "c");
    if let Some(out) = check(
        "ls -l",
        &["ls", "-l", "--full-time", dir.path().to_str().unwrap()],
        &RunOpts::default(),
    ) {
        assert!(out.contains("a.txt") && out.contains("sub"), "{out}");
    }
}
}

both_platforms! {
fn uname_a() {
    if let Some(out) = check("uname -a", &["uname", "-a"], &RunOpts::default()) {
        assert!(out.contains("x86_64"), "{out}");
    }
}
}

both_platforms! {
fn sh_pid_is_1_and_exit_7() {
    let Some(bb) = busybox("sh echo $$") else {
        return;
    };
    let args = ["sh", "-c", "echo $$; exit 7"];
    let s = run_sentry(&bb, &args, &RunOpts::default());
    assert_eq!(s.stdout_str(), "1\n", "{}", s.describe());
    assert_eq!(s.code(), 7, "{}", s.describe());
    // Natively the pid differs, but the exit code is the same.
    let n = common::run_native(&bb, &args, &RunOpts::default());
    assert_eq!(n.code(), 7);
}
}

both_platforms! {
fn sh_exit_3() {
    if let Some(out) = check("sh exit 3", &["sh", "-c", "exit 3"], &RunOpts::default()) {
        assert_eq!(out, "");
    }
}
}

both_platforms! {
fn sh_builtins() {
    let script = "x=1; for i in 1 2 3 4 5; do x=$((x*2)); done; echo x=$x; \
                  if [ -d / ] && [ ! -e /nonexistent ]; then echo tests-ok; fi; \
                  printf '%s-%d\\n' abc 42; cd /usr && pwd; \
                  exit $((x % 7))";
    // (The `read` builtin is covered in tests/pipes.rs.)
    if let Some(out) = check("sh builtins", &["sh", "-c", script], &RunOpts::default()) {
        assert_eq!(out, "x=32\ntests-ok\nabc-42\n/usr\n");
    }
}
}

both_platforms! {
fn true_exits_0() {
    if let Some(out) = check("true", &["true"], &RunOpts::default()) {
        assert_eq!(out, "");
    }
}
}

both_platforms! {
fn false_exits_1() {
    let Some(bb) = busybox("false") else { return };
    let (_, s) = compare(&bb, &["false"], &RunOpts::default());
    assert_eq!(s.code(), 1);
}
}

both_platforms! {
fn seq_and_tr() {
    check("seq", &["seq", "1", "3", "1000"], &RunOpts::default());
    let opts = RunOpts {
        stdin: Some(b"Hello, Sandbox!\n"),
        ..Default::default()
    };
    if let Some(out) = check("tr", &["tr", "a-z", "A-Z"], &opts) {
        assert_eq!(out, "HELLO, SANDBOX!\n");
    }
}
}

both_platforms! {
fn pwd_in_cwd_and_env() {
    let dir = TempDir::new("bb-pwd");
    let opts = RunOpts {
        cwd: Some(dir.path()),
        env: vec![("SENTRY_TEST_VAR".into(), "some value with spaces".into())],
        ..Default::default()
    };
    if let Some(out) = check("pwd", &["pwd"], &opts) {
        assert_eq!(out.trim_end(), dir.path().to_str().unwrap());
    }
    if let Some(out) = check("env", &["env"], &opts) {
        assert!(
            out.contains("SENTRY_TEST_VAR=some value with spaces\n"),
            "{out}"
        );
    }
}
}

both_platforms! {
fn missing_file_error() {
    // The applet's own error path: stderr message and exit 1.
    let Some(bb) = busybox("cat missing") else {
        return;
    };
    let (_, s) = compare(&bb, &["cat", "/nonexistent/file"], &RunOpts::default());
    assert_eq!(s.code(), 1);
    assert!(
        s.stderr_str().contains("No such file or directory"),
        "{}",
        s.describe()
    );
}
}

both_platforms! {
fn sentry_options() {
    // The same applet with each run option gives the same result.
    let Some(bb) = busybox("sentry options") else {
        return;
    };
    for flags in [
        vec!["--cpus", "1"],
        vec!["--no-spin"],
        vec!["--platform", "systrap", "--cpus", "2"],
    ] {
        let opts = RunOpts {
            sentry_flags: flags.iter().map(|s| s.to_string()).collect(),
            stdin: Some(b"b\na\n"),
            ..Default::default()
        };
        let s = run_sentry(&bb, &["sort"], &opts);
        assert_eq!(s.stdout_str(), "a\nb\n", "{flags:?}: {}", s.describe());
        assert_eq!(s.code(), 0, "{flags:?}: {}", s.describe());
    }
}
}

both_platforms! {
fn strace_option_traces_syscalls() {
    let Some(bb) = busybox("--strace") else {
        return;
    };
    let opts = RunOpts {
        sentry_flags: vec!["--strace".into()],
        ..Default::default()
    };
    let s = run_sentry(&bb, &["echo", "traced"], &opts);
    assert_eq!(s.stdout_str(), "traced\n", "{}", s.describe());
    assert_eq!(s.code(), 0);
    let err = s.stderr_str();
    assert!(
        err.contains("write") && err.contains("exit_group"),
        "--strace should log the guest's syscalls on stderr:\n{err}"
    );
}
}
