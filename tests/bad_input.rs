//! Programs the sentry cannot run, and bad command lines.
//!
//! Each case must end quickly (the run helper fails the test after 60 s)
//! with the documented exit status (127 not found, 126 cannot run, 2 usage)
//! and one clear line on stderr naming the problem; the sentry must not
//! panic or leave processes behind.

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    assert_contains_all, compile_static, run, run_sentry, sentry, Output, RunOpts, TempDir,
};

/// Runs `sentry run -- program [args]` and checks the one-line error.
fn expect_refusal(program: &Path, args: &[&str], code: i32, words: &[&str]) -> Output {
    let out = run_sentry(program, args, &RunOpts::default());
    let what = format!("sentry run -- {} {args:?}", program.display());
    assert_eq!(
        out.code(),
        code,
        "{what}: wrong exit status\n{}",
        out.describe()
    );
    assert_eq!(
        out.stdout_str(),
        "",
        "{what}: nothing may run\n{}",
        out.describe()
    );
    let err = out.stderr_str();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: expected one error line on stderr\n{}",
        out.describe()
    );
    assert!(err.starts_with("sentry:"), "{what}: {err}");
    assert_contains_all(&what, &err, words);
    out
}

fn make_executable(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A static x86-64 ELF to corrupt: /bin/busybox, or a freshly built guest.
fn static_elf(dir: &TempDir) -> Vec<u8> {
    let bb = Path::new("/bin/busybox");
    if bb.is_file() {
        std::fs::read(bb).unwrap()
    } else {
        eprintln!("note: /bin/busybox is missing; corrupting a compiled guest instead");
        std::fs::read(compile_static(dir, "misc.c")).unwrap()
    }
}

fn write_exe(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.write(name, bytes);
    make_executable(&p);
    p
}

both_platforms! {
fn missing_file_is_127() {
    expect_refusal(
        Path::new("/nonexistent/dir/program"),
        &[],
        127,
        &["/nonexistent/dir/program", "No such file"],
    );
}
}

both_platforms! {
fn command_not_in_path_is_127() {
    expect_refusal(
        Path::new("no-such-command-sentry-test"),
        &[],
        127,
        &["no-such-command-sentry-test", "not found"],
    );
}
}

both_platforms! {
fn text_file_is_126_not_elf() {
    let dir = TempDir::new("bad-text");
    let p = write_exe(&dir, "notes.txt", b"just some text\nnot a program\n");
    expect_refusal(&p, &[], 126, &["not an ELF"]);
}
}

both_platforms! {
fn shell_script_is_126_script() {
    let dir = TempDir::new("bad-script");
    let p = write_exe(&dir, "hello.sh", b"#!/bin/sh\necho hello\n");
    expect_refusal(&p, &[], 126, &["script"]);
}
}

both_platforms! {
fn empty_file_is_126() {
    let dir = TempDir::new("bad-empty");
    let p = write_exe(&dir, "empty", b"");
    expect_refusal(&p, &[], 126, &["empty"]);
}
}

both_platforms! {
fn directory_is_126() {
    let dir = TempDir::new("bad-dir");
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    expect_refusal(&sub, &[], 126, &["directory"]);
}
}

both_platforms! {
fn file_without_execute_permission_is_126() {
    // execve(2) refuses a file without execute permission (even for root).
    let dir = TempDir::new("bad-noexec");
    let p = dir.write("busybox", static_elf(&dir));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    expect_refusal(&p, &["true"], 126, &["Permission denied"]);
}
}

/// A minimal 32-bit i386 ELF executable (exit(0) via int 0x80).
fn tiny_elf32() -> Vec<u8> {
    let code: [u8; 12] = [
        0xb8, 1, 0, 0, 0, // mov eax, 1 (exit)
        0xbb, 0, 0, 0, 0, // mov ebx, 0
        0xcd, 0x80, // int 0x80
    ];
    let base: u32 = 0x0804_8000;
    let total = 52 + 32 + code.len() as u32;
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[1, 1, 1, 0]); // ELFCLASS32, LSB, version 1, SYSV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(base + 84).to_le_bytes()); // e_entry
    f.extend_from_slice(&52u32.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&52u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&32u16.to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&40u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(f.len(), 52);
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&0u32.to_le_bytes()); // p_offset
    f.extend_from_slice(&base.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&base.to_le_bytes()); // p_paddr
    f.extend_from_slice(&total.to_le_bytes()); // p_filesz
    f.extend_from_slice(&total.to_le_bytes()); // p_memsz
    f.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    f.extend_from_slice(&0x1000u32.to_le_bytes()); // p_align
    f.extend_from_slice(&code);
    f
}

both_platforms! {
fn elf32_is_126() {
    let dir = TempDir::new("bad-elf32");
    // A real one when the toolchain can build it, else a hand-made one.
    let src = dir.write("m32.c", "int main(void) { return 0; }\n");
    let out = dir.join("m32");
    let mut cc = Command::new("gcc");
    cc.args(["-m32", "-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src);
    let built = Path::new("/usr/bin/gcc").exists() && run(&mut cc, None).status.success();
    let p = if built && out.is_file() {
        out
    } else {
        eprintln!("note: gcc -m32 -static does not work here; using a hand-made 32-bit ELF");
        write_exe(&dir, "tiny32", &tiny_elf32())
    };
    expect_refusal(&p, &[], 126, &["32-bit"]);
    // The hand-made one in any case.
    let p = write_exe(&dir, "tiny32-handmade", &tiny_elf32());
    expect_refusal(&p, &[], 126, &["32-bit"]);
}
}

both_platforms! {
fn truncated_elf_is_126() {
    let dir = TempDir::new("bad-trunc");
    let elf = static_elf(&dir);
    for len in [100usize, 64, 20, 4] {
        let p = write_exe(&dir, &format!("trunc{len}"), &elf[..len]);
        let out = run_sentry(&p, &["true"], &RunOpts::default());
        assert_eq!(out.code(), 126, "first {len} bytes\n{}", out.describe());
        let err = out.stderr_str().to_lowercase();
        assert!(
            err.contains("truncated") || err.contains("corrupt"),
            "first {len} bytes: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
}

both_platforms! {
fn truncated_segments_are_126() {
    // The headers are whole but the file ends inside the loaded segments.
    let dir = TempDir::new("bad-trunc-seg");
    let elf = static_elf(&dir);
    let p = write_exe(&dir, "half", &elf[..elf.len() / 2]);
    let out = run_sentry(&p, &["true"], &RunOpts::default());
    assert_eq!(out.code(), 126, "{}", out.describe());
    let err = out.stderr_str().to_lowercase();
    assert!(
        err.contains("truncated") || err.contains("corrupt"),
        "{err}"
    );
}
}

both_platforms! {
fn corrupt_phentsize_is_126() {
    let dir = TempDir::new("bad-phentsize");
    let mut elf = static_elf(&dir);
    elf[54] = 0x30; // e_phentsize 56 -> 48
    elf[55] = 0;
    let p = write_exe(&dir, "corrupt", &elf);
    expect_refusal(&p, &["true"], 126, &["corrupt"]);
}
}

both_platforms! {
fn huge_phnum_is_126() {
    let dir = TempDir::new("bad-phnum");
    let mut elf = static_elf(&dir);
    elf[56] = 0xff; // e_phnum 0xffff
    elf[57] = 0xff;
    let p = write_exe(&dir, "corrupt", &elf);
    let out = run_sentry(&p, &["true"], &RunOpts::default());
    assert_eq!(out.code(), 126, "{}", out.describe());
    let err = out.stderr_str().to_lowercase();
    assert!(
        err.contains("truncated") || err.contains("corrupt"),
        "{err}"
    );
}
}

both_platforms! {
fn other_machine_is_126() {
    let dir = TempDir::new("bad-machine");
    let mut elf = static_elf(&dir);
    elf[18] = 183; // EM_AARCH64
    elf[19] = 0;
    let p = write_exe(&dir, "arm64", &elf);
    expect_refusal(&p, &["true"], 126, &["machine"]);
}
}

both_platforms! {
fn big_endian_is_126() {
    let dir = TempDir::new("bad-endian");
    let mut elf = static_elf(&dir);
    elf[5] = 2; // ELFDATA2MSB
    let p = write_exe(&dir, "be", &elf);
    expect_refusal(&p, &["true"], 126, &["endian"]);
}
}

both_platforms! {
fn object_file_is_126() {
    let dir = TempDir::new("bad-object");
    let src = dir.write("obj.c", "int f(void) { return 1; }\n");
    let obj = dir.join("obj.o");
    let mut cc = Command::new("gcc");
    cc.args(["-c", "-o"]).arg(&obj).arg(&src);
    let r = run(&mut cc, None);
    assert!(r.status.success(), "gcc -c failed\n{}", r.describe());
    make_executable(&obj);
    expect_refusal(&obj, &[], 126, &["not an executable"]);
}
}

both_platforms! {
fn dynamically_linked_is_126() {
    let ls = Path::new("/bin/ls");
    if !ls.is_file() {
        eprintln!("SKIP dynamically_linked_is_126: /bin/ls is missing");
        return;
    }
    expect_refusal(ls, &["/"], 126, &["dynamically linked"]);
}
}

both_platforms! {
fn corrupted_header_bytes() {
    // Every byte of the ELF header and of the first program headers set to
    // 0xff in turn, run natively and under the sentry. The sentry may be
    // stricter than execve (which often accepts such a file and lets the
    // program crash), but:
    //   - a file execve refuses, the sentry refuses too (126);
    //   - a refusal is one "sentry: cannot run ..." line on stderr;
    //   - a file the sentry does run behaves as natively (same exit status);
    //   - it is never a sentry failure (125), a panic, a hang or a leak
    //     (run_sentry checks the last three).
    let dir = TempDir::new("bad-fuzz");
    let elf = static_elf(&dir);
    let mut offsets: Vec<usize> = (0..64).collect();
    offsets.extend((64..64 + 3 * 56).step_by(4));
    let mut problems = Vec::new();
    let (mut refused, mut ran) = (0, 0);
    for off in offsets {
        let mut bad = elf.clone();
        bad[off] = 0xff;
        // Named busybox, so that busybox runs its "true" applet.
        let p = write_exe(&dir, &format!("{off}/busybox"), &bad);
        // ETXTBSY: a child forked meanwhile by another test thread can still
        // hold the just-written file open for writing; retry briefly.
        let mut native = common::try_run(Command::new(&p).arg("true"), None);
        for _ in 0..100 {
            match &native {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    native = common::try_run(Command::new(&p).arg("true"), None);
                }
                _ => break,
            }
        }
        let out = run_sentry(&p, &["true"], &RunOpts::default());
        let native_desc = match &native {
            Ok(n) => format!("exit {}", n.code()),
            Err(e) => format!("exec error ({e})"),
        };
        let err = out.stderr_str();
        let problem = match (&native, out.code()) {
            (_, 125) => Some("a sentry failure (125)"),
            (Err(_), c) if c != 126 => Some("execve refuses it but the sentry did not"),
            (_, 126)
                if err.trim_end().lines().count() != 1
                    || !err.starts_with("sentry: cannot run") =>
            {
                Some("the refusal is not one \"sentry: cannot run\" line")
            }
            (Ok(n), c) if c != 126 && c != n.code() => Some("a different exit status"),
            _ => None,
        };
        if out.code() == 126 {
            refused += 1;
        } else {
            ran += 1;
        }
        if let Some(p) = problem {
            problems.push(format!(
                "byte {off:#x}: {p}: native {native_desc}, sentry exit {} stderr {:?}",
                out.code(),
                err.trim_end()
            ));
        }
        std::fs::remove_dir_all(dir.join(off.to_string())).unwrap();
    }
    eprintln!("corrupted headers: {refused} refused, {ran} ran");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
}

// ---------------------------------------------------------------------------
// Bad command lines

fn sentry_cmd(args: &[&str]) -> Output {
    let mut c = Command::new(sentry());
    c.args(args);
    let out = run(&mut c, None);
    common::assert_no_leftovers(&format!("sentry {args:?}"));
    common::assert_sentry_sane(&format!("sentry {args:?}"), &out);
    out
}

both_platforms! {
fn no_program_is_usage_error_2() {
    for args in [&["run"][..], &["run", "--"], &["run", "--cpus", "2"], &[]] {
        let out = sentry_cmd(args);
        assert_eq!(out.code(), 2, "sentry {args:?}\n{}", out.describe());
        assert!(
            out.stderr_str().contains("usage"),
            "sentry {args:?}\n{}",
            out.describe()
        );
        assert_eq!(out.stdout_str(), "");
    }
    let out = sentry_cmd(&["run"]);
    assert!(
        out.stderr_str().contains("no program given"),
        "{}",
        out.describe()
    );
}
}

both_platforms! {
fn bad_options_are_usage_errors() {
    for (args, code, word) in [
        (
            &["run", "--bogus", "--", "/bin/true"][..],
            2,
            "unknown option",
        ),
        (&["run", "--cpus", "0", "--", "/bin/true"], 2, "--cpus"),
        (
            &["run", "--cpus", "lots", "--", "/bin/true"],
            2,
            "not a number",
        ),
        (&["run", "--cpus"], 2, "needs a value"),
        (
            &["run", "--platform", "bogus", "--", "/bin/true"],
            125,
            "unknown platform",
        ),
        (&["frobnicate"], 2, "usage"),
    ] {
        let out = sentry_cmd(args);
        assert_eq!(out.code(), code, "sentry {args:?}\n{}", out.describe());
        assert!(
            out.stderr_str().contains(word),
            "sentry {args:?}\n{}",
            out.describe()
        );
    }
}
}

both_platforms! {
fn help_and_syscalls_subcommands() {
    let out = sentry_cmd(&["--help"]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout_str().contains("usage"), "{}", out.describe());
    let out = sentry_cmd(&["syscalls"]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout_str().contains("getpid"), "{}", out.describe());
}
}
