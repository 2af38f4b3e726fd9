//! One writer per file store: an exclusive lock (`flock`) on `DIR/lock`, held while the
//! store is open for writing, with the holder's pid written in the file so that a second
//! writer is refused by name. Two writers would both extend position 0 of the store chain
//! and leave a store that fails verification forever.
//!
//! Readers take no lock; they stop at the end of the last whole frame, so an append in
//! progress is never mistaken for damage (see [`held_by_other`]).

use super::super::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The held lock; released when dropped (and by the kernel if the process dies).
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

fn lock_path(dir: &Path) -> std::path::PathBuf {
    dir.join("lock")
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!("pid {pid}"),
        Err(_) => "another process".to_string(),
    }
}

/// Takes the writer lock of the store in `dir`, or says who holds it.
pub(crate) fn acquire(dir: &Path) -> Result<WriterLock, StoreError> {
    let path = lock_path(dir);
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                path: dir.display().to_string(),
                holder: holder(&mut file),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(WriterLock { _file: file })
}

/// Whether another process holds the writer lock: its last append may be in progress.
pub(crate) fn held_by_other(dir: &Path) -> bool {
    let Ok(file) = File::open(lock_path(dir)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}
