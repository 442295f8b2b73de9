//! Loading a program into a new address space: the ELF image, the program
//! break, the stack with argv, envp and the auxiliary vector, and the first
//! registers. Errors are reported to a person, one line each.

pub mod elf;
pub mod stack;

use std::sync::Arc;

use sentry_systrap::{host, Context, Prot, Regs, PAGE_SIZE};

use crate::errno::Errno;
use crate::mm::{page_down, page_up, Mm, VmaKind, STACK_SIZE, STACK_TOP};
use stack::AuxEntry;

/// Where position-independent executables are placed (like Linux's ELF_ET_DYN_BASE).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// Largest executable the loader reads.
pub const MAX_EXECUTABLE: u64 = 1 << 30;

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot run {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {path}: {source}")]
    Elf { path: String, source: elf::ElfError },
    #[error("cannot run {path}: it is dynamically linked (interpreter {interp}); only statically linked programs can run so far")]
    Dynamic { path: String, interp: String },
    #[error("cannot run {path}: {what}")]
    Image { path: String, what: String },
}

/// What the loader set up.
pub struct Loaded {
    pub entry: u64,
    pub sp: u64,
}

fn prot_of(s: &elf::Segment) -> Prot {
    Prot {
        read: s.read,
        write: s.write,
        exec: s.exec,
    }
}

/// Reads and checks an executable without touching any address space.
pub fn read_executable(path: &str) -> Result<(Vec<u8>, elf::ElfInfo), LoadError> {
    let open_err = |source| LoadError::Open {
        path: path.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(open_err(std::io::Error::from_raw_os_error(libc::EISDIR)));
    }
    // Like execve: some execute bit must be set, even for root.
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0 {
        return Err(open_err(std::io::Error::from_raw_os_error(libc::EACCES)));
    }
    if meta.len() > MAX_EXECUTABLE {
        return Err(LoadError::Image {
            path: path.into(),
            what: "the file is too large".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(open_err)?;
    let info = elf::parse(&bytes).map_err(|source| LoadError::Elf {
        path: path.into(),
        source,
    })?;
    if let Some(interp) = &info.interp {
        return Err(LoadError::Dynamic {
            path: path.into(),
            interp: interp.clone(),
        });
    }
    Ok((bytes, info))
}

/// Loads `bytes` (parsed as `info`) into `mm` through `ctx` and builds the
/// initial stack; sets the context's registers.
pub fn load(
    path: &str,
    bytes: &[u8],
    info: &elf::ElfInfo,
    mm: &Arc<Mm>,
    ctx: &mut dyn Context,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
) -> Result<Loaded, LoadError> {
    let img = |what: String| LoadError::Image {
        path: path.into(),
        what,
    };
    let errno = |e: Errno| img(format!("cannot set up its memory ({e})"));
    let bias = match info.kind {
        elf::ElfKind::Exec => 0,
        elf::ElfKind::Dyn => PIE_BASE - page_down(info.span().0),
    };
    let mut mapped_end = 0u64;
    let mut top = 0u64;
    for seg in &info.segments {
        let vaddr = seg
            .vaddr
            .checked_add(bias)
            .ok_or_else(|| img("segment address overflows".into()))?;
        let end = vaddr
            .checked_add(seg.memsz)
            .ok_or_else(|| img("segment size overflows".into()))?;
        let mut start = page_down(vaddr);
        let map_end = page_up(end).ok_or_else(|| img("segment size overflows".into()))?;
        if map_end > sentry_systrap::GUEST_END || start < crate::mm::MMAP_MIN_ADDR {
            return Err(img(format!(
                "segment at {vaddr:#x} lies outside the guest address range"
            )));
        }
        if start < mapped_end {
            // Shares a page with the previous segment: widen that page's rights.
            let shared = mapped_end - PAGE_SIZE;
            let prev = mm
                .vmas()
                .into_iter()
                .find(|v| v.start <= shared && v.end > shared)
                .map(|v| v.prot)
                .unwrap_or(Prot::NONE);
            let p = prot_of(seg);
            let union = Prot {
                read: prev.read || p.read,
                write: prev.write || p.write,
                exec: prev.exec || p.exec,
            };
            mm.protect(ctx, shared, PAGE_SIZE, union).map_err(errno)?;
            start = mapped_end;
        }
        if map_end > start {
            mm.map_anon(
                ctx,
                start,
                map_end - start,
                prot_of(seg),
                true,
                VmaKind::File(Arc::from(path)),
            )
            .map_err(errno)?;
        }
        let file = bytes
            .get(seg.offset as usize..(seg.offset + seg.filesz) as usize)
            .ok_or_else(|| img("segment lies outside the file".into()))?;
        mm.write_unchecked(vaddr, file).map_err(errno)?;
        mapped_end = mapped_end.max(map_end);
        top = top.max(end);
    }
    mm.set_brk_start(page_up(top).unwrap_or(top));

    // The stack.
    mm.map_anon(
        ctx,
        STACK_TOP - STACK_SIZE,
        STACK_SIZE,
        Prot::RW,
        true,
        VmaKind::Stack,
    )
    .map_err(errno)?;
    let (uid, gid) = host::ids();
    let phdr = info.phdr_vaddr.map(|p| p + bias).unwrap_or(0);
    let auxv = [
        AuxEntry(stack::AT_PHDR, phdr),
        AuxEntry(stack::AT_PHENT, info.phentsize as u64),
        AuxEntry(stack::AT_PHNUM, info.phnum as u64),
        AuxEntry(stack::AT_PAGESZ, PAGE_SIZE),
        AuxEntry(stack::AT_BASE, 0),
        AuxEntry(stack::AT_FLAGS, 0),
        AuxEntry(stack::AT_ENTRY, info.entry + bias),
        AuxEntry(stack::AT_UID, uid as u64),
        AuxEntry(stack::AT_EUID, uid as u64),
        AuxEntry(stack::AT_GID, gid as u64),
        AuxEntry(stack::AT_EGID, gid as u64),
        AuxEntry(stack::AT_SECURE, 0),
        AuxEntry(stack::AT_HWCAP, host::hwcap()),
        AuxEntry(stack::AT_HWCAP2, 0),
        AuxEntry(stack::AT_CLKTCK, 100),
    ];
    let mut random = [0u8; 16];
    host::getrandom(&mut random).map_err(|e| img(format!("no random bytes: {e}")))?;
    let execfn = argv
        .first()
        .cloned()
        .unwrap_or_else(|| path.as_bytes().to_vec());
    let image = stack::build(
        STACK_TOP,
        argv,
        envp,
        &auxv,
        path.as_bytes(),
        b"x86_64",
        random,
    )
    .map_err(|e| img(e.to_string()))?;
    let _ = execfn;
    mm.write(image.base, &image.bytes).map_err(errno)?;
    let entry = info.entry + bias;
    *ctx.regs_mut() = Regs::new(entry, image.sp);
    Ok(Loaded {
        entry,
        sp: image.sp,
    })
}
