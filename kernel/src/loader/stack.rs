//! The initial process stack of a new x86-64 program (System V ABI).
//!
//! After the loader has mapped a program it calls [`build`] with the top of
//! the new stack, the argument and environment strings and the auxiliary
//! vector entries it knows (`AT_PHDR`, `AT_ENTRY`, ...). `build` lays the
//! stack out in a byte buffer exactly as Linux does and returns a
//! [`StackImage`]; the loader copies `bytes` into guest memory at `base` and
//! starts the program with `rsp = sp`. Going down from the top:
//!
//! ```text
//! stack_top ->  8 zero bytes
//!               execfn string                      <- AT_EXECFN
//!               envp strings (after the argv strings, same order upwards)
//!               argv strings                       <- arg_start
//!               platform string "x86_64"           <- AT_PLATFORM
//!               padding to 16 bytes
//!               16 random bytes                    <- AT_RANDOM
//!               padding so that sp is 16-byte aligned
//!               auxv: caller's pairs, AT_RANDOM, AT_EXECFN, AT_PLATFORM, AT_NULL
//!               envp[0..envc], NULL
//!               argv[0..argc], NULL
//! sp = base ->  argc
//! ```
//!
//! All values are little-endian 64-bit words. The whole image is limited to
//! [`MAX_STACK_IMAGE`] bytes; beyond that `build` fails like `execve` does
//! with `E2BIG`.

/// Largest initial stack image [`build`] produces, in bytes (8 MiB, the
/// default stack size limit); larger argument lists fail with
/// [`StackError::TooLong`].
pub const MAX_STACK_IMAGE: u64 = 8 * 1024 * 1024;

/// `AT_NULL`: ends the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// `AT_PHDR`: address of the program headers in memory.
pub const AT_PHDR: u64 = 3;
/// `AT_PHENT`: size of one program header.
pub const AT_PHENT: u64 = 4;
/// `AT_PHNUM`: number of program headers.
pub const AT_PHNUM: u64 = 5;
/// `AT_PAGESZ`: the page size.
pub const AT_PAGESZ: u64 = 6;
/// `AT_BASE`: load address of the interpreter (dynamic linker).
pub const AT_BASE: u64 = 7;
/// `AT_FLAGS`: flags (always 0 on Linux).
pub const AT_FLAGS: u64 = 8;
/// `AT_ENTRY`: the program's entry point.
pub const AT_ENTRY: u64 = 9;
/// `AT_UID`: real user id.
pub const AT_UID: u64 = 11;
/// `AT_EUID`: effective user id.
pub const AT_EUID: u64 = 12;
/// `AT_GID`: real group id.
pub const AT_GID: u64 = 13;
/// `AT_EGID`: effective group id.
pub const AT_EGID: u64 = 14;
/// `AT_PLATFORM`: address of the platform string (`"x86_64"`).
pub const AT_PLATFORM: u64 = 15;
/// `AT_HWCAP`: CPU feature bits (CPUID leaf 1 EDX on x86).
pub const AT_HWCAP: u64 = 16;
/// `AT_CLKTCK`: frequency of `times()` ticks (100).
pub const AT_CLKTCK: u64 = 17;
/// `AT_SECURE`: nonzero for a set-id program.
pub const AT_SECURE: u64 = 23;
/// `AT_RANDOM`: address of 16 random bytes.
pub const AT_RANDOM: u64 = 25;
/// `AT_HWCAP2`: more CPU feature bits.
pub const AT_HWCAP2: u64 = 26;
/// `AT_EXECFN`: address of the executed file name.
pub const AT_EXECFN: u64 = 31;
/// `AT_SYSINFO_EHDR`: address of the vDSO.
pub const AT_SYSINFO_EHDR: u64 = 33;
/// `AT_MINSIGSTKSZ`: minimal signal stack size.
pub const AT_MINSIGSTKSZ: u64 = 51;

/// Zero bytes left at the very top of the stack, above the execfn string.
const TOP_PADDING: u64 = 8;
/// Size of the `AT_RANDOM` data.
const RANDOM_LEN: u64 = 16;
/// Required alignment of `sp`.
const SP_ALIGN: u64 = 16;

/// One auxiliary vector entry: `(type, value)`, e.g.
/// `AuxEntry(AT_PAGESZ, 4096)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuxEntry(pub u64, pub u64);

/// A built initial stack, ready to be copied into guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImage {
    /// The stack contents, to be copied so that `bytes[0]` lands at `base`;
    /// they end just below `stack_top`.
    pub bytes: Vec<u8>,
    /// Guest address of `bytes[0]` (equal to `sp`).
    pub base: u64,
    /// Initial `rsp`: the address of `argc`, 16-byte aligned.
    pub sp: u64,
    /// Address of the first argument string (for `/proc/PID/cmdline`).
    pub arg_start: u64,
    /// End of the argument strings, after the last NUL.
    pub arg_end: u64,
    /// Address of the first environment string (for `/proc/PID/environ`).
    pub env_start: u64,
    /// End of the environment strings, after the last NUL.
    pub env_end: u64,
}

/// Why the initial stack cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// Arguments, environment and auxiliary data exceed
    /// [`MAX_STACK_IMAGE`] (`E2BIG`).
    #[error(
        "argument list too long ({needed} bytes of arguments, environment and auxiliary data; the limit is {MAX_STACK_IMAGE})"
    )]
    TooLong {
        /// Bytes the stack image would need (saturated on overflow).
        needed: u64,
    },
    /// The stack image does not fit below `stack_top`.
    #[error("the stack top {stack_top:#x} is too low for a {needed}-byte initial stack")]
    StackTopTooLow {
        /// The requested stack top.
        stack_top: u64,
        /// Bytes the stack image needs.
        needed: u64,
    },
    /// The caller passed an auxiliary entry that `build` adds itself
    /// (`AT_NULL`, `AT_RANDOM`, `AT_EXECFN` or `AT_PLATFORM`).
    #[error("auxiliary vector entry type {0} is reserved for the stack builder")]
    ReservedAuxEntry(u64),
}

/// Sum of `len + 1` over `strings`, or `None` on overflow.
fn strings_size(strings: &[Vec<u8>]) -> Option<u64> {
    strings.iter().try_fold(0u64, |acc, s| {
        acc.checked_add(u64::try_from(s.len()).ok()?)?
            .checked_add(1)
    })
}

/// Adds `n` to the depth `depth` (bytes below the stack top), failing
/// with [`StackError::TooLong`] on overflow.
fn deeper(depth: u64, n: u64) -> Result<u64, StackError> {
    depth
        .checked_add(n)
        .ok_or(StackError::TooLong { needed: u64::MAX })
}

/// Grows `depth` until `stack_top - depth` is a multiple of `align` (a
/// power of two). Works on addresses modulo 2^64, so it never fails for
/// a stack top that turns out to be too low; that is reported later.
fn align_depth(stack_top: u64, depth: u64, align: u64) -> Result<u64, StackError> {
    let misalign = stack_top.wrapping_sub(depth) & (align - 1);
    deeper(depth, misalign)
}

/// Builds the initial stack of a program whose stack ends (exclusive) at
/// `stack_top`.
///
/// `argv` and `envp` are copied with a NUL appended to each (a string with
/// an interior NUL is seen by the guest cut short there). `auxv` holds the
/// caller's auxiliary entries; `build` appends `AT_RANDOM` (pointing at
/// `random`), `AT_EXECFN` (pointing at a copy of `execfn`), `AT_PLATFORM`
/// (pointing at a copy of `platform`, omitted when `platform` is empty) and
/// the closing `AT_NULL`, so those types must not appear in `auxv`.
///
/// # Errors
///
/// [`StackError::TooLong`] if the image would exceed [`MAX_STACK_IMAGE`],
/// [`StackError::StackTopTooLow`] if it does not fit below `stack_top`, and
/// [`StackError::ReservedAuxEntry`] for a reserved type in `auxv`.
pub fn build(
    stack_top: u64,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    auxv: &[AuxEntry],
    execfn: &[u8],
    platform: &[u8],
    random: [u8; 16],
) -> Result<StackImage, StackError> {
    if let Some(e) = auxv
        .iter()
        .find(|e| matches!(e.0, AT_NULL | AT_RANDOM | AT_EXECFN | AT_PLATFORM))
    {
        return Err(StackError::ReservedAuxEntry(e.0));
    }
    let too_long = StackError::TooLong { needed: u64::MAX };
    let len_of = |s: &[u8]| u64::try_from(s.len()).map_err(|_| too_long.clone());

    // Lay the image out as depths below stack_top; addresses come later,
    // once the total is known to fit.
    let execfn_depth = deeper(deeper(TOP_PADDING, len_of(execfn)?)?, 1)?;
    let argv_size = strings_size(argv).ok_or(too_long.clone())?;
    let envp_size = strings_size(envp).ok_or(too_long.clone())?;
    let strings_depth = deeper(deeper(execfn_depth, envp_size)?, argv_size)?;
    let platform_size = if platform.is_empty() {
        0
    } else {
        deeper(len_of(platform)?, 1)?
    };
    let platform_depth = deeper(strings_depth, platform_size)?;
    let random_depth = deeper(align_depth(stack_top, platform_depth, 16)?, RANDOM_LEN)?;

    let aux_pairs = u64::try_from(auxv.len())
        .ok()
        .and_then(|n| n.checked_add(if platform.is_empty() { 3 } else { 4 }));
    let argc = u64::try_from(argv.len()).map_err(|_| too_long.clone())?;
    let envc = u64::try_from(envp.len()).map_err(|_| too_long.clone())?;
    // argc, argv[] + NULL, envp[] + NULL, auxv pairs (AT_NULL included).
    let words = aux_pairs
        .and_then(|pairs| pairs.checked_mul(2))
        .and_then(|w| w.checked_add(argc))
        .and_then(|w| w.checked_add(envc))
        .and_then(|w| w.checked_add(3));
    let vector_size = words.and_then(|w| w.checked_mul(8)).ok_or(too_long)?;
    let total = align_depth(stack_top, deeper(random_depth, vector_size)?, SP_ALIGN)?;

    if total > MAX_STACK_IMAGE {
        return Err(StackError::TooLong { needed: total });
    }
    let sp = stack_top
        .checked_sub(total)
        .ok_or(StackError::StackTopTooLow {
            stack_top,
            needed: total,
        })?;

    // Everything fits: total <= MAX_STACK_IMAGE and no address underflows,
    // so the plain arithmetic below cannot overflow.
    let mut img = Image {
        base: sp,
        bytes: vec![0; total as usize],
    };
    let execfn_addr = stack_top - execfn_depth;
    let arg_start = stack_top - strings_depth;
    let env_start = arg_start + argv_size;
    let platform_addr = stack_top - platform_depth;
    let random_addr = stack_top - random_depth;

    img.put(execfn_addr, execfn);
    let argv_ptrs = img.put_strings(arg_start, argv);
    let envp_ptrs = img.put_strings(env_start, envp);
    if !platform.is_empty() {
        img.put(platform_addr, platform);
    }
    img.put(random_addr, &random);

    let mut w = sp;
    let mut word = |img: &mut Image, v: u64| {
        img.put(w, &v.to_le_bytes());
        w += 8;
    };
    word(&mut img, argc);
    for p in argv_ptrs.into_iter().chain([0]) {
        word(&mut img, p);
    }
    for p in envp_ptrs.into_iter().chain([0]) {
        word(&mut img, p);
    }
    let own = [
        Some(AuxEntry(AT_RANDOM, random_addr)),
        Some(AuxEntry(AT_EXECFN, execfn_addr)),
        (!platform.is_empty()).then_some(AuxEntry(AT_PLATFORM, platform_addr)),
        Some(AuxEntry(AT_NULL, 0)),
    ];
    for AuxEntry(key, value) in auxv.iter().copied().chain(own.into_iter().flatten()) {
        word(&mut img, key);
        word(&mut img, value);
    }

    Ok(StackImage {
        bytes: img.bytes,
        base: sp,
        sp,
        arg_start,
        arg_end: env_start,
        env_start,
        env_end: env_start + envp_size,
    })
}

/// The buffer being filled, addressed by guest address.
struct Image {
    base: u64,
    bytes: Vec<u8>,
}

impl Image {
    /// Copies `data` to guest address `addr`; the layout guarantees that it
    /// lies inside the buffer (the bytes after it are already zero, which
    /// supplies string terminators).
    fn put(&mut self, addr: u64, data: &[u8]) {
        let start = (addr - self.base) as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
    }

    /// Copies `strings` one after another from `addr` on, each followed by
    /// a NUL, and returns their addresses.
    fn put_strings(&mut self, mut addr: u64, strings: &[Vec<u8>]) -> Vec<u64> {
        let mut ptrs = Vec::with_capacity(strings.len());
        for s in strings {
            self.put(addr, s);
            ptrs.push(addr);
            addr += s.len() as u64 + 1;
        }
        ptrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x7fff_ffff_f000;

    /// What a guest's `_start` would find on the stack.
    #[derive(Debug)]
    struct Parsed {
        argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
        auxv: Vec<(u64, u64)>,
    }

    /// Reads the image back the way libc's start code and the dynamic
    /// linker do, checking that every access stays in [base, stack_top).
    fn read_back(img: &StackImage, stack_top: u64) -> Parsed {
        assert_eq!(img.sp % 16, 0, "sp {:#x} misaligned", img.sp);
        assert_eq!(img.base, img.sp);
        assert_eq!(img.base + img.bytes.len() as u64, stack_top);
        let idx = |addr: u64| -> usize {
            assert!(
                addr >= img.base && addr < stack_top,
                "address {addr:#x} outside the image"
            );
            (addr - img.base) as usize
        };
        let word = |addr: u64| -> u64 {
            let i = idx(addr);
            idx(addr + 7);
            u64::from_le_bytes(img.bytes[i..i + 8].try_into().unwrap())
        };
        let string = |addr: u64| -> Vec<u8> {
            let mut out = Vec::new();
            let mut a = addr;
            loop {
                let b = img.bytes[idx(a)];
                if b == 0 {
                    return out;
                }
                out.push(b);
                a += 1;
            }
        };
        let mut at = img.sp;
        let argc = word(at);
        at += 8;
        let mut argv = Vec::new();
        for _ in 0..argc {
            argv.push(string(word(at)));
            at += 8;
        }
        assert_eq!(word(at), 0, "argv not NULL-terminated");
        at += 8;
        let mut envp = Vec::new();
        while word(at) != 0 {
            envp.push(string(word(at)));
            at += 8;
        }
        at += 8;
        let mut auxv = Vec::new();
        loop {
            let (k, v) = (word(at), word(at + 8));
            auxv.push((k, v));
            at += 16;
            if k == AT_NULL {
                break;
            }
        }
        Parsed { argv, envp, auxv }
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn aux(p: &Parsed, key: u64) -> Option<u64> {
        p.auxv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    const RANDOM: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    #[test]
    fn round_trip() {
        let argv = strs(&["/bin/echo", "hello", "", "world"]);
        let envp = strs(&["PATH=/usr/bin:/bin", "HOME=/root"]);
        let caller_aux = [
            AuxEntry(AT_PHDR, 0x400040),
            AuxEntry(AT_PHENT, 56),
            AuxEntry(AT_PHNUM, 9),
            AuxEntry(AT_PAGESZ, 4096),
            AuxEntry(AT_ENTRY, 0x401000),
        ];
        let img = build(
            TOP,
            &argv,
            &envp,
            &caller_aux,
            b"/bin/echo",
            b"x86_64",
            RANDOM,
        )
        .unwrap();
        let p = read_back(&img, TOP);
        assert_eq!(p.argv, argv);
        assert_eq!(p.envp, envp);

        // The caller's entries first, in order, then the builder's own.
        let keys: Vec<u64> = p.auxv.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                AT_PHDR,
                AT_PHENT,
                AT_PHNUM,
                AT_PAGESZ,
                AT_ENTRY,
                AT_RANDOM,
                AT_EXECFN,
                AT_PLATFORM,
                AT_NULL
            ]
        );
        assert_eq!(&p.auxv[..5], &caller_aux.map(|AuxEntry(k, v)| (k, v)));
        assert_eq!(p.auxv.last(), Some(&(AT_NULL, 0)));

        let random = aux(&p, AT_RANDOM).unwrap();
        let r = (random - img.base) as usize;
        assert_eq!(img.bytes[r..r + 16], RANDOM);
        let execfn = aux(&p, AT_EXECFN).unwrap();
        let e = (execfn - img.base) as usize;
        assert_eq!(&img.bytes[e..e + 10], b"/bin/echo\0");
        // execfn is at the very top, below the 8 zero bytes.
        assert_eq!(execfn + 10 + 8, TOP);
        let platform = aux(&p, AT_PLATFORM).unwrap();
        let q = (platform - img.base) as usize;
        assert_eq!(&img.bytes[q..q + 7], b"x86_64\0");

        // cmdline / environ ranges.
        let range =
            |from: u64, to: u64| &img.bytes[(from - img.base) as usize..(to - img.base) as usize];
        assert_eq!(
            range(img.arg_start, img.arg_end),
            b"/bin/echo\0hello\0\0world\0"
        );
        let environ = range(img.env_start, img.env_end);
        assert_eq!(environ, b"PATH=/usr/bin:/bin\0HOME=/root\0");
    }

    #[test]
    fn alignment_for_all_shapes() {
        for top in [TOP, TOP - 8, TOP - 3, 0x1_0000_0001] {
            for argc in 0..5 {
                for envc in 0..5 {
                    for naux in 0..3 {
                        for plat in [&b"x86_64"[..], b""] {
                            let argv: Vec<Vec<u8>> =
                                (0..argc).map(|i| vec![b'a'; i * 3 + 1]).collect();
                            let envp: Vec<Vec<u8>> = (0..envc).map(|i| vec![b'e'; i * 5]).collect();
                            let auxv: Vec<AuxEntry> =
                                (0..naux).map(|i| AuxEntry(AT_UID + i, i)).collect();
                            let img =
                                build(top, &argv, &envp, &auxv, b"prog", plat, RANDOM).unwrap();
                            let p = read_back(&img, top);
                            assert_eq!(p.argv, argv);
                            assert_eq!(p.envp, envp);
                            assert_eq!(
                                p.auxv.len(),
                                naux as usize + 3 + usize::from(!plat.is_empty())
                            );
                            assert_eq!(aux(&p, AT_PLATFORM).is_some(), !plat.is_empty());
                            let r = (aux(&p, AT_RANDOM).unwrap() - img.base) as usize;
                            assert_eq!(img.bytes[r..r + 16], RANDOM);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn too_long() {
        let big = vec![vec![b'x'; (MAX_STACK_IMAGE as usize) + 1]];
        let e = build(TOP, &big, &[], &[], b"p", b"x86_64", RANDOM).unwrap_err();
        assert!(matches!(e, StackError::TooLong { .. }));
        assert!(e.to_string().contains("argument list too long"));

        // Many small strings add up too.
        let many = vec![vec![b'y'; 4095]; 2049];
        let e = build(TOP, &[], &many, &[], b"p", b"x86_64", RANDOM).unwrap_err();
        assert!(e.to_string().contains("argument list too long"));

        // Just under the limit works.
        let ok = vec![vec![b'z'; (MAX_STACK_IMAGE as usize) - 4096]];
        let img = build(TOP, &ok, &[], &[], b"p", b"x86_64", RANDOM).unwrap();
        assert!(img.bytes.len() as u64 <= MAX_STACK_IMAGE);
    }

    #[test]
    fn stack_top_too_low() {
        let e = build(64, &strs(&["a"]), &[], &[], b"p", b"x86_64", RANDOM).unwrap_err();
        assert!(matches!(e, StackError::StackTopTooLow { .. }), "{e}");
    }

    #[test]
    fn reserved_aux_entries_are_refused() {
        for key in [AT_NULL, AT_RANDOM, AT_EXECFN, AT_PLATFORM] {
            let e = build(TOP, &[], &[], &[AuxEntry(key, 1)], b"p", b"x86_64", RANDOM).unwrap_err();
            assert_eq!(e, StackError::ReservedAuxEntry(key));
        }
    }

    #[test]
    fn empty_argv() {
        let img = build(TOP, &[], &[], &[], b"", b"x86_64", RANDOM).unwrap();
        let p = read_back(&img, TOP);
        assert!(p.argv.is_empty() && p.envp.is_empty());
        assert_eq!(img.arg_start, img.arg_end);
        assert_eq!(img.env_start, img.env_end);
        let e = aux(&p, AT_EXECFN).unwrap();
        assert_eq!(img.bytes[(e - img.base) as usize], 0);
    }
}
