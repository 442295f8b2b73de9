//! Parsing and validation of x86-64 ELF64 executables.
//!
//! The loader reads the start of a guest program file into memory and hands
//! the bytes to [`parse`]. `parse` checks the ELF identification and header,
//! walks the program header table, validates every `PT_LOAD` segment and
//! returns an [`ElfInfo`]: the loadable segments (file offset, size and
//! permissions), the entry point, the `PT_INTERP` path of a dynamically
//! linked program, where the program headers lie in memory (for `AT_PHDR`)
//! and whether the stack must be executable. The loader then maps the
//! segments (for [`ElfKind::Dyn`] adding a load bias to every address) and
//! builds the initial stack. Every rejection is an [`ElfError`] whose
//! message completes the sentence "cannot run PATH: ...".
//!
//! The parser never panics, whatever the input: every read is bounds-checked
//! and every sum that could overflow uses checked arithmetic.

/// Size of a guest page; segments are mapped at this granularity.
pub const PAGE_SIZE: u64 = 4096;

/// Largest number of program headers accepted (real programs have about 15).
pub const MAX_PHNUM: u16 = 128;

/// Exclusive upper bound of the x86-64 user address space (47-bit, less one
/// guard page, as Linux's `TASK_SIZE`); no segment may extend past it.
pub const USER_ADDRESS_LIMIT: u64 = 0x7fff_ffff_f000;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u16 = 56;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const EM_X86_64: u16 = 62;

pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;

pub const PT_LOAD: u32 = 1;
pub const PT_INTERP: u32 = 3;
pub const PT_PHDR: u32 = 6;
pub const PT_GNU_STACK: u32 = 0x6474_e551;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Longest accepted `PT_INTERP` segment, NUL included (Linux's `PATH_MAX`).
const MAX_INTERP_LEN: u64 = 4096;

/// The kind of executable, from `e_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: linked at fixed addresses; segment addresses are absolute.
    Exec,
    /// `ET_DYN`: position independent (PIE or shared object); every address
    /// in [`ElfInfo`] is relative to a load bias chosen by the loader.
    Dyn,
}

/// One `PT_LOAD` segment: `filesz` bytes of the file at `offset` are mapped
/// at `vaddr`, and the rest of `memsz` is zero-filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the segment's first byte (`p_vaddr`).
    pub vaddr: u64,
    /// Size in memory (`p_memsz`); never smaller than `filesz`.
    pub memsz: u64,
    /// Number of bytes taken from the file (`p_filesz`).
    pub filesz: u64,
    /// File offset of the segment's first byte (`p_offset`); congruent to
    /// `vaddr` modulo [`PAGE_SIZE`].
    pub offset: u64,
    /// The segment is readable (`PF_R`).
    pub read: bool,
    /// The segment is writable (`PF_W`).
    pub write: bool,
    /// The segment is executable (`PF_X`).
    pub exec: bool,
}

impl Segment {
    /// The exclusive end address `vaddr + memsz` (saturating; parsed
    /// segments never overflow).
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
}

/// What the loader needs to know about a validated executable.
#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// Fixed-address or position-independent executable.
    pub kind: ElfKind,
    /// Entry point (`e_entry`); inside an executable `PT_LOAD` segment.
    pub entry: u64,
    /// File offset of the program header table (`e_phoff`).
    pub phoff: u64,
    /// Size of one program header (`e_phentsize`, always 56).
    pub phentsize: u16,
    /// Number of program headers (`e_phnum`, 1..=[`MAX_PHNUM`]).
    pub phnum: u16,
    /// The non-empty `PT_LOAD` segments, in file order. Entries with
    /// `p_memsz == 0` map nothing and are left out.
    pub segments: Vec<Segment>,
    /// The `PT_INTERP` path (the dynamic linker), if the program has one.
    pub interp: Option<String>,
    /// Address of the program headers in memory (for `AT_PHDR`): the
    /// `PT_PHDR` address, or else the address at which a `PT_LOAD` segment
    /// maps the file range holding the table; `None` if neither exists.
    pub phdr_vaddr: Option<u64>,
    /// `PT_GNU_STACK` asks for an executable stack (`PF_X`). False when
    /// the header is absent, as Linux does on x86-64.
    pub exec_stack: bool,
}

impl ElfInfo {
    /// The address range spanned by the `PT_LOAD` segments: the lowest
    /// segment start rounded down to a page and the highest segment end
    /// rounded up to a page, as `(start, end)` with `end` exclusive.
    /// `(0, 0)` if there are no segments.
    pub fn span(&self) -> (u64, u64) {
        let mut lo = u64::MAX;
        let mut hi = 0u64;
        for seg in &self.segments {
            lo = lo.min(page_down(seg.vaddr));
            hi = hi.max(page_up_saturating(seg.end()));
        }
        if lo > hi {
            (0, 0)
        } else {
            (lo, hi)
        }
    }
}

/// Why a file cannot be run. Each message is one line meant to follow
/// "cannot run PATH: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The file has no bytes at all.
    #[error("the file is empty")]
    Empty,
    /// The file is a `#!` script, which must be run through its interpreter.
    #[error(
        "not an ELF executable (found a script starting with #!; run it through its interpreter)"
    )]
    Script,
    /// The file does not start with the ELF magic number.
    #[error("not an ELF executable")]
    NotElf,
    /// A 32-bit (`ELFCLASS32`) executable.
    #[error("a 32-bit ELF executable; only x86-64 (64-bit) programs can run")]
    Elf32,
    /// A big-endian or otherwise not little-endian ELF file.
    #[error("a big-endian ELF file; only little-endian x86-64 programs can run")]
    BigEndian,
    /// An executable for another CPU architecture.
    #[error(
        "an ELF executable for another machine (e_machine {machine}{}), not x86-64",
        machine_suffix(*.machine)
    )]
    WrongMachine {
        /// The file's `e_machine` value.
        machine: u16,
    },
    /// An ELF file that is not an executable (object file, core dump, ...).
    #[error("not an executable (ELF type {e_type}: {})", type_name(*.e_type))]
    NotExecutable {
        /// The file's `e_type` value.
        e_type: u16,
    },
    /// The file ends before the header or the program headers do.
    #[error("truncated ELF file ({0})")]
    Truncated(String),
    /// The header or program headers hold impossible values.
    #[error("corrupt ELF file: {0}")]
    Corrupt(String),
}

fn machine_suffix(machine: u16) -> &'static str {
    match machine {
        0 => ": none",
        2 => ": SPARC",
        3 => ": i386",
        8 => ": MIPS",
        20 => ": PowerPC",
        21 => ": PowerPC64",
        22 => ": s390",
        40 => ": ARM",
        43 => ": SPARC V9",
        50 => ": IA-64",
        183 => ": AArch64",
        243 => ": RISC-V",
        258 => ": LoongArch",
        _ => "",
    }
}

fn type_name(e_type: u16) -> &'static str {
    match e_type {
        0 => "no file type",
        1 => "relocatable object",
        4 => "core dump",
        0xfe00..=0xfeff => "OS-specific type",
        0xff00..=0xffff => "processor-specific type",
        _ => "unknown type",
    }
}

fn corrupt(msg: impl Into<String>) -> ElfError {
    ElfError::Corrupt(msg.into())
}

fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

fn page_up_saturating(addr: u64) -> u64 {
    match addr.checked_add(PAGE_SIZE - 1) {
        Some(v) => page_down(v),
        None => page_down(u64::MAX),
    }
}

/// Bounds-checked little-endian reads from a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(N)?;
        self.bytes.get(start..end)?.try_into().ok()
    }
    fn u16(&self, off: u64) -> Option<u16> {
        self.array(off).map(u16::from_le_bytes)
    }
    fn u32(&self, off: u64) -> Option<u32> {
        self.array(off).map(u32::from_le_bytes)
    }
    fn u64(&self, off: u64) -> Option<u64> {
        self.array(off).map(u64::from_le_bytes)
    }
    /// `len` bytes at `off`, if they all lie inside the buffer.
    fn range(&self, off: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }
}

/// One raw program header (`p_paddr` is taken to be `vaddr`, `p_align`
/// to be a page: the loader reads neither).
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// The ELF64 file header of an x86-64 executable of type `e_type` entering
/// at `entry`, followed by the program headers `phs`: the first
/// `64 + 56 * phs.len()` bytes of an image [`parse`] reads. For the images
/// the sentry builds itself (`sentry bench`'s guest) and for tests.
pub fn write_headers(e_type: u16, entry: u64, phs: &[Phdr]) -> Vec<u8> {
    let mut v = Vec::with_capacity(EHDR_SIZE + phs.len() * PHDR_SIZE as usize);
    v.extend_from_slice(ELF_MAGIC);
    v.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, 1, 0]); // EV_CURRENT, System V
    v.resize(16, 0);
    v.extend_from_slice(&e_type.to_le_bytes());
    v.extend_from_slice(&EM_X86_64.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes()); // e_version
    v.extend_from_slice(&entry.to_le_bytes());
    v.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    v.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes()); // e_ehsize
    v.extend_from_slice(&PHDR_SIZE.to_le_bytes());
    v.extend_from_slice(&(phs.len() as u16).to_le_bytes());
    v.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    debug_assert_eq!(v.len(), EHDR_SIZE);
    for ph in phs {
        v.extend_from_slice(&ph.p_type.to_le_bytes());
        v.extend_from_slice(&ph.flags.to_le_bytes());
        v.extend_from_slice(&ph.offset.to_le_bytes());
        v.extend_from_slice(&ph.vaddr.to_le_bytes());
        v.extend_from_slice(&ph.vaddr.to_le_bytes()); // p_paddr
        v.extend_from_slice(&ph.filesz.to_le_bytes());
        v.extend_from_slice(&ph.memsz.to_le_bytes());
        v.extend_from_slice(&PAGE_SIZE.to_le_bytes()); // p_align
    }
    v
}

/// Reads the program header at file offset `at`.
fn read_phdr(r: &Reader<'_>, at: u64) -> Option<Phdr> {
    Some(Phdr {
        p_type: r.u32(at)?,
        flags: r.u32(at.checked_add(4)?)?,
        offset: r.u64(at.checked_add(8)?)?,
        vaddr: r.u64(at.checked_add(16)?)?,
        filesz: r.u64(at.checked_add(32)?)?,
        memsz: r.u64(at.checked_add(40)?)?,
    })
}

/// Validates the ELF64 executable whose contents start at `bytes[0]` and
/// describes it. `bytes` must hold the whole file, or at least everything up
/// to the end of the program headers and of the `PT_INTERP` string; segment
/// data beyond `bytes` is reported as corrupt.
///
/// # Errors
///
/// An [`ElfError`] saying why the file cannot run: not ELF at all, the wrong
/// class, byte order, machine or type, truncated, or corrupt.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    let len = bytes.len() as u64;
    if bytes.is_empty() {
        return Err(ElfError::Empty);
    }
    if bytes.starts_with(b"#!") {
        return Err(ElfError::Script);
    }
    if !bytes.starts_with(ELF_MAGIC) {
        if ELF_MAGIC.starts_with(bytes) {
            return Err(ElfError::Truncated(format!(
                "{len} bytes, shorter than the {EHDR_SIZE}-byte ELF header"
            )));
        }
        return Err(ElfError::NotElf);
    }
    let r = Reader { bytes };

    // Identification bytes, checked as soon as they are present so that a
    // short file of the wrong class or byte order is described as such.
    match r.array::<1>(4).map(|b| b[0]) {
        Some(ELFCLASS64) | None => {}
        Some(ELFCLASS32) => return Err(ElfError::Elf32),
        Some(c) => return Err(corrupt(format!("invalid ELF class {c}"))),
    }
    match r.array::<1>(5).map(|b| b[0]) {
        Some(ELFDATA2LSB) | None => {}
        Some(ELFDATA2MSB) => return Err(ElfError::BigEndian),
        Some(d) => return Err(corrupt(format!("invalid data encoding {d}"))),
    }
    if bytes.len() < EHDR_SIZE {
        return Err(ElfError::Truncated(format!(
            "{len} bytes, shorter than the {EHDR_SIZE}-byte ELF header"
        )));
    }
    let truncated_header = || ElfError::Truncated("short ELF header".into());
    let e_type = r.u16(16).ok_or_else(truncated_header)?;
    let machine = r.u16(18).ok_or_else(truncated_header)?;
    let entry = r.u64(24).ok_or_else(truncated_header)?;
    let phoff = r.u64(32).ok_or_else(truncated_header)?;
    let phentsize = r.u16(54).ok_or_else(truncated_header)?;
    let phnum = r.u16(56).ok_or_else(truncated_header)?;

    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine { machine });
    }
    let kind = match e_type {
        ET_EXEC => ElfKind::Exec,
        ET_DYN => ElfKind::Dyn,
        _ => return Err(ElfError::NotExecutable { e_type }),
    };
    if phentsize != PHDR_SIZE {
        return Err(corrupt(format!(
            "program header size {phentsize}, expected {PHDR_SIZE}"
        )));
    }
    if phnum == 0 {
        return Err(corrupt("no program headers"));
    }
    if phnum > MAX_PHNUM {
        return Err(corrupt(format!(
            "{phnum} program headers (at most {MAX_PHNUM} are accepted)"
        )));
    }
    let table_size = u64::from(phnum) * u64::from(phentsize);
    let table_end = match phoff.checked_add(table_size) {
        Some(end) if end <= len => end,
        _ => {
            return Err(ElfError::Truncated(format!(
                "{phnum} program headers at offset {phoff:#x} extend past the end of the {len}-byte file"
            )))
        }
    };

    let mut segments: Vec<Segment> = Vec::new();
    let mut interp: Option<String> = None;
    let mut pt_phdr: Option<u64> = None;
    let mut exec_stack = false;

    for i in 0..u64::from(phnum) {
        // Cannot overflow: the whole table ends at table_end.
        let ph = read_phdr(&r, phoff + i * u64::from(PHDR_SIZE))
            .ok_or_else(|| ElfError::Truncated("short program header".into()))?;
        match ph.p_type {
            PT_LOAD => {
                if let Some(seg) = check_load(&ph, i, len)? {
                    segments.push(seg);
                }
            }
            PT_INTERP => {
                if interp.is_some() {
                    return Err(corrupt("more than one PT_INTERP program header"));
                }
                interp = Some(read_interp(&r, &ph)?);
            }
            PT_PHDR => {
                if pt_phdr.is_some() {
                    return Err(corrupt("more than one PT_PHDR program header"));
                }
                pt_phdr = Some(ph.vaddr);
            }
            PT_GNU_STACK => exec_stack = ph.flags & PF_X != 0,
            _ => {}
        }
    }

    if segments.is_empty() {
        return Err(corrupt("no loadable (PT_LOAD) segment"));
    }
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            if a.vaddr < b.end() && b.vaddr < a.end() {
                return Err(corrupt(format!(
                    "loadable segments overlap ({:#x}..{:#x} and {:#x}..{:#x})",
                    a.vaddr,
                    a.end(),
                    b.vaddr,
                    b.end()
                )));
            }
        }
    }
    if !segments
        .iter()
        .any(|s| s.exec && s.vaddr <= entry && entry < s.end())
    {
        if entry == 0 && kind == ElfKind::Dyn {
            return Err(corrupt("no entry point (is this a shared library?)"));
        }
        return Err(corrupt(format!(
            "entry point {entry:#x} is not inside an executable segment"
        )));
    }

    let phdr_vaddr = pt_phdr.or_else(|| {
        segments.iter().find_map(|s| {
            let file_end = s.offset.checked_add(s.filesz)?;
            if s.offset <= phoff && table_end <= file_end {
                s.vaddr.checked_add(phoff - s.offset)
            } else {
                None
            }
        })
    });

    Ok(ElfInfo {
        kind,
        entry,
        phoff,
        phentsize,
        phnum,
        segments,
        interp,
        phdr_vaddr,
        exec_stack,
    })
}

/// Validates the `PT_LOAD` header number `index`; `Ok(None)` for an empty
/// segment, which maps nothing.
fn check_load(ph: &Phdr, index: u64, file_len: u64) -> Result<Option<Segment>, ElfError> {
    if ph.filesz > ph.memsz {
        return Err(corrupt(format!(
            "segment {index} has a file size ({:#x}) larger than its memory size ({:#x})",
            ph.filesz, ph.memsz
        )));
    }
    if ph.filesz > 0 {
        match ph.offset.checked_add(ph.filesz) {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(corrupt(format!(
                    "segment {index} data ({:#x} bytes at offset {:#x}) extends past the end of the {file_len}-byte file",
                    ph.filesz, ph.offset
                )))
            }
        }
    }
    let end = match ph.vaddr.checked_add(ph.memsz) {
        Some(end) => end,
        None => {
            return Err(corrupt(format!(
                "segment {index} address range overflows ({:#x} + {:#x})",
                ph.vaddr, ph.memsz
            )))
        }
    };
    if end > USER_ADDRESS_LIMIT {
        return Err(corrupt(format!(
            "segment {index} ends at {end:#x}, beyond the user address space"
        )));
    }
    if ph.vaddr.wrapping_sub(ph.offset) & (PAGE_SIZE - 1) != 0 {
        return Err(corrupt(format!(
            "misaligned segment {index} (address {:#x} and file offset {:#x} differ within a page)",
            ph.vaddr, ph.offset
        )));
    }
    if ph.memsz == 0 {
        return Ok(None);
    }
    Ok(Some(Segment {
        vaddr: ph.vaddr,
        memsz: ph.memsz,
        filesz: ph.filesz,
        offset: ph.offset,
        read: ph.flags & PF_R != 0,
        write: ph.flags & PF_W != 0,
        exec: ph.flags & PF_X != 0,
    }))
}

/// Reads the NUL-terminated interpreter path of a `PT_INTERP` header.
fn read_interp(r: &Reader<'_>, ph: &Phdr) -> Result<String, ElfError> {
    if ph.filesz < 2 || ph.filesz > MAX_INTERP_LEN {
        return Err(corrupt(format!(
            "interpreter path (PT_INTERP) has an invalid length {}",
            ph.filesz
        )));
    }
    let raw = r.range(ph.offset, ph.filesz).ok_or_else(|| {
        corrupt(format!(
            "interpreter path (PT_INTERP, {} bytes at offset {:#x}) lies past the end of the file",
            ph.filesz, ph.offset
        ))
    })?;
    let nul = raw
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| corrupt("interpreter path (PT_INTERP) is not NUL-terminated"))?;
    if nul == 0 {
        return Err(corrupt("interpreter path (PT_INTERP) is empty"));
    }
    String::from_utf8(raw[..nul].to_vec())
        .map_err(|_| corrupt("interpreter path (PT_INTERP) is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Phdr {
        Phdr {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
        }
    }

    /// Writes an ELF64 header with `phs` right after it, then pads the
    /// file to `file_len` bytes and copies `extra` in at its offsets.
    fn build(
        e_type: u16,
        entry: u64,
        phs: &[Phdr],
        file_len: usize,
        extra: &[(usize, &[u8])],
    ) -> Vec<u8> {
        let mut v = write_headers(e_type, entry, phs);
        if v.len() < file_len {
            v.resize(file_len, 0);
        }
        for (off, data) in extra {
            v[*off..*off + data.len()].copy_from_slice(data);
        }
        v
    }

    const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";
    const INTERP_OFF: usize = 0x200;

    /// A small static ET_EXEC: text at 0x400000 (holding the headers) and
    /// data+bss at 0x401000.
    fn static_exec() -> Vec<u8> {
        build(
            ET_EXEC,
            0x400100,
            &[
                load(PF_R | PF_X, 0, 0x400000, 0x1000, 0x1000),
                load(PF_R | PF_W, 0x1000, 0x401000, 0x100, 0x3000),
                Phdr {
                    p_type: PT_GNU_STACK,
                    flags: PF_R | PF_W,
                    offset: 0,
                    vaddr: 0,
                    filesz: 0,
                    memsz: 0,
                },
            ],
            0x1100,
            &[],
        )
    }

    /// A PIE with PT_PHDR, PT_INTERP, two adjacent loads and an
    /// executable-stack request.
    fn dynamic_pie() -> Vec<u8> {
        build(
            ET_DYN,
            0x1050,
            &[
                Phdr {
                    p_type: PT_PHDR,
                    flags: PF_R,
                    offset: 64,
                    vaddr: 64,
                    filesz: 5 * 56,
                    memsz: 5 * 56,
                },
                Phdr {
                    p_type: PT_INTERP,
                    flags: PF_R,
                    offset: INTERP_OFF as u64,
                    vaddr: INTERP_OFF as u64,
                    filesz: INTERP.len() as u64,
                    memsz: INTERP.len() as u64,
                },
                load(PF_R, 0, 0, 0x1000, 0x1000),
                load(PF_R | PF_X, 0x1000, 0x1000, 0x800, 0x800),
                Phdr {
                    p_type: PT_GNU_STACK,
                    flags: PF_R | PF_W | PF_X,
                    offset: 0,
                    vaddr: 0,
                    filesz: 0,
                    memsz: 0,
                },
            ],
            0x1800,
            &[(INTERP_OFF, INTERP)],
        )
    }

    fn err(bytes: &[u8]) -> String {
        match parse(bytes) {
            Ok(info) => panic!("expected an error, parsed {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn set_u16(v: &mut [u8], off: usize, x: u16) {
        v[off..off + 2].copy_from_slice(&x.to_le_bytes());
    }

    fn set_u64(v: &mut [u8], off: usize, x: u64) {
        v[off..off + 8].copy_from_slice(&x.to_le_bytes());
    }

    /// Offset of field `field_off` of program header `i`.
    fn ph_field(i: usize, field_off: usize) -> usize {
        64 + i * 56 + field_off
    }

    #[test]
    fn parses_static_exec() {
        let info = parse(&static_exec()).unwrap();
        assert_eq!(info.kind, ElfKind::Exec);
        assert_eq!(info.entry, 0x400100);
        assert_eq!((info.phoff, info.phentsize, info.phnum), (64, 56, 3));
        assert_eq!(
            info.segments,
            vec![
                Segment {
                    vaddr: 0x400000,
                    memsz: 0x1000,
                    filesz: 0x1000,
                    offset: 0,
                    read: true,
                    write: false,
                    exec: true
                },
                Segment {
                    vaddr: 0x401000,
                    memsz: 0x3000,
                    filesz: 0x100,
                    offset: 0x1000,
                    read: true,
                    write: true,
                    exec: false
                },
            ]
        );
        assert_eq!(info.interp, None);
        // No PT_PHDR: found through the first PT_LOAD, which maps offset 0.
        assert_eq!(info.phdr_vaddr, Some(0x400040));
        assert!(!info.exec_stack);
        assert_eq!(info.span(), (0x400000, 0x404000));
    }

    #[test]
    fn parses_dynamic_pie() {
        let info = parse(&dynamic_pie()).unwrap();
        assert_eq!(info.kind, ElfKind::Dyn);
        assert_eq!(info.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(info.phdr_vaddr, Some(64));
        assert!(info.exec_stack);
        assert_eq!(info.segments.len(), 2);
        assert_eq!(info.span(), (0, 0x2000));
    }

    #[test]
    fn adjacent_segments_sharing_a_page_are_allowed() {
        // Text ends mid-page at 0x400800; data starts in the same page at
        // 0x400800 (file offset 0x800, congruent modulo the page size).
        let v = build(
            ET_EXEC,
            0x400100,
            &[
                load(PF_R | PF_X, 0, 0x400000, 0x800, 0x800),
                load(PF_R | PF_W, 0x800, 0x400800, 0x100, 0x2000),
            ],
            0x900,
            &[],
        );
        let info = parse(&v).unwrap();
        assert_eq!(info.span(), (0x400000, 0x403000));
    }

    #[test]
    fn empty_pt_load_is_skipped() {
        let v = build(
            ET_EXEC,
            0x400100,
            &[
                load(PF_R, 0, 0x500000, 0, 0),
                load(PF_R | PF_X, 0, 0x400000, 0x200, 0x200),
            ],
            0x200,
            &[],
        );
        let info = parse(&v).unwrap();
        assert_eq!(info.segments.len(), 1);
        assert_eq!(info.segments[0].vaddr, 0x400000);
    }

    #[test]
    fn identification_errors() {
        assert_eq!(err(b""), "the file is empty");
        let script = err(b"#!/bin/sh\necho hi\n");
        assert!(script.contains("not an ELF executable"), "{script}");
        assert!(script.contains("#!"), "{script}");
        assert!(script.contains("interpreter"), "{script}");
        assert_eq!(err(b"hello world"), "not an ELF executable");
        assert_eq!(err(b"MZ\x90\x00"), "not an ELF executable");
        assert!(err(b"\x7fEL").contains("truncated ELF file"));

        let mut v = static_exec();
        v[4] = ELFCLASS32;
        let m = err(&v);
        assert!(m.contains("32-bit") && m.contains("x86-64"), "{m}");
        v[4] = 7;
        assert!(err(&v).starts_with("corrupt ELF file:"));

        let mut v = static_exec();
        v[5] = ELFDATA2MSB;
        assert!(err(&v).contains("big-endian"));
        v[5] = 0;
        assert!(err(&v).starts_with("corrupt ELF file:"));
    }

    #[test]
    fn wrong_machine() {
        for (m, name) in [
            (3u16, "i386"),
            (40, "ARM"),
            (183, "AArch64"),
            (243, "RISC-V"),
        ] {
            let mut v = static_exec();
            set_u16(&mut v, 18, m);
            let msg = err(&v);
            assert!(msg.contains("another machine"), "{msg}");
            assert!(msg.contains(&format!("e_machine {m}")), "{msg}");
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains("not x86-64"), "{msg}");
        }
        let mut v = static_exec();
        set_u16(&mut v, 18, 9999);
        assert_eq!(
            err(&v),
            "an ELF executable for another machine (e_machine 9999), not x86-64"
        );
    }

    #[test]
    fn not_an_executable() {
        for (t, name) in [
            (1u16, "relocatable object"),
            (4, "core dump"),
            (0, "no file type"),
            (77, "unknown"),
        ] {
            let mut v = static_exec();
            set_u16(&mut v, 16, t);
            let msg = err(&v);
            assert!(msg.contains("not an executable"), "{msg}");
            assert!(msg.contains(&format!("ELF type {t}")), "{msg}");
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn truncated() {
        let v = static_exec();
        for n in [4usize, 5, 6, 20, 63] {
            let m = err(&v[..n]);
            assert!(m.starts_with("truncated ELF file ("), "{n}: {m}");
        }
        // Program headers run past the end of the file.
        let m = err(&v[..64 + 56 * 2]);
        assert!(m.starts_with("truncated ELF file ("), "{m}");
        let mut v = static_exec();
        set_u64(&mut v, 32, u64::MAX - 10); // e_phoff overflows
        assert!(err(&v).starts_with("truncated ELF file ("));
    }

    #[test]
    fn corrupt_headers() {
        let check = |v: &[u8], words: &str| {
            let m = err(v);
            assert!(m.starts_with("corrupt ELF file: "), "{m}");
            assert!(m.contains(words), "expected {words:?} in {m:?}");
        };

        let mut v = static_exec();
        set_u16(&mut v, 54, 32);
        check(&v, "program header size");

        let mut v = static_exec();
        set_u16(&mut v, 56, 0);
        check(&v, "no program headers");

        let mut v = static_exec();
        set_u16(&mut v, 56, 129);
        check(&v, "129 program headers");

        // filesz > memsz
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 32), 0x4000);
        check(&v, "larger than its memory size");

        // offset + filesz past the end of the file
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 32), 0x200);
        check(&v, "past the end");
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 8), u64::MAX - 0xfff);
        check(&v, "past the end");

        // vaddr + memsz overflows
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 16), u64::MAX - 0xfff);
        check(&v, "overflows");

        // beyond the user address space
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 16), 0x7fff_ffff_f000);
        check(&v, "user address space");

        // vaddr and offset not congruent modulo the page size
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 16), 0x401010);
        check(&v, "misaligned segment");

        // no PT_LOAD
        let mut v = static_exec();
        v[ph_field(0, 0)] = 0;
        v[ph_field(1, 0)] = 0;
        check(&v, "no loadable");

        // entry outside any segment, or in a non-executable one
        let mut v = static_exec();
        set_u64(&mut v, 24, 0x900000);
        check(&v, "entry point");
        let mut v = static_exec();
        set_u64(&mut v, 24, 0x401000);
        check(&v, "entry point");
        let mut v = dynamic_pie();
        set_u64(&mut v, 24, 0);
        check(&v, "no entry point");

        // overlapping segments
        let mut v = static_exec();
        set_u64(&mut v, ph_field(1, 16), 0x400000);
        set_u64(&mut v, ph_field(1, 8), 0);
        check(&v, "overlap");
    }

    #[test]
    fn corrupt_interp() {
        let check = |v: &[u8], words: &str| {
            let m = err(v);
            assert!(m.starts_with("corrupt ELF file: "), "{m}");
            assert!(m.contains(words), "expected {words:?} in {m:?}");
        };
        let interp_ph = 1;

        // Not NUL-terminated.
        let mut v = dynamic_pie();
        set_u64(&mut v, ph_field(interp_ph, 32), INTERP.len() as u64 - 1);
        check(&v, "NUL");

        // Past the end of the file.
        let mut v = dynamic_pie();
        set_u64(&mut v, ph_field(interp_ph, 8), 0x17f0);
        check(&v, "past the end");
        let mut v = dynamic_pie();
        set_u64(&mut v, ph_field(interp_ph, 8), u64::MAX);
        check(&v, "past the end");

        // Empty or absurdly long.
        let mut v = dynamic_pie();
        v[INTERP_OFF] = 0;
        check(&v, "empty");
        let mut v = dynamic_pie();
        set_u64(&mut v, ph_field(interp_ph, 32), 1 << 40);
        check(&v, "invalid length");

        // Not UTF-8.
        let mut v = dynamic_pie();
        v[INTERP_OFF + 1] = 0xff;
        check(&v, "UTF-8");

        // Two PT_INTERP headers.
        let mut v = dynamic_pie();
        v[ph_field(0, 0)] = PT_INTERP as u8;
        set_u64(&mut v, ph_field(0, 8), INTERP_OFF as u64);
        set_u64(&mut v, ph_field(0, 32), INTERP.len() as u64);
        check(&v, "more than one PT_INTERP");
    }

    #[test]
    fn span_of_unsorted_and_empty_infos() {
        let mut info = parse(&static_exec()).unwrap();
        info.segments.reverse();
        assert_eq!(info.span(), (0x400000, 0x404000));
        info.segments.clear();
        assert_eq!(info.span(), (0, 0));
        info.segments.push(Segment {
            vaddr: u64::MAX - 5,
            memsz: 100,
            filesz: 0,
            offset: 0,
            read: true,
            write: false,
            exec: false,
        });
        let (lo, hi) = info.span();
        assert!(lo <= hi);
    }

    /// Deterministic xorshift64* generator for the fuzz test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Parse must return, never panic; a successful parse must describe a
    /// coherent image.
    fn parse_checked(bytes: &[u8]) {
        if let Ok(info) = parse(bytes) {
            assert!(!info.segments.is_empty());
            assert!(info
                .segments
                .iter()
                .any(|s| s.exec && s.vaddr <= info.entry && info.entry < s.end()));
            for s in &info.segments {
                assert!(s.filesz <= s.memsz);
                assert!(s.end() <= USER_ADDRESS_LIMIT);
                assert_eq!(s.vaddr.wrapping_sub(s.offset) % PAGE_SIZE, 0);
                assert!(s.filesz == 0 || s.offset + s.filesz <= bytes.len() as u64);
            }
            let (lo, hi) = info.span();
            assert!(lo < hi && lo % PAGE_SIZE == 0 && hi % PAGE_SIZE == 0);
        }
    }

    #[test]
    fn fuzz_truncations_and_byte_flips() {
        let seeds = [static_exec(), dynamic_pie()];
        for seed in &seeds {
            for n in 0..=seed.len() {
                parse_checked(&seed[..n]);
            }
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut cases = 0;
        for seed in &seeds {
            let hdr_len = 64 + 56 * u64::from(u16::from_le_bytes([seed[56], seed[57]]));
            for _ in 0..10_000 {
                let mut v = seed.clone();
                match rng.below(4) {
                    // Flip a few random bits in the headers.
                    0 | 1 => {
                        for _ in 0..=rng.below(4) {
                            let at = rng.below(hdr_len) as usize;
                            v[at] ^= 1 << rng.below(8);
                        }
                    }
                    // Overwrite a few bytes with random values.
                    2 => {
                        for _ in 0..=rng.below(6) {
                            let at = rng.below(hdr_len) as usize;
                            v[at] = rng.next() as u8;
                        }
                    }
                    // Write an extreme value over an 8-byte-aligned field.
                    _ => {
                        let at = (rng.below(hdr_len / 8) * 8) as usize;
                        let x = match rng.below(5) {
                            0 => u64::MAX,
                            1 => u64::MAX - rng.below(0x10000),
                            2 => 1 << rng.below(64),
                            3 => 0,
                            _ => rng.next(),
                        };
                        set_u64(&mut v, at, x);
                    }
                }
                if rng.below(4) == 0 {
                    let n = rng.below(v.len() as u64 + 1) as usize;
                    v.truncate(n);
                }
                parse_checked(&v);
                cases += 1;
            }
        }
        assert_eq!(cases, 20_000);
    }

    #[test]
    fn real_static_busybox() {
        let Ok(bytes) = std::fs::read("/bin/busybox") else {
            return;
        };
        // Only the static x86-64 busybox is described here.
        if bytes.get(16..20) != Some(&[2, 0, 62, 0]) {
            return;
        }
        let info = parse(&bytes).unwrap();
        assert_eq!(info.kind, ElfKind::Exec);
        assert_eq!(info.interp, None);
        assert!(!info.exec_stack);
        assert!(info.phdr_vaddr.is_some());
        let (lo, hi) = info.span();
        assert!(lo >= 0x1000 && lo < hi);
        assert!(info.segments.iter().any(|s| s.exec));
        assert!(info.segments.iter().any(|s| s.write && s.memsz > s.filesz));
    }

    #[test]
    fn real_dynamic_ls() {
        let Ok(bytes) = std::fs::read("/bin/ls") else {
            return;
        };
        if bytes.get(18..20) != Some(&[62, 0]) {
            return;
        }
        let info = parse(&bytes).unwrap();
        assert_eq!(info.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(info.phdr_vaddr.is_some());
        assert!(!info.exec_stack);
        assert!(info.segments.len() >= 2);
        // Every truncation of the headers must fail cleanly, not panic.
        let hdr_end = (info.phoff + 56 * u64::from(info.phnum)) as usize;
        for n in 0..hdr_end.min(bytes.len()) {
            let _ = parse(&bytes[..n]);
        }
    }
}
