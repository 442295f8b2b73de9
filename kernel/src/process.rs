//! Creating processes: a new address space, the program loaded into it, a
//! thread group and its first task, queued to start.

use std::sync::Arc;

use sentry_systrap::{host, Regs};

use crate::kernel::Kernel;
use crate::loader::{self, LoadError};
use crate::mm::Mm;
use crate::task::{FsState, SigAction, Start, Task, ThreadGroup, ThreadGroupParts};
use crate::vfs::FdTable;

/// Resource limits a process starts with (RLIMIT_NOFILE and RLIMIT_STACK so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub nofile: u64,
    pub stack: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nofile: crate::vfs::MAX_FDS as u64,
            stack: crate::mm::STACK_SIZE,
        }
    }
}

/// What `create_process` needs (gVisor's `CreateProcessArgs`).
pub struct CreateProcessArgs {
    /// Host path of the executable; when empty, `argv[0]`, which must then
    /// be an absolute path.
    pub filename: String,
    pub argv: Vec<Vec<u8>>,
    pub envv: Vec<Vec<u8>>,
    /// Host path of the working directory (empty: `/`).
    pub working_directory: String,
    pub credentials: Option<crate::init::Credentials>,
    /// The initial descriptor table (None: the sentry's stdin, stdout, stderr).
    pub fd_table: Option<FdTable>,
    pub umask: u32,
    pub limits: Limits,
    /// Symlinks followed at most while resolving the executable.
    pub max_symlink_traversals: u32,
    pub uts_namespace: Option<Arc<crate::init::UtsNamespace>>,
    pub ipc_namespace: Option<Arc<crate::init::IpcNamespace>>,
}

impl CreateProcessArgs {
    /// A process running `argv` (argv[0] found by the caller as `filename`).
    pub fn new(
        filename: impl Into<String>,
        argv: Vec<Vec<u8>>,
        envv: Vec<Vec<u8>>,
        cwd: impl Into<String>,
    ) -> Self {
        CreateProcessArgs {
            filename: filename.into(),
            argv,
            envv,
            working_directory: cwd.into(),
            credentials: None,
            fd_table: None,
            umask: 0o022,
            limits: Limits::default(),
            max_symlink_traversals: 40,
            uts_namespace: None,
            ipc_namespace: None,
        }
    }
}

/// Why a process could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no filename or command provided")]
    NoCommand,
    #[error("'{0}' is not an absolute path")]
    NotAbsolute(String),
    #[error("failed to find initial working directory {path:?}: {source}")]
    Cwd {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the sandbox: {0}")]
    Platform(#[from] sentry_systrap::PlatformError),
}

/// Follows symlinks of `path` at most `max` times (ELOOP past that).
fn resolve_symlinks(path: &str, max: u32) -> Result<String, std::io::Error> {
    let mut p = std::path::PathBuf::from(path);
    for _ in 0..=max {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(p.to_string_lossy().into_owned()),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

impl Kernel {
    /// Creates a process running `args.filename` and queues its first thread.
    pub fn create_process(
        self: &Arc<Self>,
        mut args: CreateProcessArgs,
    ) -> Result<Arc<ThreadGroup>, CreateError> {
        if args.filename.is_empty() {
            let Some(first) = args.argv.first() else {
                return Err(CreateError::NoCommand);
            };
            let first = String::from_utf8_lossy(first).into_owned();
            if !first.starts_with('/') {
                return Err(CreateError::NotAbsolute(first));
            }
            args.filename = first;
        }
        if args.working_directory.is_empty() {
            args.working_directory = "/".into();
        }
        let resolved =
            resolve_symlinks(&args.filename, args.max_symlink_traversals).map_err(|source| {
                LoadError::Open {
                    path: args.filename.clone(),
                    source,
                }
            })?;
        let (bytes, info) = loader::read_executable(&resolved)?;
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
        let tg = ThreadGroup::new(ThreadGroupParts {
            pid: tid,
            ppid: 0,
            pgid: tid,
            sid: tid,
            address_space: ctx.address_space(),
            mm,
            fds: Arc::new(args.fd_table.take().unwrap_or_else(FdTable::with_stdio)),
            fs: FsState {
                cwd,
                cwd_path: args.working_directory.clone().into_bytes(),
                umask: args.umask,
            },
            exe: std::fs::canonicalize(&args.filename)
                .map(|p| p.into_os_string().into_encoded_bytes())
                .unwrap_or_else(|_| args.filename.into_bytes()),
            creds: args.credentials.unwrap_or(self.root_credentials),
            limits: args.limits,
            sigactions: [SigAction::default(); 64],
        });
        let task = Task::new(tid, tg.clone(), ctx, worker, Start::Resume);
        self.start_task(task);
        Ok(tg)
    }
}
