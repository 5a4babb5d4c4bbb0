//! Reading one message back from its segment by location: what [`crate::store::Store::read`] does for queues
//! that paged a body out of memory, and what recovery uses to load the first bodies of a large store.
//!
//! A read is one positional read of the framed publish record, checked like recovery checks it (frame length,
//! checksum with the segment's framing, record kind, message id), so a stale location (a segment compacted and
//! deleted since it was looked up, or a record still in the writer's buffer) shows up as an error the caller can
//! retry after re-looking the location up; it never yields the wrong message.
//!
//! Open segment files are kept in a small cache (the last [`OPEN_FILES`] segments read), so draining a backlog
//! costs one `pread` per message, not an `open` as well. The cache's lock is held only to look a handle up or
//! insert one, never across a read (nor together with the index's lock), so paging reads from many queues run in
//! parallel. Handles of segments the
//! index no longer knows (deleted) are dropped whenever a segment is opened, so a deleted file's space is not
//! held for long.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fs::{SegmentFile, StoreFs};
use super::index::{Index, Location};
use super::record::{self, Framing, Record};
use super::segment::{self, HeaderState, read_full};
use crate::store::{MsgId, StoreError, StoredMessage};

/// How many segment files a reader keeps open.
const OPEN_FILES: usize = 8;

/// One cached segment handle.
#[derive(Debug, Clone)]
struct OpenSegment {
    number: u64,
    file: Arc<dyn SegmentFile>,
    framing: Framing,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecordReader {
    fs: Arc<dyn StoreFs>,
    dir: PathBuf,
    files: Mutex<Vec<OpenSegment>>,
}

impl RecordReader {
    pub(crate) fn new(fs: Arc<dyn StoreFs>, dir: &Path) -> Self {
        Self {
            fs,
            dir: dir.to_path_buf(),
            files: Mutex::new(Vec::new()),
        }
    }

    fn cached(&self, number: u64) -> Option<OpenSegment> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.iter().find(|f| f.number == number).cloned()
    }

    /// A handle on segment `number`, from the cache or freshly opened (without holding the cache's lock).
    fn segment(&self, number: u64, index: &Mutex<Index>) -> Result<OpenSegment, StoreError> {
        if let Some(open) = self.cached(number) {
            return Ok(open);
        }
        let file: Arc<dyn SegmentFile> =
            Arc::from(self.fs.open(&segment::path(&self.dir, number))?);
        let framing = match segment::check_header(file.as_ref(), number)? {
            HeaderState::Valid(framing) => framing,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{}: unreadable header ({other:?})",
                    segment::file_name(number)
                )));
            }
        };
        let open = OpenSegment {
            number,
            file,
            framing,
        };
        let cached: Vec<u64> = {
            let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files.iter().map(|f| f.number).collect()
        };
        let dead: Vec<u64> = {
            let index = index.lock().unwrap_or_else(|e| e.into_inner());
            cached
                .into_iter()
                .filter(|n| !index.has_segment(*n))
                .collect()
        };
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(raced) = files.iter().find(|f| f.number == number) {
            return Ok(raced.clone());
        }
        files.retain(|f| !dead.contains(&f.number));
        if files.len() >= OPEN_FILES {
            files.remove(0);
        }
        files.push(open.clone());
        Ok(open)
    }

    /// Reads and checks the publish record of `id` at `loc`. `index` is consulted (locked briefly) only to drop
    /// handles of deleted segments when a new one is opened.
    pub(crate) fn read(
        &self,
        id: MsgId,
        loc: Location,
        index: &Mutex<Index>,
    ) -> Result<StoredMessage, StoreError> {
        let open = self.segment(loc.segment, index)?;
        let mut framed = vec![0u8; loc.len as usize];
        let got = read_full(open.file.as_ref(), &mut framed, loc.offset)?;
        let stale = |why: &str| {
            StoreError::Corrupt(format!(
                "message {id}: {why} at {} offset {}",
                segment::file_name(loc.segment),
                loc.offset
            ))
        };
        let hlen = open.framing.header_len();
        if got < framed.len() || framed.len() < hlen {
            return Err(stale("short read"));
        }
        let header = open.framing.parse(&framed);
        let payload = &framed[hlen..];
        if header.len as usize != payload.len() || !open.framing.verify(&header, payload) {
            return Err(stale("bad frame"));
        }
        match record::decode(payload) {
            Ok(Record::Publish(p)) if p.id == id => Ok(p.message),
            Ok(_) => Err(stale("another record")),
            Err(e) => Err(stale(&format!("undecodable record ({})", e.0))),
        }
    }
}
