//! The memory manager: a guest address space as a list of VMAs over the
//! memory file.
//!
//! Each VMA maps `[start, end)` of guest addresses to one contiguous range of
//! the memory file starting at `file_off`. The manager keeps this list as
//! the truth, asks the platform (through the stopped thread's [`Context`]) to
//! mirror every change in the stub process, and serves the sentry's own
//! reads and writes of guest memory by looking addresses up in the list and
//! copying through the sentry's mapping of the memory file.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sentry_systrap::{Context, FileRange, MemoryFile, Prot, GUEST_END, PAGE_SIZE};

use crate::errno::Errno;

/// Lowest address a guest may map (like `vm.mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
/// Top of the initial stack.
pub const STACK_TOP: u64 = GUEST_END - 0x1000_0000;
/// Size of the initial stack mapping.
pub const STACK_SIZE: u64 = 8 << 20;
/// Where top-down mmap placement starts.
pub const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (1 << 30);

/// What a mapping is, for diagnostics and `brk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    Anon,
    Stack,
    Heap,
    /// A private copy of a file (path).
    File(Arc<str>),
}

/// One mapping.
#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub file_off: u64,
    pub kind: VmaKind,
}

struct Inner {
    vmas: BTreeMap<u64, Vma>,
    brk_start: u64,
    brk: u64,
}

/// A guest address space's memory.
pub struct Mm {
    mem: Arc<MemoryFile>,
    inner: Mutex<Inner>,
}

/// Rounds up to a page.
pub fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

/// Rounds down to a page.
pub fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

fn platform_err(_: sentry_systrap::PlatformError) -> Errno {
    Errno::EFAULT
}

impl Mm {
    pub fn new(mem: Arc<MemoryFile>) -> Mm {
        Mm {
            mem,
            inner: Mutex::new(Inner {
                vmas: BTreeMap::new(),
                brk_start: 0,
                brk: 0,
            }),
        }
    }

    /// The memory file behind this address space.
    pub fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.mem
    }

    /// Sets the program break's start (after the loader placed the image).
    pub fn set_brk_start(&self, addr: u64) {
        let mut i = self.inner.lock();
        i.brk_start = addr;
        i.brk = addr;
    }

    /// A copy of the VMA list (for /proc/self/maps and tests).
    pub fn vmas(&self) -> Vec<Vma> {
        self.inner.lock().vmas.values().cloned().collect()
    }

    fn overlaps(inner: &Inner, start: u64, end: u64) -> bool {
        inner
            .vmas
            .range(..end)
            .next_back()
            .is_some_and(|(_, v)| v.end > start)
    }

    /// A free range of `len` bytes, top-down from MMAP_TOP (or at `hint`).
    fn find_free(inner: &Inner, len: u64, hint: u64) -> Option<u64> {
        if hint >= MMAP_MIN_ADDR
            && hint.checked_add(len).is_some_and(|e| e <= GUEST_END)
            && !Self::overlaps(inner, hint, hint + len)
        {
            return Some(hint);
        }
        let mut top = MMAP_TOP;
        for (_, v) in inner.vmas.range(..MMAP_TOP).rev() {
            if v.end <= top && top - v.end >= len {
                return Some(top - len);
            }
            top = top.min(v.start);
        }
        (top >= len && top - len >= MMAP_MIN_ADDR).then(|| top - len)
    }

    /// Maps fresh zeroed memory. `fixed` replaces what is there.
    pub fn map_anon(
        &self,
        ctx: &mut dyn Context,
        addr: u64,
        len: u64,
        prot: Prot,
        fixed: bool,
        kind: VmaKind,
    ) -> Result<u64, Errno> {
        let len = page_up(len).filter(|&l| l > 0).ok_or(Errno::ENOMEM)?;
        let mut inner = self.inner.lock();
        let start = if fixed {
            if addr % PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            if addr < MMAP_MIN_ADDR || addr.checked_add(len).is_none_or(|e| e > GUEST_END) {
                return Err(Errno::ENOMEM);
            }
            self.unmap_locked(&mut inner, ctx, addr, len)?;
            addr
        } else {
            Self::find_free(&inner, len, page_down(addr)).ok_or(Errno::ENOMEM)?
        };
        let range = self.mem.allocate(len).map_err(|_| Errno::ENOMEM)?;
        if let Err(e) = ctx.map(start, len, prot, range.offset) {
            self.mem.release(range);
            return Err(platform_err(e));
        }
        inner.vmas.insert(
            start,
            Vma {
                start,
                end: start + len,
                prot,
                file_off: range.offset,
                kind,
            },
        );
        Ok(start)
    }

    /// Removes mappings in `[addr, addr + len)` and frees their memory.
    pub fn unmap(&self, ctx: &mut dyn Context, addr: u64, len: u64) -> Result<(), Errno> {
        if addr % PAGE_SIZE != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        if addr.checked_add(len).is_none_or(|e| e > GUEST_END) {
            return Err(Errno::EINVAL);
        }
        let mut inner = self.inner.lock();
        self.unmap_locked(&mut inner, ctx, addr, len)
    }

    /// Splits VMAs so that `at` is a boundary.
    fn split(inner: &mut Inner, at: u64) {
        let Some((_, v)) = inner.vmas.range(..at).next_back() else {
            return;
        };
        if v.end <= at || v.start == at {
            return;
        }
        let mut left = v.clone();
        let mut right = v.clone();
        left.end = at;
        right.start = at;
        right.file_off = v.file_off + (at - v.start);
        inner.vmas.insert(left.start, left);
        inner.vmas.insert(right.start, right);
    }

    fn unmap_locked(
        &self,
        inner: &mut Inner,
        ctx: &mut dyn Context,
        addr: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let end = addr + len;
        Self::split(inner, addr);
        Self::split(inner, end);
        let keys: Vec<u64> = inner.vmas.range(addr..end).map(|(&k, _)| k).collect();
        if keys.is_empty() {
            return Ok(());
        }
        ctx.unmap(addr, len).map_err(platform_err)?;
        for k in keys {
            if let Some(v) = inner.vmas.remove(&k) {
                self.mem.release(FileRange {
                    offset: v.file_off,
                    len: v.end - v.start,
                });
            }
        }
        Ok(())
    }

    /// Changes protections in `[addr, addr + len)`; every page must be mapped.
    pub fn protect(
        &self,
        ctx: &mut dyn Context,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        if addr % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Ok(());
        }
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= GUEST_END)
            .ok_or(Errno::ENOMEM)?;
        let mut inner = self.inner.lock();
        // Every page must be mapped.
        let mut cur = addr;
        for (_, v) in inner.vmas.range(..end) {
            if v.end <= cur {
                continue;
            }
            if v.start > cur {
                return Err(Errno::ENOMEM);
            }
            cur = v.end;
            if cur >= end {
                break;
            }
        }
        if cur < end {
            return Err(Errno::ENOMEM);
        }
        Self::split(&mut inner, addr);
        Self::split(&mut inner, end);
        ctx.protect(addr, len, prot).map_err(platform_err)?;
        for (_, v) in inner.vmas.range_mut(addr..end) {
            v.prot = prot;
        }
        Ok(())
    }

    /// `brk(addr)`: returns the new (or unchanged) break.
    pub fn brk(&self, ctx: &mut dyn Context, addr: u64) -> u64 {
        let (start, cur) = {
            let i = self.inner.lock();
            (i.brk_start, i.brk)
        };
        if addr < start || addr > start + (1 << 40) {
            return cur;
        }
        let old_top = page_up(cur).unwrap_or(cur);
        let new_top = match page_up(addr) {
            Some(t) => t,
            None => return cur,
        };
        if new_top > old_top {
            {
                let i = self.inner.lock();
                if Self::overlaps(&i, old_top, new_top) {
                    return cur;
                }
            }
            if self
                .map_anon(
                    ctx,
                    old_top,
                    new_top - old_top,
                    Prot::RW,
                    true,
                    VmaKind::Heap,
                )
                .is_err()
            {
                return cur;
            }
        } else if new_top < old_top && self.unmap(ctx, new_top, old_top - new_top).is_err() {
            return cur;
        }
        self.inner.lock().brk = addr;
        addr
    }

    /// `mremap` without MREMAP_FIXED: grow in place when free, else move
    /// (copying through the memory file) when `may_move`.
    pub fn remap(
        &self,
        ctx: &mut dyn Context,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
    ) -> Result<u64, Errno> {
        if old % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).filter(|&l| l > 0).ok_or(Errno::EINVAL)?;
        let (prot, kind) = {
            // The old range must be mapped end to end (possibly by several
            // VMAs, e.g. after an earlier in-place growth) with one protection.
            let i = self.inner.lock();
            let end = old.checked_add(old_len).ok_or(Errno::EFAULT)?;
            let first = i
                .vmas
                .range(..=old)
                .next_back()
                .map(|(_, v)| v)
                .filter(|v| v.end > old)
                .ok_or(Errno::EFAULT)?;
            let mut cur = first.end;
            for (_, v) in i.vmas.range(first.start + 1..end) {
                if v.start != cur || v.prot != first.prot {
                    return Err(Errno::EFAULT);
                }
                cur = v.end;
            }
            if cur < end {
                return Err(Errno::EFAULT);
            }
            (first.prot, first.kind.clone())
        };
        if new_len <= old_len {
            if new_len < old_len {
                self.unmap(ctx, old + new_len, old_len - new_len)?;
            }
            return Ok(old);
        }
        // Grow in place when the space after is free.
        let grow_free = {
            let i = self.inner.lock();
            old.checked_add(new_len).is_some_and(|e| e <= GUEST_END)
                && !Self::overlaps(&i, old + old_len, old + new_len)
        };
        if grow_free {
            self.map_anon(ctx, old + old_len, new_len - old_len, prot, true, kind)?;
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let new = self.map_anon(ctx, 0, new_len, prot, false, kind)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0;
        while done < old_len {
            let n = (old_len - done).min(buf.len() as u64) as usize;
            self.read_unchecked(old + done, &mut buf[..n])?;
            self.write_unchecked(new + done, &buf[..n])?;
            done += n as u64;
        }
        self.unmap(ctx, old, old_len)?;
        Ok(new)
    }

    /// Calls `f(file_offset, len)` for each piece of `[addr, addr + len)`,
    /// checking that it is mapped and allowed by `ok`.
    fn walk(
        &self,
        addr: u64,
        len: u64,
        ok: impl Fn(Prot) -> bool,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        let inner = self.inner.lock();
        let mut cur = addr;
        let mut done = 0usize;
        while cur < end {
            let v = inner
                .vmas
                .range(..=cur)
                .next_back()
                .map(|(_, v)| v)
                .filter(|v| v.end > cur && ok(v.prot))
                .ok_or(Errno::EFAULT)?;
            let n = (v.end.min(end) - cur) as usize;
            f(v.file_off + (cur - v.start), done, n)?;
            cur += n as u64;
            done += n;
        }
        Ok(())
    }

    /// Copies guest memory into `buf` (needs readable pages).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.walk(
            addr,
            buf.len() as u64,
            |p| p.read || p.write || p.exec,
            |off, at, n| {
                self.mem
                    .read(off, &mut buf[at..at + n])
                    .map_err(|_| Errno::EFAULT)
            },
        )
    }

    fn read_unchecked(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.walk(
            addr,
            buf.len() as u64,
            |_| true,
            |off, at, n| {
                self.mem
                    .read(off, &mut buf[at..at + n])
                    .map_err(|_| Errno::EFAULT)
            },
        )
    }

    /// Copies `buf` into guest memory (needs writable pages).
    pub fn write(&self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.walk(
            addr,
            buf.len() as u64,
            |p| p.write,
            |off, at, n| {
                self.mem
                    .write(off, &buf[at..at + n])
                    .map_err(|_| Errno::EFAULT)
            },
        )
    }

    /// Writes regardless of protections (the loader filling read-only text).
    pub fn write_unchecked(&self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.walk(
            addr,
            buf.len() as u64,
            |_| true,
            |off, at, n| {
                self.mem
                    .write(off, &buf[at..at + n])
                    .map_err(|_| Errno::EFAULT)
            },
        )
    }

    /// Zeroes guest memory regardless of protections.
    pub fn zero_unchecked(&self, addr: u64, len: u64) -> Result<(), Errno> {
        self.walk(
            addr,
            len,
            |_| true,
            |off, _, n| self.mem.zero(off, n as u64).map_err(|_| Errno::EFAULT),
        )
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut cur = addr;
        let mut chunk = [0u8; 256];
        loop {
            // Do not cross a page we have not checked in one read.
            let n = (PAGE_SIZE - cur % PAGE_SIZE).min(chunk.len() as u64) as usize;
            self.read(cur, &mut chunk[..n])?;
            if let Some(p) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..p]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            cur = cur.checked_add(n as u64).ok_or(Errno::EFAULT)?;
        }
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u64(&self, addr: u64, v: u64) -> Result<(), Errno> {
        self.write(addr, &v.to_le_bytes())
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn write_u32(&self, addr: u64, v: u32) -> Result<(), Errno> {
        self.write(addr, &v.to_le_bytes())
    }

    /// `MADV_DONTNEED`: private anonymous pages read back as zeros.
    pub fn discard(&self, addr: u64, len: u64) -> Result<(), Errno> {
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        let mem = self.mem.clone();
        self.walk(
            addr,
            len,
            |_| true,
            |off, _, n| {
                let start = page_up(off).unwrap_or(off);
                let end = page_down(off + n as u64);
                if end > start {
                    mem.discard(start, end - start);
                }
                Ok(())
            },
        )
    }

    /// The memory-file offset of a mapped, writable guest word (for futexes).
    pub fn file_offset(&self, addr: u64) -> Result<u64, Errno> {
        let inner = self.inner.lock();
        inner
            .vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end >= addr + 4)
            .map(|v| v.file_off + (addr - v.start))
            .ok_or(Errno::EFAULT)
    }

    /// Copies this address space into `child` (empty), mapping it through
    /// `ctx` (the child's first thread): an eager copy of every mapping's
    /// data, holes left as holes.
    pub fn fork_into(&self, child: &Mm, ctx: &mut dyn Context) -> Result<(), Errno> {
        let inner = self.inner.lock();
        let mut cinner = child.inner.lock();
        cinner.brk_start = inner.brk_start;
        cinner.brk = inner.brk;
        for v in inner.vmas.values() {
            let len = v.end - v.start;
            let range = self.mem.allocate(len).map_err(|_| Errno::ENOMEM)?;
            if self.mem.copy_data(v.file_off, range.offset, len).is_err() {
                self.mem.release(range);
                return Err(Errno::ENOMEM);
            }
            if ctx.map(v.start, len, v.prot, range.offset).is_err() {
                self.mem.release(range);
                return Err(Errno::ENOMEM);
            }
            cinner.vmas.insert(
                v.start,
                Vma {
                    file_off: range.offset,
                    ..v.clone()
                },
            );
        }
        Ok(())
    }

    /// Frees every mapping's memory (the address space is gone).
    pub fn release_all(&self) {
        let mut inner = self.inner.lock();
        for (_, v) in std::mem::take(&mut inner.vmas) {
            self.mem.release(FileRange {
                offset: v.file_off,
                len: v.end - v.start,
            });
        }
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        self.release_all();
    }
}
