//! Per-operation benchmarks: what common guest system calls cost natively
//! and under each sentry platform.
//!
//! Four criterion groups, each with `native`, `systrap` and `ptrace`
//! functions measured in the same run so their numbers compare. All run
//! `tests/guests/bench_ops.c`, which times a loop of one operation:
//!
//! - `pipe_pingpong`: one byte there and back between two guest threads over
//!   two pipes; one iteration is one round trip (two writes, two reads, and
//!   a wake-up of each thread);
//! - `clock_gettime`: `syscall(SYS_clock_gettime, CLOCK_MONOTONIC, ..)`, a
//!   real system call rather than the vDSO, which the sandbox does not have;
//! - `write_devnull`: `write(fd, buf, 1)` to `/dev/null`;
//! - `open_read_close`: open a 300-byte file (created in the bench's
//!   temporary directory), read it whole, close it.
//!
//! `native` runs the guest on the host; `systrap` and `ptrace` run it under
//! `sentry run --platform <platform>`. The guest is compiled once at
//! start-up (`gcc -O2 -static -pthread`, into a temporary directory; without
//! gcc or a static libc the bench says so and does nothing). Every sample
//! runs the guest with `N = iters` and uses the time it measured around its
//! loop and printed, so process start-up (and the sentry's) is not in the
//! numbers. A platform that cannot run an operation is reported as
//! `<group>/<platform>: skipped (<reason>)` and left out. After the groups,
//! each configuration runs once more for a summary table of the cost per
//! operation and the systrap/native and ptrace/systrap ratios. The shared
//! machinery is in `benches/common`.

mod common;

use std::time::Duration;

use common::{bench_group, ratio, runners, setup, show_ns, summary_ns, Guest, Runner};
use criterion::Criterion;

/// The operations: criterion group (and guest operation) name, and the
/// operations per guest run for the summary table.
const OPS: [(&str, u64); 4] = [
    ("pipe_pingpong", 20_000),
    ("clock_gettime", 100_000),
    ("write_devnull", 100_000),
    ("open_read_close", 50_000),
];

/// The size of the file `open_read_close` reads.
const SMALL_FILE_BYTES: usize = 300;

fn main() {
    let Some((dir, exes)) = setup("ops", &["bench_ops"]) else {
        return;
    };
    let small_file = dir.path().join("small.txt");
    let text: Vec<u8> = (0..SMALL_FILE_BYTES)
        .map(|i| {
            if i % 60 == 59 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    if let Err(e) = std::fs::write(&small_file, text) {
        eprintln!(
            "skipping the ops bench: write {}: {e}",
            small_file.display()
        );
        return;
    }

    let groups: Vec<(&str, u64, Vec<Runner>)> = OPS
        .iter()
        .map(|&(op, summary_ops)| {
            let mut guest = Guest::new(&exes[0]).arg(op);
            if op == "open_read_close" {
                guest = guest.arg(&small_file);
            }
            (op, summary_ops, runners(op, dir.path(), &guest))
        })
        .collect();

    let mut c = Criterion::default().configure_from_args();
    for (op, _, all) in &groups {
        bench_group(&mut c, op, all, Duration::from_secs(2), None);
    }
    c.final_summary();

    // One more run per configuration for a summary from this run's own
    // numbers.
    println!();
    println!("cost per operation (one guest run each):");
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>15} {:>15}",
        "operation", "native", "systrap", "ptrace", "systrap/native", "ptrace/systrap"
    );
    for (op, summary_ops, all) in &groups {
        let native = summary_ns(all, "native", *summary_ops);
        let systrap = summary_ns(all, "systrap", *summary_ops);
        let ptrace = summary_ns(all, "ptrace", *summary_ops);
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>15} {:>15}",
            op,
            show_ns(native),
            show_ns(systrap),
            show_ns(ptrace),
            ratio(systrap, native),
            ratio(ptrace, systrap)
        );
    }
}
