//! Unit tests of the Kernel API: validation, lifecycle, nesting, counters.

use std::sync::Arc;
use std::time::Duration;

use sentry_systrap::systrap::Systrap;
use sentry_systrap::Platform;

use crate::init::{InitError, InitKernelArgs};
use crate::kernel::{ExitStatus, Kernel, KernelConfig, LifecycleError};
use crate::process::{CreateError, CreateProcessArgs};

fn platform() -> Arc<dyn Platform> {
    Arc::new(Systrap::new().expect("systrap platform"))
}

fn config() -> KernelConfig {
    KernelConfig {
        cpus: 1,
        strace: false,
        spin: false,
    }
}

fn kernel() -> Arc<Kernel> {
    Kernel::init(platform(), InitKernelArgs::host(1), config()).expect("init")
}

fn busybox() -> Option<&'static str> {
    std::path::Path::new("/bin/busybox")
        .exists()
        .then_some("/bin/busybox")
}

fn args(argv: &[&str]) -> CreateProcessArgs {
    CreateProcessArgs::new(
        argv[0],
        argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        vec![b"PATH=/bin".to_vec()],
        "/",
    )
}

#[test]
fn init_refuses_missing_arguments_each_with_its_own_error() {
    let mut a = InitKernelArgs::host(1);
    a.feature_set = None;
    assert!(matches!(
        Kernel::init(platform(), a, config()),
        Err(InitError::NoFeatureSet)
    ));
    let mut a = InitKernelArgs::host(1);
    a.timekeeper = None;
    assert!(matches!(
        Kernel::init(platform(), a, config()),
        Err(InitError::NoTimekeeper)
    ));
    let mut a = InitKernelArgs::host(1);
    a.root_user_namespace = None;
    assert!(matches!(
        Kernel::init(platform(), a, config()),
        Err(InitError::NoUserNamespace)
    ));
    let a = InitKernelArgs::host(0);
    let e = Kernel::init(platform(), a, config())
        .err()
        .expect("zero cores refused");
    assert!(matches!(e, InitError::NoApplicationCores));
    assert!(e.to_string().contains("application cores is 0"));
}

#[test]
fn host_cores_raise_application_cores() {
    let mut a = InitKernelArgs::host(1);
    a.use_host_cores = true;
    let k = Kernel::init(platform(), a, config()).expect("init");
    let want = crate::init::max_possible_cpu().expect("possible cpus") + 1;
    assert_eq!(k.application_cores(), want.max(1));
    k.shutdown();
}

#[test]
fn start_needs_tasks_and_runs_once() {
    let k = kernel();
    assert_eq!(k.start(), Err(LifecycleError::NoTasks));
    let Some(bb) = busybox() else {
        eprintln!("skipped: /bin/busybox missing");
        return;
    };
    let tg = k.create_process(args(&[bb, "true"])).expect("create");
    assert_eq!(tg.pid, 1, "the first process is global init");
    assert!(k.global_init().is_some());
    assert_eq!(k.start(), Ok(()));
    assert_eq!(k.start(), Err(LifecycleError::AlreadyStarted));
    assert_eq!(k.wait_exited(), ExitStatus::Exited(0));
    k.shutdown();
}

#[test]
fn create_process_validates_filename_and_working_directory() {
    let k = kernel();
    let mut a = args(&["x"]);
    a.filename.clear();
    a.argv.clear();
    assert!(matches!(k.create_process(a), Err(CreateError::NoCommand)));
    let mut a = args(&["relative/prog"]);
    a.filename.clear();
    let e = k.create_process(a).err().expect("relative argv[0] refused");
    assert!(
        e.to_string()
            .contains("'relative/prog' is not an absolute path"),
        "{e}"
    );
    if let Some(bb) = busybox() {
        let mut a = args(&[bb, "true"]);
        a.working_directory = "/no/such/dir".into();
        let e = k.create_process(a).err().expect("missing cwd refused");
        assert!(e.to_string().contains("/no/such/dir"), "{e}");
    }
    k.shutdown();
}

#[test]
fn pause_nests() {
    let k = kernel();
    k.pause();
    k.pause();
    k.unpause();
    assert!(k.is_paused(), "two pauses need two unpauses");
    k.unpause();
    assert!(!k.is_paused());
    k.shutdown();
}

#[test]
#[should_panic(expected = "unpause without a matching pause")]
fn unpause_without_pause_panics() {
    let k = kernel();
    k.unpause();
}

#[test]
fn paused_guests_make_no_progress() {
    paused_guests_make_no_progress_on(platform());
}

#[test]
fn paused_guests_make_no_progress_on_ptrace() {
    let p = sentry_systrap::ptrace::Ptrace::new().expect("ptrace platform");
    paused_guests_make_no_progress_on(Arc::new(p));
}

fn paused_guests_make_no_progress_on(platform: Arc<dyn Platform>) {
    let Some(bb) = busybox() else {
        eprintln!("skipped: /bin/busybox missing");
        return;
    };
    let k = Kernel::init(platform, InitKernelArgs::host(1), config()).expect("init");
    let tg = k
        .create_process(args(&[bb, "sh", "-c", "while true; do :; done"]))
        .expect("create");
    k.start().expect("start");
    let pid = tg.address_space.host_pid();
    let ticks = || sentry_systrap::host::process_ticks(pid).expect("stub ticks");
    std::thread::sleep(Duration::from_millis(300));
    k.pause();
    std::thread::sleep(Duration::from_millis(100));
    let t1 = ticks();
    std::thread::sleep(Duration::from_millis(500));
    let t2 = ticks();
    assert_eq!(t1, t2, "a paused guest used CPU");
    k.unpause();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ticks() > t2, "the guest did not run again after unpause");
    k.kill(ExitStatus::Signaled(9));
    assert_eq!(k.wait_exited(), ExitStatus::Signaled(9));
    k.shutdown();
}

#[test]
fn kill_ends_the_sandbox_with_its_status() {
    let Some(bb) = busybox() else { return };
    let k = kernel();
    k.create_process(args(&[bb, "sh", "-c", "while true; do :; done"]))
        .expect("create");
    k.start().expect("start");
    k.kill(ExitStatus::Exited(3));
    assert_eq!(k.wait_exited(), ExitStatus::Exited(3));
    k.shutdown();
}

#[test]
fn external_sigterm_ends_init_with_that_signal() {
    let Some(bb) = busybox() else { return };
    let k = kernel();
    k.create_process(args(&[bb, "sh", "-c", "while true; do :; done"]))
        .expect("create");
    k.start().expect("start");
    k.send_external_signal(libc::SIGTERM);
    assert_eq!(k.wait_exited(), ExitStatus::Signaled(libc::SIGTERM));
    assert_eq!(k.wait_exited().code(), 143);
    k.shutdown();
}

#[test]
fn first_exit_error_wins() {
    let k = kernel();
    assert_eq!(k.exit_error(), None);
    k.set_exit_error("first");
    k.set_exit_error("second");
    assert_eq!(k.exit_error().as_deref(), Some("first"));
    k.shutdown();
}

#[test]
fn unique_ids_are_never_zero() {
    let k = kernel();
    assert_eq!(k.unique_id(), 1);
    assert_eq!(k.unique_id(), 2);
    k.set_id_counters_for_test(u64::MAX - 1, 0);
    assert_eq!(k.unique_id(), u64::MAX);
    k.shutdown();
}

#[test]
#[should_panic(expected = "wrapped around")]
fn unique_id_panics_on_wrap() {
    let k = kernel();
    k.set_id_counters_for_test(u64::MAX, 0);
    k.unique_id();
}

#[test]
fn inotify_cookies_skip_zero_on_wrap() {
    let k = kernel();
    assert_eq!(k.generate_inotify_cookie(), 1);
    k.set_id_counters_for_test(0, u32::MAX - 1);
    assert_eq!(k.generate_inotify_cookie(), u32::MAX);
    assert_eq!(k.generate_inotify_cookie(), 1, "0 is skipped");
    k.shutdown();
}

#[test]
fn supervisor_context_has_root_credentials() {
    let k = kernel();
    let ctx = k.supervisor_context();
    assert_eq!(ctx.credentials, k.root_credentials);
    assert!(ctx.kernel.upgrade().is_some());
    k.shutdown();
}
