//! Processes: fork (an eager copy of memory), execve (static programs and
//! #! scripts, close-on-exec), wait4/waitid with exit statuses, and busybox
//! shell pipelines and subshells, all compared with native runs.

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;

use common::{compare, compile_static, RunOpts, TempDir};

fn opts(env: Vec<(String, String)>) -> RunOpts<'static> {
    RunOpts {
        env,
        ..RunOpts::default()
    }
}

both_platforms! {
fn fork_exec_wait_chain_of_depth_five_passes_exit_codes_back() {
    let dir = TempDir::new("proc-chain");
    let prog = compile_static(&dir, "fork_chain.c");
    let (native, sandboxed) = compare(&prog, &["5"], &opts(vec![]));
    assert_eq!(native.code(), 5);
    assert_eq!(sandboxed.code(), 5);
}
}

both_platforms! {
fn fork_copies_memory_and_wait_reports_statuses() {
    let dir = TempDir::new("proc-fork");
    let prog = compile_static(&dir, "fork_memory.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &opts(vec![]));
    assert_eq!(sandboxed.code(), 0);
    assert!(sandboxed
        .stdout_str()
        .contains("segfaulting child: signaled=1 sig=11"));
}
}

/// A directory of busybox applet links, so a shell finds static programs
/// on PATH (the host's /usr/bin has dynamic ones the sandbox cannot run yet).
fn applet_path(dir: &TempDir) -> Option<String> {
    let bb = common::busybox("applet_path")?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).ok()?;
    for applet in [
        "sh", "tr", "wc", "cat", "echo", "head", "sort", "uname", "true", "false",
    ] {
        std::os::unix::fs::symlink(&bb, bin.join(applet)).ok()?;
    }
    Some(bin.to_string_lossy().into_owned())
}

fn shell(dir: &TempDir, script: &str) -> Option<(common::Output, common::Output)> {
    let path = applet_path(dir)?;
    let bb = common::busybox("shell")?;
    Some(compare(
        &bb,
        &["sh", "-c", script],
        &opts(vec![("PATH".into(), path)]),
    ))
}

both_platforms! {
fn shell_pipeline_subshell_and_status() {
    let dir = TempDir::new("proc-sh1");
    let Some((_, out)) = shell(&dir, "echo a | tr a b; (exit 3); echo $?") else {
        return;
    };
    assert_eq!(out.stdout_str(), "b\n3\n");
}
}

both_platforms! {
fn shell_loop_into_a_pipe() {
    let dir = TempDir::new("proc-sh2");
    let Some((_, out)) = shell(&dir, "for i in 1 2 3; do echo $i; done | wc -l") else {
        return;
    };
    assert_eq!(out.stdout_str().trim(), "3");
}
}

both_platforms! {
fn shell_command_substitution_and_nested_shells() {
    let dir = TempDir::new("proc-sh3");
    let script =
        "x=$(echo inner | tr a-z A-Z); echo $x; sh -c 'exit 4'; echo $?; echo a b c | wc -w";
    let Some((_, out)) = shell(&dir, script) else {
        return;
    };
    assert_eq!(out.stdout_str(), "INNER\n4\n3\n");
}
}

both_platforms! {
fn exec_runs_hashbang_scripts() {
    let dir = TempDir::new("proc-script");
    let Some(path) = applet_path(&dir) else {
        return;
    };
    let script = dir.write(
        "hello.sh",
        "#!/bin/busybox sh\necho script says $1\nexit 6\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bb = common::busybox("exec_runs_hashbang_scripts").unwrap();
    let cmd = format!("{} hi; echo status $?", script.display());
    let (_, out) = compare(&bb, &["sh", "-c", &cmd], &opts(vec![("PATH".into(), path)]));
    assert_eq!(out.stdout_str(), "script says hi\nstatus 6\n");
}
}

both_platforms! {
fn stub_killed_from_outside_ends_the_sentry_cleanly() {
    // kill -9 of the guest's stub process: the sentry reports it and exits
    // 137 at once, even though the guest's only thread is parked in a sleep.
    let Some(bb) = common::busybox("stub_killed_from_outside") else {
        return;
    };
    let mut bg = common::spawn_sentry(&bb, &["sh", "-c", "echo ready; sleep 30"]);
    bg.wait_for_line("ready");
    let stubs = children_of(bg.pid());
    assert!(!stubs.is_empty(), "the sentry has no stub process");
    for pid in stubs {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let (status, err) = bg.wait();
    assert_eq!(status.code(), Some(137), "{err}");
    assert!(err.contains("died unexpectedly"), "{err}");
}
}

/// PIDs whose parent is `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok())
            == Some(pid)
        {
            out.push(p);
        }
    }
    out
}

both_platforms! {
fn signal_handlers_match_native() {
    // SA_SIGINFO, rt_sigreturn restoring general and FP registers, masks,
    // SA_RESTART versus EINTR, SA_RESETHAND, sigsuspend, faults caught by
    // handlers, SIGCHLD.
    let dir = TempDir::new("proc-signals");
    let prog = compile_static(&dir, "signals.c");
    for cpus in ["1", "2"] {
        let o = RunOpts {
            sentry_flags: vec!["--cpus".into(), cpus.into()],
            ..RunOpts::default()
        };
        let (native, sandboxed) = compare(&prog, &[] as &[&str], &o);
        assert_eq!(native.code(), 0);
        assert_eq!(sandboxed.code(), 0);
    }
}
}

both_platforms! {
fn guest_null_dereference_exits_139() {
    let dir = TempDir::new("proc-segv");
    let src = dir.write(
        "segv.c",
        "int main(void){ volatile int *p = 0; return *p; }\n",
    );
    let bin = dir.join("segv");
    let ok = std::process::Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "gcc failed");
    let out = common::run_sentry(&bin, &[] as &[&str], &RunOpts::default());
    assert_eq!(out.code(), 139, "{}", out.describe());
}
}

both_platforms! {
fn sigint_to_the_sentry_reaches_a_shell_trap() {
    // Ctrl-C sent to `sentry` is forwarded to the guest's init, whose trap runs.
    let Some(bb) = common::busybox("sigint_trap") else {
        return;
    };
    let mut bg = common::spawn_sentry(
        &bb,
        &[
            "sh",
            "-c",
            "trap 'echo caught; exit 3' INT; echo ready; while :; do :; done",
        ],
    );
    bg.wait_for_line("ready");
    bg.signal(libc::SIGINT);
    let (status, err) = bg.wait();
    assert_eq!(status.code(), Some(3), "{err}");
}
}

both_platforms! {
fn process_groups_and_sessions_match_native() {
    let dir = TempDir::new("proc-pgrp");
    let prog = compile_static(&dir, "pgrp.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(sandboxed.code(), 0);
    assert!(sandboxed
        .stdout_str()
        .contains("setsid as group leader: -1 EPERM"));
}
}

both_platforms! {
fn writing_to_a_pipe_without_readers_raises_sigpipe() {
    let dir = TempDir::new("proc-sigpipe");
    let prog = compile_static(&dir, "sigpipe.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(
        sandboxed.stdout_str(),
        "handled: r=-1 epipe=1 got=13\ndefault: signaled=1 sig=13\n"
    );
}
}

both_platforms! {
fn interval_timers_and_alarm_match_native() {
    let dir = TempDir::new("proc-itimer");
    let prog = compile_static(&dir, "itimer.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(sandboxed.code(), 0);
}
}

both_platforms! {
fn job_control_stop_and_continue_match_native() {
    let dir = TempDir::new("proc-jobctl");
    let prog = compile_static(&dir, "jobctl.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(sandboxed.code(), 0);
}
}

both_platforms! {
fn sigtimedwait_matches_native() {
    let dir = TempDir::new("proc-sigwait");
    let prog = compile_static(&dir, "sigwait.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(sandboxed.code(), 0);
}
}

both_platforms! {
fn exec_from_a_thread_and_alternate_signal_stacks_match_native() {
    let dir = TempDir::new("proc-thread-exec");
    let prog = compile_static(&dir, "thread_exec.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(
        sandboxed.stdout_str(),
        "handler on the alternate stack: 1\nnew image: tid==pid 1\n"
    );
}
}

both_platforms! {
fn execveat_relative_to_a_directory_and_fexecve_match_native() {
    let dir = TempDir::new("proc-execveat");
    let prog = compile_static(&dir, "execveat.c");
    let (_, sandboxed) = compare(&prog, &[] as &[&str], &RunOpts::default());
    assert_eq!(sandboxed.stdout_str(), "ran via dirfd\nran via fexecve\n");
}
}
