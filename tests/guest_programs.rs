//! C guest programs (tests/guests/*.c), compiled at test time, run natively
//! and under the sentry.
//!
//! Each test compiles what it needs into its own temporary directory (removed
//! at the end) with `gcc -O2 -static` (some also with `gcc -static-pie` and
//! `musl-gcc -static`, skipped when musl-gcc is not installed) and compares
//! the sentry's stdout and exit code with a native run of the same binary
//! wherever the output is deterministic.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use common::{
    compare, compile, compile_static, run_native, run_sentry, spawn_sentry, Flavor, RunOpts,
    TempDir,
};

fn opts() -> RunOpts<'static> {
    RunOpts::default()
}

/// Asserts the output has the program's own "NAME: ok" verdict line.
fn assert_verdict(name: &str, out: &common::Output) {
    let want = format!("{name}: ok");
    assert!(
        out.stdout_str().lines().any(|l| l == want),
        "expected the line {want:?}\n{}",
        out.describe()
    );
}

// ---------------------------------------------------------------------------
// argv / envp

fn args_env_case(flavor: Flavor) {
    let dir = TempDir::new("args");
    let Some(bin) = compile(&dir, "args_env.c", flavor) else {
        return;
    };
    let args = [
        "one",
        "two words",
        "",
        "tab\there",
        "newline\nin it",
        "ünïcödé ✓",
        "--",
        "-x",
        "--strace",
    ];
    let o = RunOpts {
        env: vec![
            ("SENTRY_TEST_VAR".into(), "a=b=c".into()),
            ("EMPTY".into(), String::new()),
        ],
        ..opts()
    };
    let (_, s) = compare(&bin, &args, &o);
    assert_verdict("args_env", &s);
    let out = s.stdout_str();
    assert!(out.contains("argc=10\n"), "{out}");
    assert!(out.contains("argv[2]=[two words] len=9\n"), "{out}");
    assert!(out.contains("argv[3]=[] len=0\n"), "{out}");
    assert!(out.contains("getenv(SENTRY_TEST_VAR)=[a=b=c]\n"), "{out}");
    assert!(out.contains("[EMPTY=]"), "{out}");
}

both_platforms! {
fn args_and_env_static() {
    args_env_case(Flavor::Static);
}
}

both_platforms! {
fn args_and_env_static_pie() {
    args_env_case(Flavor::StaticPie);
}
}

both_platforms! {
fn args_and_env_musl() {
    args_env_case(Flavor::Musl);
}
}

both_platforms! {
fn many_and_long_arguments() {
    let dir = TempDir::new("args-many");
    let bin = compile_static(&dir, "args_env.c");
    let mut args: Vec<String> = (0..2000).map(|i| format!("arg-{i}")).collect();
    args.push("x".repeat(100_000));
    let o = RunOpts {
        env: vec![("SENTRY_TEST_VAR".into(), "y".repeat(50_000))],
        ..opts()
    };
    let (_, s) = compare(&bin, &args, &o);
    assert_verdict("args_env", &s);
    assert!(s.stdout_str().contains("argc=2002\n"));
}
}

// ---------------------------------------------------------------------------
// auxv

fn auxv_case(flavor: Flavor) {
    let dir = TempDir::new("auxv");
    let Some(bin) = compile(&dir, "auxv.c", flavor) else {
        return;
    };
    let (_, s) = compare(&bin, &[] as &[&str], &opts());
    assert_verdict("auxv", &s);
    let out = s.stdout_str();
    assert!(out.contains("AT_PAGESZ=4096\n"), "{out}");
    assert!(
        out.contains(&format!("AT_EXECFN=[{}]\n", bin.display())),
        "AT_EXECFN should be the path the program was started by\n{out}"
    );
    assert!(out.contains("AT_EXECFN equals argv[0]: yes\n"), "{out}");
    let want_type = if flavor == Flavor::StaticPie {
        "DYN"
    } else {
        "EXEC"
    };
    assert!(out.contains(&format!("e_type={want_type}\n")), "{out}");
}

both_platforms! {
fn auxv_static() {
    auxv_case(Flavor::Static);
}
}

both_platforms! {
fn auxv_static_pie() {
    auxv_case(Flavor::StaticPie);
}
}

both_platforms! {
fn auxv_musl() {
    auxv_case(Flavor::Musl);
}
}

both_platforms! {
fn auxv_execfn_via_path_lookup() {
    // Started by name through $PATH, AT_EXECFN is the path found.
    let dir = TempDir::new("auxv-path");
    let bin = compile_static(&dir, "auxv.c");
    let name = bin.file_name().unwrap().to_str().unwrap().to_string();
    let mut path = common::test_env()
        .into_iter()
        .find(|(k, _)| *k == "PATH")
        .unwrap()
        .1
        .to_string();
    path = format!("{}:{path}", dir.path().display());
    let o = RunOpts {
        env: vec![("PATH".into(), path)],
        ..opts()
    };
    let s = run_sentry(Path::new(&name), &[] as &[&str], &o);
    assert_eq!(s.code(), 0, "{}", s.describe());
    let out = s.stdout_str();
    assert!(out.contains("AT_PAGESZ is 4096: ok"), "{out}");
    assert!(
        out.contains(&format!("AT_EXECFN=[{}]", bin.display())),
        "{}",
        s.describe()
    );
    assert!(out.contains("auxv: ok"), "{}", s.describe());
}
}

// ---------------------------------------------------------------------------
// memory

fn memory_case(flavor: Flavor) {
    let dir = TempDir::new("memory");
    let Some(bin) = compile(&dir, "memory.c", flavor) else {
        return;
    };
    let (_, s) = compare(&bin, &["all"], &opts());
    assert_verdict("memory", &s);
}

both_platforms! {
fn memory_static() {
    memory_case(Flavor::Static);
}
}

both_platforms! {
fn memory_static_pie() {
    memory_case(Flavor::StaticPie);
}
}

both_platforms! {
fn memory_musl() {
    memory_case(Flavor::Musl);
}
}

both_platforms! {
fn write_to_read_only_page_is_sigsegv() {
    let dir = TempDir::new("mprotect-fault");
    let bin = compile_static(&dir, "memory.c");
    let (n, s) = compare(&bin, &["mprotect-fault"], &opts());
    assert_eq!(n.code(), 139);
    assert_eq!(s.code(), 139, "{}", s.describe());
    assert_eq!(s.stdout_str(), "writing to a read-only page\n");
}
}

// ---------------------------------------------------------------------------
// files

/// The directory files.c expects.
fn make_files_dir(dir: &TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("tree");
    std::fs::create_dir(&root).unwrap();
    let a = root.join("a.txt");
    std::fs::write(&a, "hello, sandbox\n").unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
    let b: Vec<u8> = (0..10000u32).map(|i| ((i * 7 + 3) & 0xff) as u8).collect();
    std::fs::write(root.join("b.bin"), b).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/c.txt"), "see\n").unwrap();
    root
}

both_platforms! {
fn file_io_and_directories() {
    let dir = TempDir::new("files");
    let bin = compile_static(&dir, "files.c");
    let root = make_files_dir(&dir);
    let (_, s) = compare(&bin, &[root.to_str().unwrap()], &opts());
    assert_verdict("files", &s);
    let out = s.stdout_str();
    assert!(
        out.contains(&format!("after chdir DIR: cwd={}\n", root.display())),
        "{out}"
    );
    assert!(
        out.contains("writev to stdout\nwritev returned 17\n"),
        "{out}"
    );
    assert!(out.contains("  link (lnk)\n"), "{out}");
}
}

both_platforms! {
fn file_io_musl() {
    let dir = TempDir::new("files-musl");
    let Some(bin) = compile(&dir, "files.c", Flavor::Musl) else {
        return;
    };
    let root = make_files_dir(&dir);
    let (_, s) = compare(&bin, &[root.to_str().unwrap()], &opts());
    assert_verdict("files", &s);
}
}

both_platforms! {
fn relative_paths_use_the_sentrys_working_directory() {
    // The guest starts in the sentry's cwd: a relative DIR argument works.
    let dir = TempDir::new("files-rel");
    let bin = compile_static(&dir, "files.c");
    make_files_dir(&dir);
    let o = RunOpts {
        cwd: Some(dir.path()),
        ..opts()
    };
    let (_, s) = compare(&bin, &["tree"], &o);
    assert_verdict("files", &s);
}
}

both_platforms! {
fn writes_to_the_host_filesystem_get_erofs() {
    let dir = TempDir::new("erofs");
    let bin = compile_static(&dir, "erofs.c");
    let target = dir.write("data/precious.txt", "original contents\n");
    let newfile = dir.join("data/new.txt");
    let s = run_sentry(
        &bin,
        &[target.to_str().unwrap(), newfile.to_str().unwrap()],
        &opts(),
    );
    let out = s.stdout_str();
    assert!(
        out.contains("open O_WRONLY: errno=30 (EROFS)"),
        "opening a file O_WRONLY must fail with EROFS\n{}",
        s.describe()
    );
    for what in [
        "open O_RDWR",
        "open O_WRONLY|O_TRUNC",
        "open O_WRONLY|O_APPEND",
        "open O_CREAT new file",
        "open O_CREAT|O_EXCL new file",
    ] {
        assert!(
            out.contains(&format!("{what}: errno=30 (EROFS)")),
            "{what} must fail with EROFS\n{}",
            s.describe()
        );
    }
    assert!(out.contains("all writes refused"), "{}", s.describe());
    assert_eq!(s.code(), 0, "{}", s.describe());
    // Nothing changed on the host.
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "original contents\n",
        "the sandbox changed a host file"
    );
    assert!(!newfile.exists(), "the sandbox created a host file");
}
}

// ---------------------------------------------------------------------------
// time, randomness, uname, ids

both_platforms! {
fn clocks_and_sleep() {
    let dir = TempDir::new("time");
    let bin = compile_static(&dir, "misc.c");
    let (_, s) = compare(&bin, &["time"], &opts());
    assert_verdict("time", &s);
    assert!(s.stdout_str().contains("nanosleep(50ms) returned 0\n"));
}
}

both_platforms! {
fn getrandom_works() {
    let dir = TempDir::new("random");
    let bin = compile_static(&dir, "misc.c");
    let (_, s) = compare(&bin, &["random"], &opts());
    assert_verdict("random", &s);
}
}

both_platforms! {
fn uname_matches_native() {
    let dir = TempDir::new("uname");
    let bin = compile_static(&dir, "misc.c");
    let (_, s) = compare(&bin, &["uname"], &opts());
    assert!(
        s.stdout_str().contains("machine=x86_64\n"),
        "{}",
        s.describe()
    );
    assert!(
        s.stdout_str().contains("sysname=Linux\n"),
        "{}",
        s.describe()
    );
}
}

both_platforms! {
fn guest_is_pid_1() {
    let dir = TempDir::new("ids");
    let bin = compile_static(&dir, "misc.c");
    let s = run_sentry(&bin, &["ids"], &opts());
    assert_eq!(s.code(), 0, "{}", s.describe());
    let out = s.stdout_str();
    assert!(out.starts_with("pid=1\n"), "{out}");
    assert!(out.contains("gettid==getpid: yes\n"), "{out}");
    assert!(out.contains("raw getpid==getpid: yes\n"), "{out}");
    // Same ids as natively (the sandbox does not change users).
    let n = run_native(&bin, &["ids"], &opts());
    let ids = |o: &str| {
        o.lines()
            .find(|l| l.starts_with("uid="))
            .map(str::to_string)
    };
    assert_eq!(ids(&out), ids(&n.stdout_str()));
}
}

// ---------------------------------------------------------------------------
// exit status

both_platforms! {
fn exit_status_is_passed_through() {
    let dir = TempDir::new("exit");
    let bin = compile_static(&dir, "misc.c");
    for (mode, n, want) in [
        ("exit", "42", 42),
        ("exit", "0", 0),
        ("exit", "1", 1),
        ("exit", "255", 255),
        ("exit", "256", 0),
        ("exit", "300", 44),
        ("return", "7", 7),
        ("_exit", "3", 3),
    ] {
        let (_, s) = compare(&bin, &[mode, n], &opts());
        assert_eq!(s.code(), want, "{mode} {n}: {}", s.describe());
        if mode == "_exit" {
            assert_eq!(s.stdout_str(), "", "_exit must not flush stdio");
        }
    }
}
}

both_platforms! {
fn null_dereference_is_sigsegv_139() {
    let dir = TempDir::new("null");
    let bin = compile_static(&dir, "misc.c");
    let (n, s) = compare(&bin, &["null"], &opts());
    assert_eq!(n.code(), 139);
    assert_eq!(s.code(), 139, "{}", s.describe());
    assert_eq!(s.stdout_str(), "dereferencing NULL\n");
}
}

both_platforms! {
fn unknown_syscall_is_enosys_and_guest_continues() {
    let dir = TempDir::new("enosys");
    let bin = compile_static(&dir, "misc.c");
    let (_, s) = compare(&bin, &["enosys"], &opts());
    assert_verdict("enosys", &s);
    let out = s.stdout_str();
    assert!(out.contains("syscall(999) = -1 errno=ENOSYS\n"), "{out}");
    assert!(out.contains("getpid still works: yes\n"), "{out}");
}
}

// ---------------------------------------------------------------------------
// The sentry killed from outside

fn killed_while_running(sig: i32) {
    let dir = TempDir::new("killed");
    let bin = compile_static(&dir, "misc.c");
    let mut bg = spawn_sentry(&bin, &["sleep", "30"]);
    bg.wait_for_line("sleeping");
    bg.signal(sig);
    // wait() fails the test if the stub processes outlive the sentry.
    let (status, stderr) = bg.wait();
    assert!(
        !status.success(),
        "the sentry exited 0 after signal {sig}; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

both_platforms! {
fn sigkill_of_the_sentry_leaves_no_processes() {
    killed_while_running(libc::SIGKILL);
}
}

both_platforms! {
fn sigterm_of_the_sentry_leaves_no_processes() {
    killed_while_running(libc::SIGTERM);
}
}

both_platforms! {
fn sigint_of_the_sentry_leaves_no_processes() {
    killed_while_running(libc::SIGINT);
}
}
