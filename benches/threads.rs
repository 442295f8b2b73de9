//! The multi-threaded syscall throughput benchmark: how guest `getpid`
//! calls per second scale with the number of guest threads.
//!
//! One criterion group, `syscall_throughput`, with nine functions measured
//! in the same run so their numbers compare:
//!
//! - `native/1T`, `native/2T`, `native/4T`: `tests/guests/syscall_threads.c`
//!   run directly on the host with 1, 2 and 4 threads;
//! - `systrap/1T`, `systrap/2T`, `systrap/4T`: the same guest under
//!   `sentry run --platform systrap`, so each call goes guest -> SIGSYS ->
//!   stub -> sentry -> back, from several guest threads at once;
//! - `ptrace/1T`, `ptrace/2T`, `ptrace/4T`: the same under
//!   `sentry run --platform ptrace`.
//!
//! The guest is compiled once at start-up (`gcc -O2 -static -pthread`, into
//! a temporary directory; without gcc or a static libc the bench says so and
//! does nothing). A sample of `iters` calls runs the guest as
//! `syscall_threads T N` with `N = iters / T` (at least 1), so the threads
//! share the calls; the guest prints the time from its start barrier to the
//! last join, and that time, scaled from the `T * N` calls made to `iters`,
//! is the sample. Process and thread start-up (and the sentry's own
//! start-up) are not in the numbers. Each function's throughput is one
//! element per iteration, so criterion reports calls per second.
//!
//! A configuration the sentry cannot run is reported as
//! `syscall_throughput/<platform>/<T>T: skipped (<reason>)` and left out.
//! After the group, every configuration runs once more with
//! `T * N = 400000` calls for a summary table of calls per second and the
//! scaling ratios 2T/1T and 4T/1T. The shared machinery is in
//! `benches/common`.

mod common;

use std::time::Duration;

use common::{bench_group, ratio, runners, setup, summary_ns, Guest, PLATFORMS};
use criterion::{Criterion, Throughput};

/// Total calls (over all threads) per guest run for the summary table.
const SUMMARY_CALLS: u64 = 400_000;

/// The guest thread counts measured.
const THREADS: [u64; 3] = [1, 2, 4];

const GROUP: &str = "syscall_throughput";

fn main() {
    let Some((dir, exes)) = setup("threads", &["syscall_threads"]) else {
        return;
    };
    let mut all = Vec::new();
    for t in THREADS {
        let guest = Guest::new(&exes[0])
            .arg(t.to_string())
            .shared(t, format!("{t}T"));
        all.extend(runners(GROUP, dir.path(), &guest));
    }
    // Grouped by kind (native, then each platform), then by thread count.
    let order = |kind: &str| {
        std::iter::once("native")
            .chain(PLATFORMS)
            .position(|k| k == kind)
    };
    all.sort_by_key(|r| order(r.kind()));

    let mut c = Criterion::default().configure_from_args();
    // One iteration is one getpid call, whichever thread makes it.
    bench_group(
        &mut c,
        GROUP,
        &all,
        Duration::from_secs(2),
        Some(Throughput::Elements(1)),
    );
    c.final_summary();

    // One more run per configuration for a summary from this run's own
    // numbers.
    let kinds: Vec<&str> = std::iter::once("native").chain(PLATFORMS).collect();
    let rates: Vec<Vec<Option<f64>>> = kinds
        .iter()
        .map(|kind| {
            THREADS
                .iter()
                .map(|t| {
                    summary_ns(&all, &format!("{kind}/{t}T"), SUMMARY_CALLS)
                        .filter(|&ns| ns > 0.0)
                        .map(|ns| 1e9 / ns)
                })
                .collect()
        })
        .collect();
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |r| format!("{r:.0}"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!();
    println!(
        "syscall throughput, getpid calls/s (T*N = {SUMMARY_CALLS} calls per run, \
         {cores} host cores):"
    );
    print!("{:>8}", "threads");
    for kind in &kinds {
        print!(" {kind:>16}");
    }
    println!();
    for (i, t) in THREADS.iter().enumerate() {
        print!("{:>8}", format!("{t}T"));
        for row in &rates {
            print!(" {:>16}", show(row[i]));
        }
        println!();
    }
    for (kind, row) in kinds.iter().zip(&rates) {
        println!(
            "{:<16} 2T/1T {}, 4T/1T {}",
            format!("{kind} scaling:"),
            ratio(row[1], row[0]),
            ratio(row[2], row[0])
        );
    }
    println!("(systrap target: 2T/1T >= 1.7x on 2 cores)");
}
