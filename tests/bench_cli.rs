//! `sentry bench`: the report a script reads (`--json`) and the errors a
//! person sees.
//!
//! The runs are short (20000 calls per thread) so the file takes seconds.
//! The only timing checked is the one no machine can get wrong: a trapped
//! syscall costs more than a native one.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{assert_no_leftovers, platform, run, sentry, Output};

/// A JSON value: the subset `sentry bench --json` prints.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Obj(BTreeMap<String, Json>),
    Arr(Vec<Json>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .get(key)
                .unwrap_or_else(|| panic!("no key {key:?} in {self:?}")),
            _ => panic!("{self:?} is not an object (looking up {key:?})"),
        }
    }

    fn num(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            _ => panic!("{self:?} is not a number"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("{self:?} is not a string"),
        }
    }
}

/// A strict little JSON parser: the whole input must be one value.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.trim().as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        if p.i != p.s.len() {
            return Err(format!("trailing text at byte {}", p.i));
        }
        Ok(v)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    let Json::Str(k) = self.value()? else {
                        return Err(format!("object key is not a string at byte {}", self.i));
                    };
                    self.expect(b':')?;
                    let v = self.value()?;
                    if m.insert(k.clone(), v).is_some() {
                        return Err(format!("duplicate key {k:?}"));
                    }
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("bad object at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("bad array at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let start = self.i;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            let s = std::str::from_utf8(&self.s[start..self.i])
                                .map_err(|e| e.to_string())?
                                .to_string();
                            self.i += 1;
                            return Ok(Json::Str(s));
                        }
                        // Our strings need no escapes.
                        b'\\' => return Err("escapes are not expected".into()),
                        _ => self.i += 1,
                    }
                }
                Err("unterminated string".into())
            }
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                let text =
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {text:?}"))
            }
            _ => Err(format!("unexpected input at byte {}", self.i)),
        }
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
    let report = Parser::parse(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
    assert_eq!(report.get("platform").str(), p);
    assert_eq!(report.get("syscall").str(), syscall);
    assert_eq!(report.get("threads").num(), threads as f64);
    assert_eq!(report.get("iters").num(), ITERS as f64);
    assert!(report.get("tsc_ghz").num() > 0.0, "{text}");
    for runner in ["native", "floor", "sandbox"] {
        let r = report.get(runner);
        // The warm-up calls come on top of --iters and are not counted.
        assert_eq!(
            r.get("count").num(),
            (ITERS * threads) as f64,
            "{runner}: {text}"
        );
        let p50 = r.get("p50_ns").num();
        let (p90, p99, p999) = (
            r.get("p90_ns").num(),
            r.get("p99_ns").num(),
            r.get("p999_ns").num(),
        );
        let (min, max) = (r.get("min_ns").num(), r.get("max_ns").num());
        assert!(p50 > 0.0, "{runner}: p50 {p50}: {text}");
        assert!(
            min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
            "{runner}: percentiles out of order: {text}"
        );
        assert!(r.get("mean_ns").num() > 0.0, "{runner}: {text}");
    }
    let native = report.get("native").get("p50_ns").num();
    let sandbox = report.get("sandbox").get("p50_ns").num();
    assert!(
        native < sandbox,
        "a sandboxed {syscall} (p50 {sandbox} ns) should cost more than a native one ({native} ns): {text}"
    );
    let ratio = report.get("ratios").get("p50_vs_native").num();
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
