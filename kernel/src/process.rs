//! Creating processes: a new address space, the program loaded into it, a
//! thread group and its first task, queued to start.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;
use sentry_systrap::{host, Regs};

use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::loader::{self, LoadError};
use crate::mm::Mm;
use crate::task::{FsState, SigAction, Start, Task, ThreadGroup};
use crate::vfs::FdTable;

/// What `create_process` needs.
pub struct CreateProcessArgs {
    /// Host path of the executable.
    pub filename: String,
    pub argv: Vec<Vec<u8>>,
    pub envv: Vec<Vec<u8>>,
    /// Host path of the working directory.
    pub working_directory: String,
}

/// Why a process could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("working directory {path}: {source}")]
    Cwd {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the sandbox: {0}")]
    Platform(#[from] sentry_systrap::PlatformError),
}

impl Kernel {
    /// Creates a process running `args.filename` and queues its first thread.
    pub fn create_process(
        self: &Arc<Self>,
        args: CreateProcessArgs,
    ) -> Result<Arc<ThreadGroup>, CreateError> {
        let (bytes, info) = loader::read_executable(&args.filename)?;
        let cwd_c = std::ffi::CString::new(args.working_directory.clone()).map_err(|_| {
            CreateError::Cwd {
                path: args.working_directory.clone(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            }
        })?;
        let cwd = host::openat(libc::AT_FDCWD, &cwd_c, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|source| CreateError::Cwd {
                path: args.working_directory.clone(),
                source,
            })?;
        let worker = self.pick_worker();
        let mut ctx = self.platform.new_address_space(&Regs::default(), worker)?;
        let mm = Arc::new(Mm::new(self.platform.memory_file().clone()));
        let loaded = loader::load(
            &args.filename,
            &bytes,
            &info,
            &mm,
            &mut *ctx,
            &args.argv,
            &args.envv,
        );
        if let Err(e) = loaded {
            ctx.address_space().kill();
            return Err(e.into());
        }
        let tid = self.alloc_tid();
        let tg = Arc::new(ThreadGroup {
            pid: tid,
            address_space: ctx.address_space(),
            ppid: 0,
            mm,
            fds: Arc::new(FdTable::with_stdio()),
            fs: Mutex::new(FsState {
                cwd,
                cwd_path: args.working_directory.into_bytes(),
                umask: 0o022,
            }),
            exe: std::fs::canonicalize(&args.filename)
                .map(|p| p.into_os_string().into_encoded_bytes())
                .unwrap_or_else(|_| args.filename.into_bytes()),
            sigactions: Mutex::new([SigAction::default(); 64]),
            exiting: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        let task = Task::new(tid, tg.clone(), ctx, worker, Start::Resume);
        self.start_task(task);
        Ok(tg)
    }
}

/// Keeps `Errno` reachable for callers matching on creation failures.
pub type Result2<T> = Result<T, Errno>;
