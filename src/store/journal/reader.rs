//! Reading one message back from its segment by location: what [`crate::store::Store::read`] does for queues
//! that paged a body out of memory, and what recovery uses to load the first bodies of a large store.
//!
//! A read is one positional read of the framed publish record, checked like recovery checks it (frame length,
//! CRC32C, record kind, message id), so a stale location (a segment compacted and deleted since it was looked
//! up, or a record still in the writer's buffer) shows up as an error the caller can retry after re-looking
//! the location up; it never yields the wrong message.
//!
//! Open segment files are kept in a small cache (the last [`OPEN_FILES`] segments read), so draining a backlog
//! costs one `pread` per message, not an `open` as well. Handles of segments the index no longer knows (deleted)
//! are dropped whenever a segment is opened, so a deleted file's space is not held for long.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fs::{SegmentFile, StoreFs};
use super::index::{Index, Location};
use super::record::{self, FRAME_HEADER, Record};
use super::segment::{self, read_full};
use crate::store::{MsgId, StoreError, StoredMessage};

/// How many segment files a reader keeps open.
const OPEN_FILES: usize = 8;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecordReader {
    fs: Arc<dyn StoreFs>,
    dir: PathBuf,
    files: Mutex<Vec<(u64, Box<dyn SegmentFile>)>>,
}

impl RecordReader {
    pub(crate) fn new(fs: Arc<dyn StoreFs>, dir: &Path) -> Self {
        Self {
            fs,
            dir: dir.to_path_buf(),
            files: Mutex::new(Vec::new()),
        }
    }

    /// Reads and checks the publish record of `id` at `loc`. `index` is consulted (locked briefly) only to drop
    /// handles of deleted segments when a new one is opened.
    pub(crate) fn read(
        &self,
        id: MsgId,
        loc: Location,
        index: &Mutex<Index>,
    ) -> Result<StoredMessage, StoreError> {
        let mut framed = vec![0u8; loc.len as usize];
        let got = {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            let file = match files.iter().position(|(n, _)| *n == loc.segment) {
                Some(i) => &files[i].1,
                None => {
                    let file = self.fs.open(&segment::path(&self.dir, loc.segment))?;
                    {
                        let index = index.lock().unwrap_or_else(|e| e.into_inner());
                        files.retain(|(n, _)| index.has_segment(*n));
                    }
                    if files.len() >= OPEN_FILES {
                        files.remove(0);
                    }
                    files.push((loc.segment, file));
                    &files[files.len() - 1].1
                }
            };
            read_full(file.as_ref(), &mut framed, loc.offset)?
        };
        let stale = |why: &str| {
            StoreError::Corrupt(format!(
                "message {id}: {why} at {} offset {}",
                segment::file_name(loc.segment),
                loc.offset
            ))
        };
        if got < framed.len() || framed.len() < FRAME_HEADER {
            return Err(stale("short read"));
        }
        let mut header = [0u8; FRAME_HEADER];
        header.copy_from_slice(&framed[..FRAME_HEADER]);
        let (len, crc) = record::parse_frame_header(header);
        let payload = &framed[FRAME_HEADER..];
        if len as usize != payload.len() || record::frame_crc(len.to_le_bytes(), payload) != crc {
            return Err(stale("bad frame"));
        }
        match record::decode(payload) {
            Ok(Record::Publish(p)) if p.id == id => Ok(p.message),
            Ok(_) => Err(stale("another record")),
            Err(e) => Err(stale(&format!("undecodable record ({})", e.0))),
        }
    }
}
