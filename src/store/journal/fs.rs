//! The file layer under the journal, as a pair of traits so tests can put a fault-injecting wrapper between the
//! journal and the disk (the durability contract, shared design §5: "the file layer is a trait so tests can inject torn writes, failed
//! fsyncs and ENOSPC").
//!
//! [`StoreFs`] is the directory (create, open, list, remove, rename, sync the directory entry, free space, lock,
//! the emergency reserve file); [`SegmentFile`] is one open segment (append, `fdatasync`, positional reads,
//! length, truncate). [`RealFs`] is the production implementation on `std::fs` plus `rustix` for `statvfs`,
//! `flock` and `fallocate`. Two test-only layers model what goes wrong: `FaultyFs` wraps another `StoreFs` and
//! counts calls, failing the Nth `fdatasync` or write on request, reporting little free space, or refusing to
//! open more than N files at once; `SimFs` (in `simfs`) is an in-memory file system that models the page cache
//! and the disk apart, so a test can kill the process or cut the power at any point.
//!
//! This module knows nothing about records or segments' contents: it moves bytes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One open segment file. Writes only ever append; reads are positional so the writer's position never moves.
pub trait SegmentFile: Send + Sync + fmt::Debug {
    /// Append all of `data` at the end of the file. On error an unknown prefix of `data` may have been written.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// `fdatasync`: every byte appended so far is on stable storage when this returns `Ok`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cut the file to `len` bytes; later appends go after it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The directory that holds the segments.
pub trait StoreFs: Send + Sync + fmt::Debug + 'static {
    /// Create `dir` and its parents if missing (see [`create_dir_durably`] for the durable version).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Take an exclusive advisory lock on the directory so two brokers never share a journal. The lock is held
    /// as long as the returned guard lives.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
    /// Create a new, empty file (fails if it exists), open for reading and appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Open an existing file for reading and appending.
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Rename a file, replacing `to` if it exists (atomically, as `rename(2)`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Create a new file of `len` bytes whose blocks are allocated on the disk (`fallocate`), synced: space held
    /// back for an emergency and given back by removing the file.
    fn create_reserve(&self, path: &Path, len: u64) -> io::Result<()>;
    /// The names (not paths) of the regular files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// `fsync` the directory so created and removed entries are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Bytes available to an unprivileged writer on the file system holding `dir`.
    fn available_space(&self, dir: &Path) -> io::Result<u64>;
}

/// Creates `dir` and its missing parents through `fs`, then syncs the parent of each directory it created
/// (oldest first), so a journal written into a new directory does not vanish with the directory after a crash:
/// `fsync` on a file or on `dir` itself does not make `dir`'s own entry durable.
pub(crate) fn create_dir_durably(fs: &dyn StoreFs, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        at = d.parent();
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        let parent = created
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// An exclusive lock on a data directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

impl DirLock {
    /// A guard that holds nothing, for file layers without locking.
    pub fn none() -> Self {
        Self { _file: None }
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

const LOCK_FILE: &str = "LOCK";

impl StoreFs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "data directory {} is locked by another process ({e})",
                        dir.display()
                    ),
                )
            },
        )?;
        Ok(DirLock { _file: Some(file) })
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(RealFile {
            file,
            end: 0,
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let end = file.metadata()?.len();
        Ok(Box::new(RealFile {
            file,
            end,
            path: path.to_path_buf(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn create_reserve(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().create_new(true).write(true).open(path)?;
        let allocated = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len);
        if allocated.is_err() {
            // No fallocate on this file system: write the zeros (a sparse `set_len` would reserve nothing).
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < len {
                let n = (len - at).min(zeros.len() as u64);
                file.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
        }
        file.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// A segment on the real file system. Appends use positional writes at the remembered end, so reads never
/// disturb them.
struct RealFile {
    file: File,
    end: u64,
    path: PathBuf,
}

impl fmt::Debug for RealFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealFile")
            .field("path", &self.path)
            .field("end", &self.end)
            .finish()
    }
}

impl SegmentFile for RealFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.end)?;
        self.end += data.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.end = len;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) use faulty::{Fault, FaultyFs};

#[cfg(test)]
mod faulty {
    //! A `StoreFs` wrapper that counts calls and fails the Nth one of a kind, for fault-injection tests; it can
    //! also cap the number of files open at once (as `ulimit -n` does) and remembers which directories were
    //! synced.

    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{DirLock, SegmentFile, StoreFs};

    /// A fault to inject.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// The Nth `fdatasync` (1-based, across all files) returns EIO without syncing.
        FailSync(u64),
        /// The Nth write writes half of its bytes and then fails with EIO.
        ShortWrite(u64),
        /// The Nth write fails with ENOSPC without writing anything.
        NoSpace(u64),
    }

    #[derive(Debug, Default)]
    pub(crate) struct Counters {
        pub(crate) syncs: AtomicU64,
        pub(crate) writes: AtomicU64,
        /// Bytes read through the layer's files.
        read_bytes: AtomicU64,
        /// Files open right now, and the most that were open at once.
        open: AtomicU64,
        peak_open: AtomicU64,
        max_open: Mutex<Option<u64>>,
        synced_dirs: Mutex<Vec<PathBuf>>,
        fault: Mutex<Option<Fault>>,
        available: Mutex<Option<u64>>,
    }

    impl Counters {
        fn fault(&self) -> Option<Fault> {
            *self.fault.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Wraps a real file layer; see the module docs.
    #[derive(Debug, Clone)]
    pub(crate) struct FaultyFs {
        inner: Arc<dyn StoreFs>,
        pub(crate) counters: Arc<Counters>,
    }

    impl FaultyFs {
        pub(crate) fn new(inner: Arc<dyn StoreFs>) -> Self {
            Self {
                inner,
                counters: Arc::new(Counters::default()),
            }
        }

        /// Arm a fault (counted from the start, not from now).
        pub(crate) fn inject(&self, fault: Fault) {
            *self
                .counters
                .fault
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(fault);
        }

        /// Pretend the disk has this many bytes free (`None`: ask the inner layer).
        pub(crate) fn set_available(&self, bytes: Option<u64>) {
            *self
                .counters
                .available
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = bytes;
        }

        pub(crate) fn syncs(&self) -> u64 {
            self.counters.syncs.load(Ordering::SeqCst)
        }

        pub(crate) fn writes(&self) -> u64 {
            self.counters.writes.load(Ordering::SeqCst)
        }

        /// Bytes read so far.
        pub(crate) fn read_bytes(&self) -> u64 {
            self.counters.read_bytes.load(Ordering::SeqCst)
        }

        /// Refuse to open more than `n` files at once with EMFILE, as a process under `ulimit -n` would.
        pub(crate) fn limit_open_files(&self, n: u64) {
            *self
                .counters
                .max_open
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(n);
        }

        /// The most files that were open at once.
        pub(crate) fn peak_open_files(&self) -> u64 {
            self.counters.peak_open.load(Ordering::SeqCst)
        }

        /// Every directory synced so far, in order.
        pub(crate) fn synced_dirs(&self) -> Vec<PathBuf> {
            self.counters
                .synced_dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        }

        fn wrap(
            &self,
            open: impl FnOnce() -> io::Result<Box<dyn SegmentFile>>,
        ) -> io::Result<Box<dyn SegmentFile>> {
            let c = &self.counters;
            let limit = *c.max_open.lock().unwrap_or_else(|e| e.into_inner());
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            if limit.is_some_and(|max| now > max) {
                c.open.fetch_sub(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(24)); // EMFILE: "Too many open files"
            }
            c.peak_open.fetch_max(now, Ordering::SeqCst);
            match open() {
                Ok(inner) => Ok(Box::new(FaultyFile {
                    inner,
                    counters: c.clone(),
                })),
                Err(e) => {
                    c.open.fetch_sub(1, Ordering::SeqCst);
                    Err(e)
                }
            }
        }
    }

    impl StoreFs for FaultyFs {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
            self.inner.lock_dir(dir)
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
            self.wrap(|| self.inner.create(path))
        }
        fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
            self.wrap(|| self.inner.open(path))
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            self.inner.remove(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.inner.rename(from, to)
        }
        fn create_reserve(&self, path: &Path, len: u64) -> io::Result<()> {
            self.inner.create_reserve(path, len)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.list(dir)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.counters
                .synced_dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(dir.to_path_buf());
            self.inner.sync_dir(dir)
        }
        fn available_space(&self, dir: &Path) -> io::Result<u64> {
            match *self
                .counters
                .available
                .lock()
                .unwrap_or_else(|e| e.into_inner())
            {
                Some(bytes) => Ok(bytes),
                None => self.inner.available_space(dir),
            }
        }
    }

    #[derive(Debug)]
    struct FaultyFile {
        inner: Box<dyn SegmentFile>,
        counters: Arc<Counters>,
    }

    impl Drop for FaultyFile {
        fn drop(&mut self) {
            self.counters.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl SegmentFile for FaultyFile {
        fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
            let n = self.counters.writes.fetch_add(1, Ordering::SeqCst) + 1;
            match self.counters.fault() {
                Some(Fault::ShortWrite(at)) if at == n => {
                    self.inner.write_all(&data[..data.len() / 2])?;
                    Err(io::Error::other("injected short write"))
                }
                Some(Fault::NoSpace(at)) if at == n => Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected ENOSPC",
                )),
                _ => self.inner.write_all(data),
            }
        }
        fn sync_data(&mut self) -> io::Result<()> {
            let n = self.counters.syncs.fetch_add(1, Ordering::SeqCst) + 1;
            match self.counters.fault() {
                Some(Fault::FailSync(at)) if at == n => {
                    Err(io::Error::other("injected fdatasync failure"))
                }
                _ => self.inner.sync_data(),
            }
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let n = self.inner.read_at(buf, offset)?;
            self.counters
                .read_bytes
                .fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.inner.truncate(len)
        }
    }
}
