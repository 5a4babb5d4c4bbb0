//! Segment files: their names, their versioned header, and a buffered reader that walks their framed records.
//!
//! A segment is `NNNNNNNNNNNNNNNNNNNN.seg` (its number, 20 digits, so names sort in number order) and starts
//! with a 16-byte header: magic `FMQJ`, format version (`u32` LE, currently 1), and the segment number (`u64`
//! LE, so a renamed or misplaced file is noticed). Framed records (see `record`) follow back to back.
//!
//! [`SegmentReader`] reports each record's payload after checking its frame: a length that is larger than
//! [`MAX_RECORD`] or than what is left of the file, or a CRC mismatch, ends the walk with [`Step::Bad`] — it
//! never allocates what a length field claims. Whether a bad record is a torn tail to cut or corruption to
//! refuse is the caller's decision (`recovery`).

use std::io;
use std::path::{Path, PathBuf};

use super::fs::SegmentFile;
use super::record::{FRAME_HEADER, MAX_RECORD, frame_crc, parse_frame_header};
use crate::store::StoreError;

/// File magic at offset 0 of every segment.
pub(crate) const MAGIC: [u8; 4] = *b"FMQJ";
/// The format version this build writes and the newest it reads.
pub(crate) const VERSION: u32 = 1;
/// Length of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;

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

/// The segment number a file name stands for, or `None` for files that are not segments.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `number`.
pub(crate) fn header(number: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&number.to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// A complete header of this version for this segment.
    Valid,
    /// The file ends before the header does (a crash while the segment was being created).
    Short,
}

/// Checks the header of segment `number`. A future version is [`StoreError::FutureVersion`]; wrong magic or a
/// mismatched number is [`StoreError::Corrupt`].
pub(crate) fn check_header(file: &dyn SegmentFile, number: u64) -> Result<HeaderState, StoreError> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n = read_full(file, &mut h, 0)?;
    if n < h.len() {
        return Ok(HeaderState::Short);
    }
    if h[0..4] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{} is not a FerryMQ journal segment (bad magic {:?})",
            file_name(number),
            &h[0..4]
        )));
    }
    let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if version > VERSION {
        return Err(StoreError::FutureVersion {
            found: version,
            supported: VERSION,
        });
    }
    if version == 0 {
        return Err(StoreError::Corrupt(format!(
            "{} has format version 0",
            file_name(number)
        )));
    }
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(&h[8..16]);
    let found = u64::from_le_bytes(n8);
    if found != number {
        return Err(StoreError::Corrupt(format!(
            "{} says it is segment {found}: was it renamed or copied from elsewhere?",
            file_name(number)
        )));
    }
    Ok(HeaderState::Valid)
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
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'f> SegmentReader<'f> {
    /// A reader positioned just after the header.
    pub(crate) fn new(file: &'f dyn SegmentFile) -> io::Result<Self> {
        Ok(Self {
            len: file.len()?,
            file,
            pos: HEADER_LEN,
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

    /// The next record, the end of the segment, or the first bad record.
    pub(crate) fn next_step(&mut self) -> io::Result<Step<'_>> {
        let offset = self.pos;
        let left = self.len.saturating_sub(offset);
        if left == 0 {
            return Ok(Step::End);
        }
        if left < FRAME_HEADER as u64 {
            return Ok(Step::Bad {
                offset,
                reason: format!("torn frame header ({left} bytes)"),
            });
        }
        let mut h = [0u8; FRAME_HEADER];
        h.copy_from_slice(self.window(offset, FRAME_HEADER)?);
        let (len, crc) = parse_frame_header(h);
        if len > MAX_RECORD {
            return Ok(Step::Bad {
                offset,
                reason: format!("length {len} exceeds the maximum record size"),
            });
        }
        if u64::from(len) > left - FRAME_HEADER as u64 {
            return Ok(Step::Bad {
                offset,
                reason: format!(
                    "length {len} runs past the end of the file ({} bytes left)",
                    left - 8
                ),
            });
        }
        let total = FRAME_HEADER + len as usize;
        let framed = self.window(offset, total)?;
        if frame_crc(len.to_le_bytes(), &framed[FRAME_HEADER..]) != crc {
            return Ok(Step::Bad {
                offset,
                reason: "CRC mismatch".into(),
            });
        }
        self.pos = offset + total as u64;
        let start = usize::try_from(offset - self.buf_start).unwrap_or(usize::MAX) + FRAME_HEADER;
        Ok(Step::Record {
            offset,
            len: total as u64,
            payload: &self.buf[start..start + len as usize],
        })
    }
}
