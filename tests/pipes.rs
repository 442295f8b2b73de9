//! Pipes, eventfds, poll and select served inside the sentry: blocking
//! parks the task instead of holding a worker.

#[macro_use]
mod common;

use common::{busybox, compare, compile_static, run_sentry, RunOpts, TempDir};

both_platforms! {
fn pipes_eventfd_poll_select_match_native() {
    let dir = TempDir::new("pipes");
    let prog = compile_static(&dir, "pipes.c");
    for cpus in ["1", "2"] {
        let opts = RunOpts {
            sentry_flags: vec!["--cpus".into(), cpus.into()],
            ..RunOpts::default()
        };
        let (_, s) = compare(&prog, &[] as &[&str], &opts);
        assert_eq!(s.code(), 0, "--cpus {cpus}\n{}", s.describe());
        let out = s.stdout_str();
        assert!(
            out.starts_with("pipe: 1048576 bytes, checksums match\n"),
            "{out}"
        );
        assert!(
            out.contains("poll timeout 150ms: 0, waited enough: yes\n"),
            "{out}"
        );
        assert!(out.contains("epipe: -1 EPIPE\n"), "{out}");
    }
}
}

both_platforms! {
fn busybox_read_builtin_from_a_pipe() {
    let Some(bb) = busybox("sh read") else { return };
    let opts = RunOpts {
        stdin: Some(b"hello\n"),
        ..RunOpts::default()
    };
    let out = run_sentry(&bb, &["sh", "-c", "read x; echo got $x"], &opts);
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert_eq!(out.stdout_str(), "got hello\n", "{}", out.describe());
}
}
