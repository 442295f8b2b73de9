//! What a kernel is built from: the arguments of [`Kernel::init`] and the
//! small namespace and credential types they carry.
//!
//! `init` validates its arguments the way gVisor's `Kernel.Init` does: no
//! feature set, no timekeeper, no root user namespace or zero application
//! cores each get their own error; with `use_host_cores` the application
//! cores are raised to the host's highest possible CPU + 1.
//!
//! [`Kernel::init`]: crate::Kernel::init

use std::sync::Arc;

use parking_lot::Mutex;
use sentry_systrap::host;

/// The CPU features guests see (what the loader reports in the auxv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSet {
    pub hwcap: u64,
    pub hwcap2: u64,
}

impl FeatureSet {
    /// The host CPU's features.
    pub fn host() -> FeatureSet {
        FeatureSet {
            hwcap: host::hwcap(),
            hwcap2: 0,
        }
    }
}

/// The source of guest time (the host's clocks).
#[derive(Debug, Default)]
pub struct Timekeeper {}

impl Timekeeper {
    pub fn host() -> Arc<Timekeeper> {
        Arc::new(Timekeeper {})
    }
}

/// User and group identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
}

impl Credentials {
    /// The identity of the user running the sentry.
    pub fn host() -> Credentials {
        let (uid, gid) = host::ids();
        Credentials {
            uid,
            gid,
            euid: uid,
            egid: gid,
        }
    }
}

/// A user namespace (only the root one exists).
#[derive(Debug)]
pub struct UserNamespace {
    pub owner: Credentials,
}

impl UserNamespace {
    pub fn root(owner: Credentials) -> Arc<UserNamespace> {
        Arc::new(UserNamespace { owner })
    }
}

/// Host and domain name as `uname` shows them.
#[derive(Debug)]
pub struct UtsNamespace {
    pub hostname: Mutex<Vec<u8>>,
    pub domainname: Mutex<Vec<u8>>,
}

impl UtsNamespace {
    pub fn new(hostname: &[u8], domainname: &[u8]) -> Arc<UtsNamespace> {
        Arc::new(UtsNamespace {
            hostname: Mutex::new(hostname.to_vec()),
            domainname: Mutex::new(domainname.to_vec()),
        })
    }

    /// The host's node name and "(none)", as Linux shows without a domain.
    pub fn host() -> Arc<UtsNamespace> {
        let u = host::uname();
        UtsNamespace::new(&u[1], b"(none)")
    }
}

/// System V IPC namespace (nothing in it yet).
#[derive(Debug, Default)]
pub struct IpcNamespace {}

/// A vDSO image (the sentry offers none yet).
#[derive(Debug)]
pub struct Vdso {}

/// Arguments of [`crate::Kernel::init`].
pub struct InitKernelArgs {
    pub feature_set: Option<FeatureSet>,
    pub timekeeper: Option<Arc<Timekeeper>>,
    pub root_user_namespace: Option<Arc<UserNamespace>>,
    pub root_credentials: Credentials,
    /// No network stack exists yet; `None` is the only value.
    pub network_stack: Option<()>,
    pub application_cores: usize,
    pub use_host_cores: bool,
    pub extra_auxv: Vec<(u64, u64)>,
    pub vdso: Option<Vdso>,
    pub root_uts_namespace: Arc<UtsNamespace>,
    pub root_ipc_namespace: Arc<IpcNamespace>,
}

impl InitKernelArgs {
    /// Everything from the host, with `cores` application cores.
    pub fn host(cores: usize) -> InitKernelArgs {
        let creds = Credentials::host();
        InitKernelArgs {
            feature_set: Some(FeatureSet::host()),
            timekeeper: Some(Timekeeper::host()),
            root_user_namespace: Some(UserNamespace::root(creds)),
            root_credentials: creds,
            network_stack: None,
            application_cores: cores,
            use_host_cores: false,
            extra_auxv: Vec::new(),
            vdso: None,
            root_uts_namespace: UtsNamespace::host(),
            root_ipc_namespace: Arc::new(IpcNamespace::default()),
        }
    }
}

/// Why `init` refused.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("no CPU feature set given")]
    NoFeatureSet,
    #[error("no timekeeper given")]
    NoTimekeeper,
    #[error("no root user namespace given")]
    NoUserNamespace,
    #[error("application cores is 0; a sandbox needs at least one CPU")]
    NoApplicationCores,
    #[error("cannot read the host's possible CPUs: {0}")]
    HostCpus(std::io::Error),
    #[error("cannot start the kernel's threads: {0}")]
    Threads(std::io::Error),
}

/// The host's highest possible CPU number, from `/sys/devices/system/cpu/possible`
/// (a list such as `0-3` or `0,2-5`).
pub fn max_possible_cpu() -> Result<usize, InitError> {
    let s =
        std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(InitError::HostCpus)?;
    parse_cpu_list_max(&s).ok_or_else(|| {
        InitError::HostCpus(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad CPU list {s:?}"),
        ))
    })
}

/// Highest CPU in a kernel CPU list like `0-3,8,10-11`.
pub fn parse_cpu_list_max(s: &str) -> Option<usize> {
    let mut max = None;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let hi = part.rsplit('-').next()?.trim().parse::<usize>().ok()?;
        max = Some(max.map_or(hi, |m: usize| m.max(hi)));
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list_max("0-3\n"), Some(3));
        assert_eq!(parse_cpu_list_max("0"), Some(0));
        assert_eq!(parse_cpu_list_max("0,2-5,7"), Some(7));
        assert_eq!(parse_cpu_list_max("x"), None);
        assert!(max_possible_cpu().is_ok());
    }
}
