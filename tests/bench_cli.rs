//! `sentry bench`: the report a script reads (`--json`) and the errors a
//! person sees.
//!
//! The runs are short (20000 calls per thread) so the file takes seconds.
//! The only timing checked is the one no machine can get wrong: a trapped
//! syscall costs more than a native one.

#[macro_use]
mod common;

use std::process::Command;

use serde_json::Value;

use common::{assert_no_leftovers, platform, run, sentry, Output};

/// Typed lookups in the report that fail with the report in the message.
trait Field {
    fn at(&self, key: &str) -> &Self;
    fn num(&self) -> f64;
    fn text(&self) -> &str;
}

impl Field for Value {
    fn at(&self, key: &str) -> &Value {
        self.get(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {self}"))
    }

    fn num(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("{self} is not a number"))
    }

    fn text(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("{self} is not a string"))
    }
}

fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(sentry());
    cmd.arg("bench").args(args);
    let out = run(&mut cmd, None);
    assert_no_leftovers(&format!("sentry bench {args:?}"));
    common::assert_sentry_sane(&format!("sentry bench {args:?}"), &out);
    out
}

const ITERS: u64 = 20_000;

/// Runs the JSON report for `syscall` with `threads` threads and checks
/// every runner's numbers.
fn check_report(syscall: &str, threads: u64) {
    let p = platform();
    let iters = ITERS.to_string();
    let th = threads.to_string();
    let out = bench(&[
        "--platform",
        p,
        "--syscall",
        syscall,
        "--iters",
        &iters,
        "--threads",
        &th,
        "--json",
    ]);
    assert_eq!(out.code(), 0, "sentry bench failed\n{}", out.describe());
    let text = out.stdout_str();
    assert_eq!(text.lines().count(), 1, "one JSON line expected:\n{text}");
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
    assert_eq!(report.at("platform").text(), p);
    assert_eq!(report.at("syscall").text(), syscall);
    assert_eq!(report.at("threads").num(), threads as f64);
    assert_eq!(report.at("iters").num(), ITERS as f64);
    assert!(report.at("tsc_ghz").num() > 0.0, "{text}");
    for runner in ["native", "floor", "sandbox"] {
        let r = report.at(runner);
        // The warm-up calls come on top of --iters and are not counted.
        assert_eq!(
            r.at("count").num(),
            (ITERS * threads) as f64,
            "{runner}: {text}"
        );
        let p50 = r.at("p50_ns").num();
        let (p90, p99, p999) = (
            r.at("p90_ns").num(),
            r.at("p99_ns").num(),
            r.at("p999_ns").num(),
        );
        let (min, max) = (r.at("min_ns").num(), r.at("max_ns").num());
        assert!(p50 > 0.0, "{runner}: p50 {p50}: {text}");
        assert!(
            min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
            "{runner}: percentiles out of order: {text}"
        );
        assert!(r.at("mean_ns").num() > 0.0, "{runner}: {text}");
    }
    let native = report.at("native").at("p50_ns").num();
    let sandbox = report.at("sandbox").at("p50_ns").num();
    assert!(
        native < sandbox,
        "a sandboxed {syscall} (p50 {sandbox} ns) should cost more than a native one ({native} ns): {text}"
    );
    let ratio = report.at("ratios").at("p50_vs_native").num();
    assert!((ratio - sandbox / native).abs() < 0.01 * ratio, "{text}");
}

both_platforms! {
    fn json_report_getpid() {
        check_report("getpid", 1);
    }
}

both_platforms! {
    fn json_report_clock_gettime() {
        check_report("clock_gettime", 1);
    }
}

#[test]
fn json_report_write_with_threads() {
    check_report("write", 2);
}

both_platforms! {
    fn cpus_reaches_the_sandboxed_run() {
        let out = bench(&["--platform", common::platform(), "--cpus", "1", "--iters", "2000"]);
        assert_eq!(out.code(), 0, "sentry bench --cpus 1 failed\n{}", out.describe());
        assert!(out.stdout_str().contains("p50"), "{}", out.describe());
    }
}

#[test]
fn human_report_names_every_runner() {
    let out = bench(&["--iters", "2000", "--syscall", "read"]);
    assert_eq!(out.code(), 0, "sentry bench failed\n{}", out.describe());
    let text = out.stdout_str();
    common::assert_contains_all(
        "sentry bench",
        &text,
        &[
            "platform systrap, syscall read, threads 1, 2000 calls per thread",
            "p50",
            "p99.9",
            "\nnative ",
            "\nfloor ",
            "\nsystrap ",
            "systrap/native p50 ",
            "systrap/floor p50 ",
        ],
    );
}

#[test]
fn unknown_syscall_is_a_usage_error() {
    let out = bench(&["--syscall", "nosuch"]);
    assert_eq!(out.code(), 2, "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
    common::assert_contains_all(
        "sentry bench --syscall nosuch",
        &out.stderr_str(),
        &["unknown syscall \"nosuch\"", "getpid", "usage:"],
    );
}

#[test]
fn bad_numbers_are_usage_errors() {
    for args in [
        &["--iters", "0"][..],
        &["--iters", "lots"],
        &["--threads", "0"],
        &["--iters", "100000000"],
        &["--threads"],
        &["--frobnicate"],
    ] {
        let out = bench(args);
        assert_eq!(out.code(), 2, "sentry bench {args:?}\n{}", out.describe());
        assert!(
            out.stderr_str().starts_with("sentry bench: "),
            "sentry bench {args:?}\n{}",
            out.describe()
        );
    }
}

#[test]
fn failing_sandbox_is_reported() {
    let out = bench(&["--platform", "nosuch", "--iters", "1000"]);
    assert_eq!(out.code(), 1, "{}", out.describe());
    common::assert_contains_all(
        "sentry bench --platform nosuch",
        &out.stderr_str(),
        &["sandboxed", "nosuch", "exit status 125", "unknown platform"],
    );
}
