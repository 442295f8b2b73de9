//! Threads on the sandbox: pthread programs with exact results on one and
//! two CPUs, futex waits that never hold a worker, what programs see of the
//! CPUs, and CPU-time accounting.

#[macro_use]
mod common;

use common::{compile_static, run_sentry, RunOpts, TempDir};

fn opts(flags: &[&str]) -> RunOpts<'static> {
    RunOpts {
        sentry_flags: flags.iter().map(|s| s.to_string()).collect(),
        ..RunOpts::default()
    }
}

both_platforms! {
fn mutex_counter_is_exact_on_one_and_two_cpus() {
    let dir = TempDir::new("threads-mutex");
    let prog = compile_static(&dir, "pthread_mutex.c");
    for cpus in ["1", "2"] {
        let out = run_sentry(&prog, &["8", "100000"], &opts(&["--cpus", cpus]));
        assert_eq!(out.code(), 0, "--cpus {cpus}\n{}", out.describe());
        assert_eq!(
            out.stdout_str(),
            "counter=800000 expected=800000 joinsum=1600000\n",
            "--cpus {cpus}: 8 threads x 100000 increments and join values"
        );
    }
}
}

both_platforms! {
fn condition_variable_handoff_keeps_its_order() {
    let dir = TempDir::new("threads-condvar");
    let prog = compile_static(&dir, "condvar_order.c");
    for cpus in ["1", "2"] {
        let out = run_sentry(&prog, &["6"], &opts(&["--cpus", cpus]));
        assert_eq!(out.code(), 0, "{}", out.describe());
        assert_eq!(
            out.stdout_str(),
            "0 1 2 3 4 5\n0 1 2 3 4 5\n0 1 2 3 4 5\njoined 150\n"
        );
    }
}
}

both_platforms! {
fn sixteen_futex_waiters_on_one_worker_complete() {
    // Blocking never holds a worker: with one worker, 16 threads parked in
    // FUTEX_WAIT are woken one by one, in order.
    let dir = TempDir::new("threads-futex16");
    let prog = compile_static(&dir, "futex_wake_order.c");
    let out = run_sentry(&prog, &[] as &[&str], &opts(&["--cpus", "1"]));
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert_eq!(out.stdout_str(), "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 \n");
}
}

both_platforms! {
fn cpu_count_follows_cpus_and_getcpu_stays_inside() {
    let dir = TempDir::new("threads-cpus");
    let prog = compile_static(&dir, "cpus.c");
    for n in [1, 2] {
        let cpus = n.to_string();
        let out = run_sentry(&prog, &[] as &[&str], &opts(&["--cpus", &cpus]));
        assert_eq!(out.code(), 0, "{}", out.describe());
        assert_eq!(
            out.stdout_str(),
            format!("affinity={n} nprocs={n} onln={n} getcpu_ok=1\n")
        );
    }
    // With host cores, getcpu reports host CPUs: inside the host's CPU count.
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let limit = host.to_string();
    let out = run_sentry(&prog, &[&limit], &opts(&["--host-cores"]));
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert!(
        out.stdout_str().ends_with("getcpu_ok=1\n"),
        "{}",
        out.describe()
    );
}
}

both_platforms! {
fn busybox_nproc_sees_cpus() {
    let Some(bb) = common::busybox("busybox_nproc_sees_cpus") else {
        return;
    };
    for n in ["1", "2"] {
        let out = run_sentry(&bb, &["nproc"], &opts(&["--cpus", n]));
        assert_eq!(out.code(), 0, "{}", out.describe());
        assert_eq!(out.stdout_str().trim(), n);
    }
}
}

fn field(line: &str, name: &str) -> i64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

both_platforms! {
fn busy_guest_cpu_time_tracks_wall_time() {
    let dir = TempDir::new("threads-cputime");
    let prog = compile_static(&dir, "cputime.c");
    let out = run_sentry(&prog, &[] as &[&str], &opts(&[]));
    assert_eq!(out.code(), 0, "{}", out.describe());
    let line = out.stdout_str();
    let wall = field(&line, "wall") as f64;
    // The guest spins alone on its thread: its CPU time is its wall time,
    // give or take accounting granularity (20%).
    for name in ["cpu", "thread", "rusage", "times"] {
        let v = field(&line, name) as f64;
        assert!(
            (v - wall).abs() <= 0.2 * wall,
            "{name} = {v} ns is not within 20% of wall = {wall} ns\n{line}"
        );
    }
}
}

both_platforms! {
fn thread_corner_cases_match_native() {
    // Robust mutex of a dead owner, pthread_exit values, tgkill, affinity,
    // and _exit(5) from a thread while others block.
    let dir = TempDir::new("threads-misc");
    let prog = compile_static(&dir, "threads_misc.c");
    let (native, sandboxed) = common::compare(&prog, &[] as &[&str], &opts(&[]));
    assert_eq!(native.code(), 5);
    assert_eq!(sandboxed.code(), 5);
}
}

both_platforms! {
fn futex_operations_match_native() {
    // Timeouts (relative and absolute), EAGAIN, bitsets, REQUEUE,
    // CMP_REQUEUE and WAKE_OP, private and shared.
    let dir = TempDir::new("threads-futex-ops");
    let prog = compile_static(&dir, "futex_ops.c");
    for cpus in ["1", "2"] {
        let (native, sandboxed) = common::compare(&prog, &[] as &[&str], &opts(&["--cpus", cpus]));
        assert_eq!(native.code(), 0);
        assert_eq!(sandboxed.code(), 0);
    }
}
}
