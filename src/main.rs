//! `sentry`: run an unmodified x86-64 Linux program in the sandbox.
//!
//! ```text
//! sentry run [--platform systrap|ptrace] [--cpus N] [--strace] [--no-spin] [--host-cores] -- PROGRAM [ARGS...]
//! sentry syscalls        print the syscall support matrix
//! sentry bench [--platform P] [--threads N] [--syscall NAME] [--iters N] [--json]
//! ```
//!
//! Exit status: the guest's, or 128+N when it died of signal N; 125 when the
//! sentry itself failed, 126 when PROGRAM cannot be run, 127 when it is not
//! found.

mod bench;

use std::process::ExitCode;
use std::sync::Arc;

use sentry_kernel::{CreateError, CreateProcessArgs, InitKernelArgs, Kernel, KernelConfig};
use sentry_systrap::ptrace::Ptrace;
use sentry_systrap::systrap::Systrap;
use sentry_systrap::Platform;

const USAGE: &str =
    "usage: sentry run [--platform systrap|ptrace] [--cpus N] [--strace] [--no-spin] [--host-cores] -- PROGRAM [ARGS...]
       sentry syscalls
       sentry bench [--platform systrap] [--threads N] [--syscall getpid|clock_gettime|write|...] [--iters N] [--json]";

struct RunArgs {
    platform: String,
    cpus: Option<usize>,
    strace: bool,
    spin: bool,
    host_cores: bool,
    program: Vec<String>,
}

fn parse_run(args: &[String]) -> Result<RunArgs, String> {
    let mut r = RunArgs {
        platform: "systrap".into(),
        cpus: None,
        strace: false,
        spin: true,
        host_cores: false,
        program: vec![],
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = |i: &mut usize| -> Result<String, String> {
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--" => {
                r.program = args[i + 1..].to_vec();
                break;
            }
            "--platform" => r.platform = value(&mut i)?,
            "--cpus" => {
                let v = value(&mut i)?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--cpus: not a number: {v}"))?;
                if n == 0 || n > sentry_systrap::MAX_WORKERS {
                    return Err(format!(
                        "--cpus must be between 1 and {}",
                        sentry_systrap::MAX_WORKERS
                    ));
                }
                r.cpus = Some(n);
            }
            "--strace" => r.strace = true,
            "--no-spin" => r.spin = false,
            "--host-cores" => r.host_cores = true,
            s if s.starts_with("--platform=") => r.platform = s["--platform=".len()..].into(),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => {
                r.program = args[i..].to_vec();
                break;
            }
        }
        i += 1;
    }
    if r.program.is_empty() {
        return Err("no program given".into());
    }
    Ok(r)
}

/// Finds PROGRAM like a shell: a path when it has a slash, else in $PATH.
fn find_program(name: &str) -> Option<String> {
    if name.contains('/') {
        return Some(name.to_string());
    }
    // (Explicit paths are checked for execute permission by the loader.)
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = format!("{dir}/{name}");
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Some(cand);
            }
        }
    }
    None
}

/// Terminal and termination signals go to the guest, not to us.
const FORWARDED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn run(args: RunArgs) -> ExitCode {
    // Blocked before any thread exists (the platform starts some), so that
    // only the forwarding thread's sigwait ever takes them.
    sentry_systrap::host::block_signals(&FORWARDED);
    let platform: Arc<dyn Platform> = match args.platform.as_str() {
        "systrap" => match Systrap::new() {
            Ok(p) => Arc::new(p),
            Err(e) => {
                eprintln!("sentry: {e}");
                return ExitCode::from(125);
            }
        },
        "ptrace" => match Ptrace::new() {
            Ok(p) => Arc::new(p),
            Err(e) => {
                eprintln!("sentry: {e}");
                return ExitCode::from(125);
            }
        },
        other => {
            eprintln!("sentry: unknown platform {other:?} (available: systrap, ptrace)");
            return ExitCode::from(125);
        }
    };
    let Some(filename) = find_program(&args.program[0]) else {
        eprintln!("sentry: {}: command not found", args.program[0]);
        return ExitCode::from(127);
    };
    let cpus = args.cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let config = KernelConfig {
        cpus,
        strace: args.strace,
        spin: args.spin,
    };
    let mut init = InitKernelArgs::host(cpus);
    init.use_host_cores = args.host_cores;
    let kernel = match Kernel::init(platform, init, config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sentry: cannot start the kernel: {e}");
            return ExitCode::from(125);
        }
    };
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into());
    let argv = args
        .program
        .iter()
        .map(|s| s.clone().into_bytes())
        .collect();
    let envv = std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.into_encoded_bytes();
            e.push(b'=');
            e.extend_from_slice(v.as_encoded_bytes());
            e
        })
        .collect();
    if let Err(e) = kernel.create_process(CreateProcessArgs::new(filename, argv, envv, cwd)) {
        eprintln!("sentry: {e}");
        let code = match &e {
            CreateError::Load(sentry_kernel::loader::LoadError::Open { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            CreateError::Load(_) => 126,
            _ => 125,
        };
        kernel.shutdown();
        return ExitCode::from(code);
    }
    if let Err(e) = kernel.start() {
        eprintln!("sentry: {e}");
        kernel.shutdown();
        return ExitCode::from(125);
    }
    let weak = Arc::downgrade(&kernel);
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let sig = sentry_systrap::host::wait_signal(&FORWARDED);
            let Some(k) = weak.upgrade() else { return };
            k.send_external_signal(sig);
        });
    let status = kernel.wait_exited();
    if let Some(why) = kernel.exit_reason() {
        eprintln!("sentry: {why}");
    }
    kernel.shutdown();
    ExitCode::from(status.code() as u8)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => match parse_run(&args[1..]) {
            Ok(r) => run(r),
            Err(e) => {
                eprintln!("sentry: {e}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("bench") => bench::main(&args[1..]),
        Some("syscalls") => {
            print!("{}", sentry_kernel::syscalls::support_matrix());
            ExitCode::SUCCESS
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
