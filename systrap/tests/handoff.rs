//! Runs hand-assembled guest code on systrap and serves its syscalls here,
//! without the kernel: the platform contract on its own.

use std::time::{Duration, Instant};

use sentry_systrap::systrap::Systrap;
use sentry_systrap::{Context, Platform, Prot, Regs, Stop};

const CODE: u64 = 0x40_0000;

/// mov eax, 39 (getpid); syscall; mov edi, eax; mov eax, 231 (exit_group); syscall; ud2
const GUEST: &[u8] = &[
    0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x89, 0xc7, 0xb8, 231, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b,
];

fn wait_stop(ctx: &mut dyn Context) -> Stop {
    let start = Instant::now();
    loop {
        if let Some(s) = ctx.poll() {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "guest did not stop"
        );
        std::hint::spin_loop();
    }
}

#[test]
fn guest_syscalls_trap_to_the_sentry() {
    let p = Systrap::new().unwrap();
    let mem = p.memory_file().clone();
    let range = mem.allocate(4096).unwrap();
    mem.write(range.offset, GUEST).unwrap();
    let mut ctx = p.new_address_space(&Regs::new(CODE, 0x50_0000), 0).unwrap();
    ctx.map(
        CODE,
        4096,
        Prot {
            read: true,
            write: false,
            exec: true,
        },
        range.offset,
    )
    .unwrap();
    ctx.resume().unwrap();
    assert_eq!(wait_stop(&mut *ctx), Stop::Syscall { compat: false });
    assert_eq!(ctx.regs().rax, 39);
    assert_eq!(ctx.regs().rip, CODE + 7);
    ctx.regs_mut().rax = 4242;
    ctx.resume().unwrap();
    let st = wait_stop(&mut *ctx);
    assert_eq!(st, Stop::Syscall { compat: false });
    assert_eq!(ctx.regs().rax, 231);
    assert_eq!(ctx.regs().rdi, 4242, "the guest saw our getpid result");
    // Serve exit_group as a kernel would: end the address space.
    let asp = ctx.address_space();
    asp.kill();
    let start = Instant::now();
    while !asp.is_dead() {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    mem.release(range);
}

#[test]
fn guest_fault_is_reported() {
    let p = Systrap::new().unwrap();
    let mem = p.memory_file().clone();
    let range = mem.allocate(4096).unwrap();
    // mov rax, [0x10]
    mem.write(range.offset, &[0x48, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0])
        .unwrap();
    let mut ctx = p.new_address_space(&Regs::new(CODE, 0x50_0000), 0).unwrap();
    ctx.map(
        CODE,
        4096,
        Prot {
            read: true,
            write: false,
            exec: true,
        },
        range.offset,
    )
    .unwrap();
    ctx.resume().unwrap();
    match wait_stop(&mut *ctx) {
        Stop::Fault { signo, addr, .. } => {
            assert_eq!(signo, libc::SIGSEGV);
            assert_eq!(addr, 0x10);
        }
        s => panic!("unexpected stop {s:?}"),
    }
    ctx.address_space().kill();
}
