//! The syscall round-trip benchmark: what one guest `getpid` costs.
//!
//! Four functions in one criterion group, `getpid`, measured in the same
//! run so their numbers compare:
//!
//! - `native`: `tests/guests/getpid_loop.c` run directly on the host;
//! - `sigsys_floor`: `tests/guests/sigsys_floor.c`, which traps its own
//!   getpid with seccomp and answers it in an in-process SIGSYS handler: the
//!   floor for any seccomp-trap design, with nobody else to wake;
//! - `systrap`: the same `getpid_loop` under `sentry run --platform systrap`,
//!   so each call goes guest -> SIGSYS -> stub -> sentry -> back;
//! - `ptrace`: the same under `sentry run --platform ptrace`, so each call
//!   is a ptrace syscall stop that the sentry answers and resumes.
//!
//! The guests are compiled once at start-up (`gcc -O2 -static`, into a
//! temporary directory; without gcc or a static libc the bench says so and
//! does nothing). Every sample runs a guest with `N = iters` and uses the
//! time the guest itself measured around its loop and printed on stdout, so
//! process start-up (and the sentry's own start-up) is not in the numbers.
//! A platform that cannot run the guest is reported as
//! `getpid/<platform>: skipped (<reason>)` and left out. After the group,
//! each guest runs once more with `N = 200000` for a one-line summary of the
//! per-call costs and the systrap/floor and ptrace/systrap ratios. The
//! shared machinery is in `benches/common`.

mod common;

use std::time::Duration;

use common::{bench_group, ratio, runners, setup, show_ns, summary_ns, Guest, Runner};
use criterion::Criterion;

/// Calls per guest run for the summary line.
const SUMMARY_CALLS: u64 = 200_000;

const GROUP: &str = "getpid";

fn main() {
    let Some((dir, exes)) = setup("syscall", &["getpid_loop", "sigsys_floor"]) else {
        return;
    };
    let getpid_loop = Guest::new(&exes[0]);
    let sigsys_floor = Guest::new(&exes[1]);

    let mut all = runners(GROUP, dir.path(), &getpid_loop);
    // The floor runs on the host too; it fails only where seccomp is
    // unavailable. It goes second, next to the native baseline.
    if let Some(floor) = Runner::native("sigsys_floor", dir.path(), &sigsys_floor).probe(GROUP) {
        let at = all.iter().take_while(|r| r.name() == "native").count();
        all.insert(at, floor);
    }

    let mut c = Criterion::default().configure_from_args();
    bench_group(&mut c, GROUP, &all, Duration::from_secs(3), None);
    c.final_summary();

    // One more run each for a summary line from this run's own numbers.
    let per_call = |name: &str| summary_ns(&all, name, SUMMARY_CALLS);
    let native = per_call("native");
    let floor = per_call("sigsys_floor");
    let systrap = per_call("systrap");
    let ptrace = per_call("ptrace");
    println!(
        "getpid per call (N={SUMMARY_CALLS}): native {}, sigsys_floor {}, systrap {}, \
         ptrace {}; systrap/floor {}, ptrace/systrap {}",
        show_ns(native),
        show_ns(floor),
        show_ns(systrap),
        show_ns(ptrace),
        ratio(systrap, floor),
        ratio(ptrace, systrap)
    );
}
