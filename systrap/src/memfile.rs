//! The memory file: every byte of guest memory lives here.
//!
//! One memfd per sandbox, sized [`MemoryFile::CAPACITY`] bytes (sparse: pages
//! cost memory only once touched). The sentry maps all of it once and reads
//! and writes guest memory through that mapping; stub processes map ranges of
//! it at guest addresses on the sentry's request. Ranges are handed out in
//! pages by a first-fit allocator and given back with a hole punch, so freed
//! memory returns to the host.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use crate::sys;

/// Page size of the guest and of the file's allocations.
pub const PAGE_SIZE: u64 = 4096;

/// A range of the memory file: `[offset, offset + len)`, page-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub offset: u64,
    pub len: u64,
}

/// The sandbox's memory file.
pub struct MemoryFile {
    fd: OwnedFd,
    map: MmapRaw,
    /// Free ranges: offset -> length, coalesced.
    free: Mutex<BTreeMap<u64, u64>>,
}

/// An out-of-range access to the memory file.
#[derive(Debug, thiserror::Error)]
#[error("memory file access [{offset:#x}, +{len:#x}) is out of range")]
pub struct OutOfRange {
    pub offset: u64,
    pub len: u64,
}

impl MemoryFile {
    /// Bytes of address space the file can hand out (64 GiB, sparse).
    pub const CAPACITY: u64 = 64 << 30;

    /// Creates the memfd and maps it into the sentry.
    pub fn new() -> io::Result<MemoryFile> {
        let fd = sys::memfd(c"sentry-memory", Self::CAPACITY)?;
        let map = MmapOptions::new()
            .len(Self::CAPACITY as usize)
            .map_raw(&fd)?;
        let mut free = BTreeMap::new();
        free.insert(0, Self::CAPACITY);
        Ok(MemoryFile {
            fd,
            map,
            free: Mutex::new(free),
        })
    }

    /// The host file descriptor (stubs receive a copy at spawn).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Allocates `len` bytes (rounded up to pages) of zeroed file.
    pub fn allocate(&self, len: u64) -> io::Result<FileRange> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut free = self.free.lock();
        let found = free.iter().find(|(_, &l)| l >= len).map(|(&o, &l)| (o, l));
        let Some((offset, flen)) = found else {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        free.remove(&offset);
        if flen > len {
            free.insert(offset + len, flen - len);
        }
        Ok(FileRange { offset, len })
    }

    /// Returns a range to the allocator and releases its pages.
    pub fn release(&self, range: FileRange) {
        if range.len == 0 {
            return;
        }
        // SAFETY: fallocate on our own fd; punching a hole only zeroes the range.
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                range.offset as libc::off_t,
                range.len as libc::off_t,
            );
        }
        let mut free = self.free.lock();
        let mut offset = range.offset;
        let mut len = range.len;
        if let Some((&po, &pl)) = free.range(..offset).next_back() {
            if po + pl == offset {
                free.remove(&po);
                offset = po;
                len += pl;
            }
        }
        if let Some(&nl) = free.get(&(offset + len)) {
            free.remove(&(offset + len));
            len += nl;
        }
        free.insert(offset, len);
    }

    /// Drops the contents of a page-aligned range (it reads back as zeros).
    pub fn discard(&self, offset: u64, len: u64) {
        // SAFETY: fallocate on our own fd; punching a hole only zeroes the range.
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            );
        }
    }

    /// Bytes currently handed out.
    pub fn allocated(&self) -> u64 {
        Self::CAPACITY - self.free.lock().values().sum::<u64>()
    }

    fn check(&self, offset: u64, len: u64) -> Result<*mut u8, OutOfRange> {
        match offset.checked_add(len) {
            Some(end) if end <= Self::CAPACITY => {
                // SAFETY: offset < CAPACITY, the mapping's length.
                Ok(unsafe { self.map.as_mut_ptr().add(offset as usize) })
            }
            _ => Err(OutOfRange { offset, len }),
        }
    }

    /// Copies file bytes at `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let src = self.check(offset, buf.len() as u64)?;
        // SAFETY: 1. src..src+len lies inside our live mapping (checked);
        // 2. buf is a distinct local buffer. Guest threads may write the same
        // bytes concurrently; the copy then sees some mix, which is what a
        // racing guest gets on Linux too.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `buf` into the file at `offset`.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<(), OutOfRange> {
        let dst = self.check(offset, buf.len() as u64)?;
        // SAFETY: as in `read`: in bounds of a live shared mapping, distinct from buf.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) };
        Ok(())
    }

    /// Zeroes `len` bytes at `offset`.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), OutOfRange> {
        let dst = self.check(offset, len)?;
        // SAFETY: in bounds of a live mapping.
        unsafe { std::ptr::write_bytes(dst, 0, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes inside the file (ranges may not overlap).
    pub fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), OutOfRange> {
        let src = self.check(from, len)?;
        let dst = self.check(to, len)?;
        if from < to + len && to < from + len {
            return Err(OutOfRange { offset: to, len });
        }
        // SAFETY: both in bounds, checked not to overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes from `from` to `to`, skipping holes (pages never
    /// touched stay unallocated in the copy too). Ranges must not overlap.
    pub fn copy_data(&self, from: u64, to: u64, len: u64) -> Result<(), OutOfRange> {
        self.check(from, len)?;
        self.check(to, len)?;
        let fd = self.fd.as_raw_fd();
        let end = from + len;
        let mut pos = from;
        while pos < end {
            // SAFETY: lseek on our own fd with plain integers.
            let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
            if data < 0 || data as u64 >= end {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let stop = if hole < 0 {
                end
            } else {
                (hole as u64).min(end)
            };
            let start = data as u64;
            self.copy(start, to + (start - from), stop - start)?;
            pos = stop;
        }
        Ok(())
    }

    /// The 32-bit word at `offset` (4-aligned), for futexes on guest memory.
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32, OutOfRange> {
        if offset % 4 != 0 {
            return Err(OutOfRange { offset, len: 4 });
        }
        let p = self.check(offset, 4)?;
        // SAFETY: 1. aligned and in bounds of a mapping that lives as long as
        // self; 2. AtomicU32 has the layout of u32 and every bit pattern is
        // valid; concurrent access by other processes is what atomics are for.
        Ok(unsafe { &*(p as *const AtomicU32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_release_coalesces() {
        let f = MemoryFile::new().unwrap();
        let a = f.allocate(1).unwrap();
        let b = f.allocate(3 * PAGE_SIZE).unwrap();
        assert_eq!(a.len, PAGE_SIZE);
        assert_eq!(b.offset, PAGE_SIZE);
        f.write(b.offset + 10, b"hello").unwrap();
        let mut buf = [0u8; 5];
        f.read(b.offset + 10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        f.release(a);
        f.release(b);
        assert_eq!(f.allocated(), 0);
        // released memory reads back as zero
        let c = f.allocate(4 * PAGE_SIZE).unwrap();
        f.read(c.offset + PAGE_SIZE + 10, &mut buf).unwrap();
        assert_eq!(buf, [0; 5]);
        assert!(f.read(MemoryFile::CAPACITY - 2, &mut buf).is_err());
    }
}
