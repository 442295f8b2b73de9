//! Memory syscalls: brk and the mmap family, on the task's memory manager.

use sentry_systrap::{Prot, PAGE_SIZE};

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::mm::{page_up, VmaKind};

pub fn brk(s: &mut Sys) -> Result<Outcome, Errno> {
    let mm = s.task.tg.mm.clone();
    ret(mm.brk(&mut *s.t.ctx, s.a[0]) as i64)
}

pub fn mmap(s: &mut Sys) -> Result<Outcome, Errno> {
    let [addr, len, prot, flags, fd, off] = s.a;
    let flags = flags as i32;
    if len == 0 || off % PAGE_SIZE != 0 || prot & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    let typ = flags & libc::MAP_TYPE;
    if typ != libc::MAP_PRIVATE && typ != libc::MAP_SHARED && typ != libc::MAP_SHARED_VALIDATE {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & libc::MAP_FIXED != 0;
    let noreplace = flags & libc::MAP_FIXED_NOREPLACE != 0;
    let mm = s.task.tg.mm.clone();
    if noreplace
        && mm
            .vmas()
            .iter()
            .any(|v| v.start < addr + len && v.end > addr)
    {
        return Err(Errno::EEXIST);
    }
    let prot = Prot::from_bits(prot);
    if flags & libc::MAP_ANONYMOUS != 0 {
        let at = mm.map_anon(
            &mut *s.t.ctx,
            addr,
            len,
            prot,
            fixed || noreplace,
            VmaKind::Anon,
        )?;
        return ret(at as i64);
    }
    // A file: a private copy of its bytes.
    let file = s.task.tg.fds.get(fd as i32)?;
    if typ != libc::MAP_PRIVATE && prot.write {
        return Err(Errno::EACCES);
    }
    if file.is_dir() {
        return Err(Errno::ENODEV);
    }
    let kind = VmaKind::File(file.path.clone().into());
    let at = mm.map_anon(&mut *s.t.ctx, addr, len, prot, fixed || noreplace, kind)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = match file.pread(&mut buf[..want], off + done) {
            Ok(n) => n,
            Err(e) => {
                let _ = mm.unmap(&mut *s.t.ctx, at, len);
                return Err(if e == Errno::ESPIPE { Errno::ENODEV } else { e });
            }
        };
        if n == 0 {
            break;
        }
        mm.write_unchecked(at + done, &buf[..n])?;
        done += n as u64;
    }
    ret(at as i64)
}

pub fn munmap(s: &mut Sys) -> Result<Outcome, Errno> {
    let mm = s.task.tg.mm.clone();
    mm.unmap(&mut *s.t.ctx, s.a[0], s.a[1])?;
    ret(0)
}

pub fn mprotect(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[2] & !(7 | libc::PROT_GROWSDOWN as u64 | libc::PROT_GROWSUP as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let mm = s.task.tg.mm.clone();
    mm.protect(&mut *s.t.ctx, s.a[0], s.a[1], Prot::from_bits(s.a[2]))?;
    ret(0)
}

pub fn madvise(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    if s.a[2] as i32 == libc::MADV_DONTNEED {
        s.mm().discard(s.a[0], s.a[1])?;
    }
    ret(0)
}

pub fn mremap(s: &mut Sys) -> Result<Outcome, Errno> {
    let flags = s.a[3] as i32;
    if flags & !(libc::MREMAP_MAYMOVE) != 0 {
        return Err(Errno::EINVAL);
    }
    let mm = s.task.tg.mm.clone();
    let at = mm.remap(
        &mut *s.t.ctx,
        s.a[0],
        s.a[1],
        s.a[2],
        flags & libc::MREMAP_MAYMOVE != 0,
    )?;
    ret(at as i64)
}
