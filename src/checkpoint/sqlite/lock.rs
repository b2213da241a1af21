//! The store lock: the daemon holds `<store>.lock` for its whole life, so `esmd checkpoints`
//! refuses to change a store under a running daemon.

use std::path::Path;

use super::super::CheckpointError;
use super::rows::storage;

/// An exclusive lock on a store file, held by the daemon for its whole life so that
/// `esmd checkpoints` cannot change a store under a running daemon. The operating system
/// drops it when the process exits, even after `kill -9`.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    /// The lock file beside the store (`<path>.lock`).
    pub(crate) fn path_for(store: &Path) -> std::path::PathBuf {
        let mut name = store.as_os_str().to_owned();
        name.push(".lock");
        name.into()
    }

    /// Takes the lock, or says who holds it.
    pub(crate) fn acquire(store: &Path) -> Result<Self, CheckpointError> {
        let path = Self::path_for(store);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| storage(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::{Seek, Write};
                let _ = file.set_len(0);
                let _ = file.seek(std::io::SeekFrom::Start(0));
                let _ = writeln!(file, "{}", std::process::id());
                Ok(StoreLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                Err(CheckpointError::Storage(format!(
                    "{} is in use by a running esmd (pid {}); stop it first",
                    store.display(),
                    pid.trim()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(storage(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }
}
