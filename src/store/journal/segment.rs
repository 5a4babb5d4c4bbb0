//! Segment files: their names, their versioned header, and a buffered reader that walks their framed records.
//!
//! A segment is `NNNNNNNNNNNNNNNNNNNN.seg` (its number, 20 digits, so names sort in number order). Its header
//! says which format its frames use (see `record::Framing`):
//! - version 2 (written by this build), 32 bytes: magic `FMQJ`, format version (`u32` LE), the segment number
//!   (`u64` LE, so a renamed or misplaced file is noticed), a random salt chosen when the file is created
//!   (`u64` LE; it seeds every frame's checksum, so records of an earlier file with the same number never
//!   check out), a CRC32C of those 24 bytes (`u32` LE; a damaged salt would otherwise make every record look
//!   torn), and 4 reserved zero bytes;
//! - version 1 (the previous release), 16 bytes: magic, version, segment number.
//!
//! Framed records follow back to back.
//!
//! [`SegmentReader`] reports each record's payload after checking its frame: a length that is larger than
//! [`MAX_RECORD`] or than what is left of the file, a CRC mismatch, or a batch offset past the frame itself ends
//! the walk with [`Step::Bad`] — it never allocates what a length field claims. Whether a bad record is a torn
//! tail to cut or corruption to refuse is the caller's decision (`recovery`); [`SegmentReader::later_batch`]
//! gives it the evidence.

use std::io;
use std::path::{Path, PathBuf};

use super::fs::SegmentFile;
use super::record::{FrameHeader, Framing, MAX_RECORD};
use crate::store::StoreError;

/// File magic at offset 0 of every segment.
pub(crate) const MAGIC: [u8; 4] = *b"FMQJ";
/// The format version this build writes and the newest it reads.
pub(crate) const VERSION: u32 = 2;
/// Length of the header this build writes (version 2).
pub(crate) const HEADER_LEN: u64 = 32;
/// Length of a version 1 header.
pub(crate) const HEADER_LEN_V1: u64 = 16;

const SUFFIX: &str = ".seg";

/// The highest segment number: the in-memory index keeps segment numbers in 32 bits. At one segment per 64 MiB
/// that is 256 PiB written to one data dir; the writer fails the store rather than go past it, and recovery
/// refuses a file with a higher number.
pub(crate) const MAX_NUMBER: u64 = u32::MAX as u64;

/// The file name of segment `number`.
pub(crate) fn file_name(number: u64) -> String {
    format!("{number:020}{SUFFIX}")
}

/// The path of segment `number` in `dir`.
pub(crate) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(file_name(number))
}

/// The temporary file segment `number` is written to before it is renamed into place (its name does not
/// parse as a segment's; recovery removes leftovers).
pub(crate) fn temp_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{}{TEMP_SUFFIX}", file_name(number)))
}

/// Suffix of a segment's temporary file (creation, or a rewrite at recovery).
pub(crate) const TEMP_SUFFIX: &str = ".new";

/// The segment number a file name stands for, or `None` for files that are not segments.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `number` with `salt` (format version 2).
pub(crate) fn header(number: u64, salt: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&number.to_le_bytes());
    h[16..24].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header of segment `number` in format version 1, for tests that check old segments are still read.
#[cfg(test)]
pub(crate) fn header_v1(number: u64) -> [u8; HEADER_LEN_V1 as usize] {
    let mut h = [0u8; HEADER_LEN_V1 as usize];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    h[8..16].copy_from_slice(&number.to_le_bytes());
    h
}

/// Where the records of a segment with this framing start.
pub(crate) fn data_start(framing: Framing) -> u64 {
    match framing {
        Framing::V1 => HEADER_LEN_V1,
        Framing::V2 { .. } => HEADER_LEN,
    }
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// A complete, valid header for this segment; its records use this framing.
    Valid(Framing),
    /// The file ends before the header does (a crash while the segment was being created).
    Short,
    /// The header is there but all zeros: its length reached the disk and its bytes did not (a crash while the
    /// segment was being created, on a file system that shows unwritten blocks as zeros).
    Zeroed,
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// Checks the header of segment `number`. A future version is [`StoreError::FutureVersion`]; wrong magic, a
/// header checksum mismatch or a mismatched number is [`StoreError::Corrupt`].
pub(crate) fn check_header(file: &dyn SegmentFile, number: u64) -> Result<HeaderState, StoreError> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n = read_full(file, &mut h, 0)?;
    let name = file_name(number);
    if n < HEADER_LEN_V1 as usize {
        return Ok(HeaderState::Short);
    }
    if h[..n].iter().all(|b| *b == 0) {
        return Ok(HeaderState::Zeroed);
    }
    if h[0..4] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{name} is not a FerryMQ journal segment (bad magic {:?})",
            &h[0..4]
        )));
    }
    let version = u32_at(&h, 4);
    let framing = match version {
        0 => {
            return Err(StoreError::Corrupt(format!("{name} has format version 0")));
        }
        1 => Framing::V1,
        2 if n < HEADER_LEN as usize => return Ok(HeaderState::Short),
        2 if crc32c::crc32c(&h[0..24]) != u32_at(&h, 24) => {
            return Err(StoreError::Corrupt(format!(
                "{name}: the segment header's checksum does not match (damaged header)"
            )));
        }
        2 => Framing::v2(number, u64_at(&h, 16)),
        _ => {
            return Err(StoreError::FutureVersion {
                found: version,
                supported: VERSION,
            });
        }
    };
    let found = u64_at(&h, 8);
    if found != number {
        return Err(StoreError::Corrupt(format!(
            "{name} says it is segment {found}: was it renamed or copied from elsewhere?"
        )));
    }
    Ok(HeaderState::Valid(framing))
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
pub(crate) fn read_full(file: &dyn SegmentFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// One step of a walk over a segment's records.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A record with a valid frame starting at `offset`, `len` bytes long including its frame header.
    Record {
        offset: u64,
        len: u64,
        payload: &'a [u8],
    },
    /// The walk reached the end of the file exactly at a record boundary.
    End,
    /// The record at `offset` is torn or damaged; nothing at or after it can be trusted.
    Bad { offset: u64, reason: String },
}

const CHUNK: usize = 1024 * 1024;

/// Walks the records of one segment through a read-ahead buffer, so a segment of small records costs few
/// system calls.
#[derive(Debug)]
pub(crate) struct SegmentReader<'f> {
    file: &'f dyn SegmentFile,
    framing: Framing,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

/// Why a frame at some offset does not check out, or its header and payload if it does.
enum Frame {
    Bad(String),
    Good(FrameHeader),
}

impl<'f> SegmentReader<'f> {
    /// A reader positioned just after the header of a segment with this framing.
    pub(crate) fn new(file: &'f dyn SegmentFile, framing: Framing) -> io::Result<Self> {
        Self::at(file, framing, data_start(framing))
    }

    /// A reader positioned at `offset` (a frame boundary the caller knows).
    pub(crate) fn at(file: &'f dyn SegmentFile, framing: Framing, offset: u64) -> io::Result<Self> {
        Ok(Self {
            len: file.len()?,
            file,
            framing,
            pos: offset,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// The file length the walk is bounded by.
    pub(crate) fn file_len(&self) -> u64 {
        self.len
    }

    /// Makes `[offset, offset + len)` available in the buffer and returns it. The caller has checked that the
    /// range lies inside the file.
    fn window(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start || offset + len as u64 > buf_end {
            let want = len
                .max(CHUNK)
                .min(usize::try_from(self.len - offset).unwrap_or(usize::MAX));
            self.buf.resize(want, 0);
            let got = read_full(self.file, &mut self.buf, offset)?;
            self.buf.truncate(got);
            self.buf_start = offset;
            if got < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment shrank while being read",
                ));
            }
        }
        let start = usize::try_from(offset - self.buf_start).unwrap_or(usize::MAX);
        Ok(&self.buf[start..start + len])
    }

    /// Checks the frame at `offset` without moving the walk.
    fn frame_at(&mut self, offset: u64) -> io::Result<Frame> {
        let hlen = self.framing.header_len();
        let left = self.len.saturating_sub(offset);
        if left < hlen as u64 {
            return Ok(Frame::Bad(format!("torn frame header ({left} bytes)")));
        }
        let framing = self.framing;
        let header = framing.parse(self.window(offset, hlen)?);
        if header.len > MAX_RECORD {
            return Ok(Frame::Bad(format!(
                "length {} exceeds the maximum record size",
                header.len
            )));
        }
        if u64::from(header.len) > left - hlen as u64 {
            return Ok(Frame::Bad(format!(
                "length {} runs past the end of the file ({} bytes left)",
                header.len,
                left - hlen as u64
            )));
        }
        if u64::from(header.batch) > offset {
            return Ok(Frame::Bad(format!(
                "batch offset {} lies after the frame",
                header.batch
            )));
        }
        let framed = self.window(offset, hlen + header.len as usize)?;
        if !framing.verify(&header, &framed[hlen..]) {
            return Ok(Frame::Bad("CRC mismatch".into()));
        }
        Ok(Frame::Good(header))
    }

    /// The next record, the end of the segment, or the first bad record.
    pub(crate) fn next_step(&mut self) -> io::Result<Step<'_>> {
        let offset = self.pos;
        if offset >= self.len {
            return Ok(Step::End);
        }
        let header = match self.frame_at(offset)? {
            Frame::Bad(reason) => return Ok(Step::Bad { offset, reason }),
            Frame::Good(header) => header,
        };
        let hlen = self.framing.header_len();
        let total = (hlen + header.len as usize) as u64;
        self.pos = offset + total;
        let start = usize::try_from(offset - self.buf_start).unwrap_or(usize::MAX) + hlen;
        Ok(Step::Record {
            offset,
            len: total,
            payload: &self.buf[start..start + header.len as usize],
        })
    }

    /// The offset of a valid frame after `bad` that belongs to a write batch begun after `bad`, if there is one.
    /// The writer syncs each batch before it writes the next, so such a frame proves that the bytes at `bad`
    /// were synced: damage there is not a torn write. Version 1 frames carry no batch offset, so for them this
    /// is always `None`.
    pub(crate) fn later_batch(&mut self, bad: u64) -> io::Result<Option<u64>> {
        if self.framing == Framing::V1 {
            return Ok(None);
        }
        let hlen = self.framing.header_len() as u64;
        let mut at = bad + 1;
        while at + hlen <= self.len {
            let batch = u64::from(self.framing.parse(self.window(at, hlen as usize)?).batch);
            if batch > bad && batch <= at && matches!(self.frame_at(at)?, Frame::Good(_)) {
                return Ok(Some(at));
            }
            at += 1;
        }
        Ok(None)
    }
}
