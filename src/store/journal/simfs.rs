//! An in-memory file system for crash tests (test builds only). It keeps what a process wrote (the page cache)
//! apart from what a completed sync made durable (the disk), so a test can kill the process (the page cache
//! survives, the process's handles die) or cut the power (every byte and directory entry not covered by a
//! completed sync is lost, the unsynced tail of a file optionally torn) at any point, and then run recovery on
//! what is left.
//!
//! It also models a disk of limited capacity (writes past it fail with ENOSPC, free space shrinks and grows with
//! the files) and an `fdatasync` that fails with EIO after which the kernel has marked the dirty pages clean:
//! they stay readable while the machine runs, a later sync "succeeds" without writing them, and a power cut
//! loses them (Linux since 4.13; the "fsyncgate" behaviour PostgreSQL had to learn about).
//!
//! One directory (the store's) is modelled: files are keyed by name, their entries become durable when that
//! directory is synced, and syncing any other directory does nothing.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::fs::{DirLock, SegmentFile, StoreFs};

/// One file's bytes, as the running system sees them and as the disk holds them.
#[derive(Debug, Default)]
struct Inode {
    /// What reads return (the page cache).
    data: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Byte ranges a failed sync marked clean without writing: they never reach the disk.
    lost: Vec<(usize, usize)>,
    /// Open handles.
    open: usize,
}

#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    /// Bumped by every kill and power cut: handles of an older process fail.
    generation: u64,
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    capacity: Option<u64>,
    /// How many of the next syncs fail with EIO.
    failing_syncs: u64,
    /// The next sync kills the process instead (a `kill -9` between a write and its sync).
    kill_at_sync: bool,
}

impl Disk {
    fn used(&self) -> u64 {
        self.inodes
            .iter()
            .filter(|(n, i)| i.open > 0 || self.names.values().any(|v| v == *n))
            .map(|(_, i)| i.data.len() as u64)
            .sum()
    }

    fn room_for(&self, bytes: usize) -> io::Result<()> {
        match self.capacity {
            Some(cap) if self.used() + bytes as u64 > cap => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated disk full (ENOSPC)",
            )),
            _ => Ok(()),
        }
    }

    fn inode(&mut self, n: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&n)
            .ok_or_else(|| io::Error::other("simulated inode vanished"))
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, Inode::default());
        self.next_inode
    }

    /// The process is gone: so are its handles.
    fn close_all(&mut self) {
        for inode in self.inodes.values_mut() {
            inode.open = 0;
        }
        self.collect();
    }

    /// Drops inodes nothing refers to any more.
    fn collect(&mut self) {
        let names = &self.names;
        let durable = &self.durable_names;
        self.inodes.retain(|n, i| {
            i.open > 0 || names.values().any(|v| v == n) || durable.values().any(|v| v == n)
        });
    }
}

/// The machine: a disk that outlives the processes (views, [`SimDisk::boot`]) that use it.
#[derive(Debug, Clone)]
pub(crate) struct SimDisk(Arc<Mutex<Disk>>);

impl SimDisk {
    /// An empty disk holding the store directory `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            dir: dir.to_path_buf(),
            generation: 0,
            inodes: HashMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            next_inode: 0,
            capacity: None,
            failing_syncs: 0,
            kill_at_sync: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A file layer for a new process.
    pub(crate) fn boot(&self) -> Arc<SimFs> {
        Arc::new(SimFs {
            disk: self.0.clone(),
            generation: self.lock().generation,
        })
    }

    /// The process dies (`kill -9`): its handles fail from now on; the page cache survives.
    pub(crate) fn kill(&self) {
        let mut disk = self.lock();
        disk.generation += 1;
        disk.close_all();
    }

    /// The power goes: what no completed sync covered is lost. The unsynced tail of each file is dropped, kept
    /// in part, kept whole, or kept as pages of which a random half reached the disk (the rest read as zeros),
    /// as `seed` decides.
    pub(crate) fn power_cut(&self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut disk = self.lock();
        disk.generation += 1;
        disk.names = disk.durable_names.clone();
        disk.close_all();
        let mut numbers: Vec<u64> = disk.inodes.keys().copied().collect();
        numbers.sort_unstable();
        for n in numbers {
            if let Some(inode) = disk.inodes.get_mut(&n) {
                let survived = torn(inode, &mut rng);
                *inode = Inode {
                    data: survived.clone(),
                    durable: survived,
                    lost: Vec::new(),
                    open: 0,
                };
            }
        }
    }

    /// Limits the disk to `bytes` (`None`: unlimited).
    pub(crate) fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Bytes the files take.
    pub(crate) fn used(&self) -> u64 {
        self.lock().used()
    }

    /// The next `n` syncs fail with EIO, leaving their pages clean but not on disk.
    pub(crate) fn fail_syncs(&self, n: u64) {
        self.lock().failing_syncs = n;
    }

    /// The next `fdatasync` of a file kills the process instead of syncing: what it wrote stays in the page
    /// cache, unsynced.
    pub(crate) fn kill_at_next_sync(&self) {
        self.lock().kill_at_sync = true;
    }

    /// The names in the directory.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().names.keys().cloned().collect()
    }
}

/// What of `inode` survives a power cut.
fn torn(inode: &Inode, rng: &mut StdRng) -> Vec<u8> {
    let mut out = inode.durable.clone();
    let Some(extra) = inode.data.get(out.len()..).filter(|e| !e.is_empty()) else {
        return out;
    };
    match rng.random_range(0..4u8) {
        0 => {}
        1 => out.extend_from_slice(&extra[..rng.random_range(0..extra.len())]),
        2 => out.extend_from_slice(extra),
        _ => {
            const PAGE: usize = 4096;
            let keep = rng.random_range(1..=extra.len());
            for page in extra[..keep].chunks(PAGE) {
                if rng.random_bool(0.5) {
                    out.extend_from_slice(page);
                } else {
                    out.resize(out.len() + page.len(), 0);
                }
            }
        }
    }
    out
}

/// One process's view of the disk; see the module docs.
#[derive(Debug)]
pub(crate) struct SimFs {
    disk: Arc<Mutex<Disk>>,
    generation: u64,
}

fn killed() -> io::Error {
    io::Error::other("simulated process is gone (killed or powered off)")
}

fn name_of(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))
}

/// Locks the disk for a process of `generation`, failing if that process is gone.
fn live(disk: &Mutex<Disk>, generation: u64) -> io::Result<MutexGuard<'_, Disk>> {
    let disk = disk.lock().unwrap_or_else(|e| e.into_inner());
    if disk.generation == generation {
        Ok(disk)
    } else {
        Err(killed())
    }
}

impl SimFs {
    fn disk(&self) -> io::Result<MutexGuard<'_, Disk>> {
        live(&self.disk, self.generation)
    }

    fn handle(&self, inode: u64) -> Box<dyn SegmentFile> {
        Box::new(SimFile {
            disk: self.disk.clone(),
            generation: self.generation,
            inode,
        })
    }
}

impl StoreFs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.disk().map(|_| ())
    }

    fn lock_dir(&self, _dir: &Path) -> io::Result<DirLock> {
        self.disk().map(|_| DirLock::none())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let name = name_of(path)?;
        let mut disk = self.disk()?;
        if disk.names.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name));
        }
        let n = disk.new_inode();
        disk.names.insert(name, n);
        disk.inode(n)?.open += 1;
        Ok(self.handle(n))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let name = name_of(path)?;
        let mut disk = self.disk()?;
        let n = *disk
            .names
            .get(&name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name))?;
        disk.inode(n)?.open += 1;
        Ok(self.handle(n))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let name = name_of(path)?;
        let mut disk = self.disk()?;
        disk.names
            .remove(&name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name))?;
        disk.collect();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (name_of(from)?, name_of(to)?);
        let mut disk = self.disk()?;
        let n = disk
            .names
            .remove(&from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from))?;
        disk.names.insert(to, n);
        disk.collect();
        Ok(())
    }

    fn create_reserve(&self, path: &Path, len: u64) -> io::Result<()> {
        let name = name_of(path)?;
        let mut disk = self.disk()?;
        if disk.names.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name));
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        disk.room_for(len)?;
        let n = disk.new_inode();
        disk.names.insert(name, n);
        let inode = disk.inode(n)?;
        inode.data = vec![0; len];
        inode.durable = vec![0; len];
        Ok(())
    }

    fn list(&self, _dir: &Path) -> io::Result<Vec<String>> {
        Ok(self.disk()?.names.keys().cloned().collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk()?;
        if dir == disk.dir {
            disk.durable_names = disk.names.clone();
            disk.collect();
        }
        Ok(())
    }

    fn available_space(&self, _dir: &Path) -> io::Result<u64> {
        let disk = self.disk()?;
        Ok(disk
            .capacity
            .map_or(u64::MAX / 2, |cap| cap.saturating_sub(disk.used())))
    }
}

/// An open file of a [`SimFs`] process.
#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    generation: u64,
    inode: u64,
}

impl SimFile {
    fn disk(&self) -> io::Result<MutexGuard<'_, Disk>> {
        live(&self.disk, self.generation)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        if disk.generation != self.generation {
            return;
        }
        if let Some(inode) = disk.inodes.get_mut(&self.inode) {
            inode.open = inode.open.saturating_sub(1);
        }
        disk.collect();
    }
}

impl SegmentFile for SimFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let mut disk = self.disk()?;
        disk.room_for(data.len())?;
        disk.inode(self.inode)?.data.extend_from_slice(data);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut disk = self.disk()?;
        if std::mem::take(&mut disk.kill_at_sync) {
            disk.generation += 1;
            disk.close_all();
            return Err(killed());
        }
        let fail = disk.failing_syncs > 0;
        if fail {
            disk.failing_syncs -= 1;
        }
        let inode = disk.inode(self.inode)?;
        if fail {
            let from = inode.durable.len().min(inode.data.len());
            inode.lost.push((from, inode.data.len()));
            return Err(io::Error::other("simulated EIO from fdatasync"));
        }
        let mut durable = inode.data.clone();
        for &(from, to) in &inode.lost {
            let to = to.min(durable.len());
            if from < to {
                durable[from..to].fill(0);
            }
        }
        inode.durable = durable;
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut disk = self.disk()?;
        let data = &disk.inode(self.inode)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        let mut disk = self.disk()?;
        Ok(disk.inode(self.inode)?.data.len() as u64)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.disk()?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let inode = disk.inode(self.inode)?;
        inode.data.resize(len, 0);
        inode.lost.retain(|(from, _)| *from < len);
        Ok(())
    }
}
