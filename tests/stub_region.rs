//! A hostile guest against the stub region (0x7000_0000_0000 and up, see
//! stubs/src/lib.rs): it shares its host process with the stub, so it can
//! write to the stub's pages and ask for mappings there. The sentry must
//! never panic, hang or leave processes behind, must keep the stub region
//! out of the guest's memory calls, and must recover (or stop the guest
//! with an error) when it scribbles over its own stub page.
//!
//! Guest: tests/guests/stub_escape.c (only meaningful under the sentry).

#[macro_use]
mod common;

use std::path::Path;

use common::{compile_static, run_sentry, Output, RunOpts, TempDir};

fn stub_escape(mode: &str) -> Output {
    let dir = TempDir::new("stub");
    let bin = compile_static(&dir, "stub_escape.c");
    stub_escape_with(&bin, mode, &[])
}

fn stub_escape_with(bin: &Path, mode: &str, flags: &[&str]) -> Output {
    let opts = RunOpts {
        sentry_flags: flags.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    };
    // run_sentry fails the test on a hang (60 s), a sentry panic or death
    // by signal, or processes left behind.
    run_sentry(bin, &[mode], &opts)
}

both_platforms! {
fn scribbling_over_the_stub_page_is_repaired_by_the_next_stop() {
    // Every handoff field is written by its owner before it is read (the stub
    // rewrites its line at each stop, the sentry restores its own line on
    // resume), so 4096 bytes of 0xff over the running thread's stub page are
    // simply overwritten: the guest's next syscall is served correctly.
    let out = stub_escape("scribble");
    assert_eq!(
        out.stdout_str(),
        "scribbling over thread slot 0\ngetpid after scribbling returned 1\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.code(), 0, "{}", out.describe());
}
}

both_platforms! {
fn scribbling_never_hangs_or_breaks_the_sentry() {
    // With the worker sleeping instead of spinning (--no-spin) and a single
    // worker, a stub that cannot ring its (scribbled) doorbell must not hang
    // the sandbox; whatever happens, the sentry stays sane (run_sentry).
    let dir = TempDir::new("stub-flags");
    let bin = compile_static(&dir, "stub_escape.c");
    for mode in ["scribble", "doorbells"] {
        for flags in [
            &["--no-spin"][..],
            &["--cpus", "1"],
            &["--no-spin", "--cpus", "1"],
        ] {
            let out = stub_escape_with(&bin, mode, flags);
            assert!(
                out.code() == 0 || out.stderr_str().contains("sentry:"),
                "{mode} {flags:?}: a failure needs a message\n{}",
                out.describe()
            );
        }
    }
}
}

both_platforms! {
fn scribbling_over_the_doorbells_does_not_break_the_sentry() {
    // The doorbells are shared by every stub and the sentry. Whether the
    // guest is stopped or carries on, the sentry must stay sane (checked
    // by run_sentry) and, if the guest carries on, give it right answers.
    let out = stub_escape("doorbells");
    if out.code() == 0 {
        assert_eq!(
            out.stdout_str(),
            "scribbling over the doorbells\ngetpid after scribbling returned 1\n",
            "{}",
            out.describe()
        );
    } else {
        assert!(out.stderr_str().contains("sentry:"), "{}", out.describe());
    }
}
}

both_platforms! {
fn the_stub_region_cannot_be_mapped_or_changed() {
    let out = stub_escape("mmap");
    let text = out.stdout_str();
    for attempt in [
        "mmap MAP_FIXED at the stub code 0x700000000000",
        "mmap MAP_FIXED straddling the guest end",
        "mmap MAP_FIXED at the doorbells",
        "mmap MAP_FIXED at thread slot 0",
        "mmap MAP_FIXED above the stub slots",
        "mmap MAP_FIXED_NOREPLACE at the stub code",
        "mprotect the stub code rwx",
        "mprotect thread slot 0 PROT_NONE",
        "mremap MREMAP_FIXED onto the stub code",
        "mremap growing the last guest page in place",
    ] {
        assert!(
            text.contains(&format!("{attempt}: refused")),
            "{attempt} must fail\n{}",
            out.describe()
        );
    }
    assert!(
        text.contains("mmap with a hint in the stub region: placed below it"),
        "{}",
        out.describe()
    );
    assert!(
        text.contains("brk into the stub region: refused"),
        "{}",
        out.describe()
    );
    // munmap may report success, but the stub must survive it.
    assert!(
        text.contains("getpid after the attempts: 1\n"),
        "{}",
        out.describe()
    );
    assert!(text.ends_with("stub region intact\n"), "{}", out.describe());
    assert_eq!(out.code(), 0, "{}", out.describe());
}
}

both_platforms! {
fn mmap_fixed_at_guest_end_fails_with_an_error() {
    // The brief's case on its own: the errno must be a refusal.
    let out = stub_escape("mmap");
    let line = out
        .stdout_str()
        .lines()
        .find(|l| l.starts_with("mmap MAP_FIXED at the stub code 0x700000000000"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        ["ENOMEM", "EINVAL", "EPERM", "EACCES", "EEXIST"]
            .iter()
            .any(|e| line.contains(&format!("refused ({e})"))),
        "{line:?}\n{}",
        out.describe()
    );
}
}

both_platforms! {
fn writing_the_stub_code_is_sigsegv() {
    let out = stub_escape("write-code");
    assert_eq!(
        out.stdout_str(),
        "writing to the stub code\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.code(), 139, "{}", out.describe());
}
}
