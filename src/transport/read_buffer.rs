//! A connection's read buffer, read into chunks whose size it knows, so that a protocol adapter can count the
//! memory it holds and avoid keeping small slices of large chunks alive.
//!
//! Codecs split frames off the buffer without a copy (`BytesMut::split_to`): a payload kept after decoding
//! (a message body, a property table) shares the allocation of the chunk it was read into, and keeps the
//! whole chunk alive as long as it lives. A 1-byte body read right after a 120 KiB frame would pin 120 KiB.
//! [`ReadBuffer::pins`] tells the adapter when a slice would hold a chunk more than twice its size; the
//! adapter then takes that frame with [`ReadBuffer::split_copy`], in an allocation of its own. A large frame
//! gets a chunk sized for it ([`ReadBuffer::read_from`] with the bytes it still needs), so large bodies are
//! never copied and pin at most twice their size. A buffer with nothing left in it lets go of its chunk
//! ([`ReadBuffer::release_if_empty`]), and the chunk a read waits with is a small one ([`IDLE_READ`]) unless
//! the connection's last read filled most of its room: an idle connection holds 1 KiB, a busy one reads
//! [`CHUNK`] at a time.
//!
//! Nothing here knows a protocol: the adapter decides which frames outlive their decoding.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of a fresh chunk when nothing larger is wanted.
const CHUNK: usize = 64 * 1024;
/// A read needs at least this much room; with less, the buffer moves to a new (or reclaimed) chunk.
const MIN_READ: usize = 4 * 1024;
/// ... except the read an idle connection waits in (its last read was short, nothing is buffered): a heartbeat
/// or a small packet fits, and a read that fills it makes the next chunk a full one.
const IDLE_READ: usize = 1024;
/// A slice kept alive may hold a chunk up to this many times its own size.
const PIN_RATIO: usize = 2;

/// See the module docs.
#[derive(Debug)]
pub struct ReadBuffer {
    buf: BytesMut,
    /// Size of the allocation `buf` reads into.
    chunk: usize,
    /// The last read filled at least half of its room: the next new chunk is a full [`CHUNK`].
    busy: bool,
}

impl Default for ReadBuffer {
    /// Empty, with no chunk yet: the first read allocates one.
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: 0,
            busy: false,
        }
    }
}

impl ReadBuffer {
    /// The buffered bytes, for a codec to decode from.
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes of the chunk being read into: what the buffer itself holds in memory.
    pub fn allocated(&self) -> usize {
        self.chunk
    }

    /// Whether keeping a slice of `len` bytes of the current chunk would pin more than [`PIN_RATIO`] times
    /// its size: copy it out with [`ReadBuffer::split_copy`] instead.
    pub fn pins(&self, len: usize) -> bool {
        len.saturating_mul(PIN_RATIO) < self.chunk
    }

    /// Lets go of the chunk when every byte of it has been taken (slices split off keep their part of it
    /// alive on their own); the next read allocates a new one.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.chunk > 0 {
            self.buf = BytesMut::new();
            self.chunk = 0;
        }
    }

    /// Takes the first `len` buffered bytes (at most what is buffered) into an allocation of their own.
    pub fn split_copy(&mut self, len: usize) -> BytesMut {
        let len = len.min(self.buf.len());
        let own = BytesMut::from(&self.buf[..len]);
        self.buf.advance(len);
        own
    }

    /// Reads once from `reader`, after making room for at least `want` more bytes (what the frame being
    /// received still needs, or 0 when unknown) in the current chunk or a new one. Returns the bytes read
    /// (0 at end of stream). Cancel-safe: nothing is read unless the read completes.
    pub async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        want: usize,
    ) -> std::io::Result<usize> {
        let least = if self.busy || !self.buf.is_empty() {
            MIN_READ
        } else {
            IDLE_READ
        };
        self.make_room(want.max(least));
        let room = self.buf.capacity() - self.buf.len();
        let n = reader.read_buf(&mut self.buf).await?;
        self.busy = n.saturating_mul(2) >= room;
        Ok(n)
    }

    /// Room for `want` more bytes: the spare capacity of the chunk, the chunk itself when nothing else uses it
    /// any more, or a new chunk (which the buffered bytes move to).
    fn make_room(&mut self, want: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= want {
            return;
        }
        if len + want <= self.chunk && self.buf.try_reclaim(want) {
            return;
        }
        let size = if self.busy { CHUNK } else { want };
        let mut fresh = BytesMut::with_capacity((len + want).max(size));
        fresh.extend_from_slice(&self.buf);
        self.chunk = fresh.capacity();
        self.buf = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(buffer: &mut ReadBuffer, bytes: &[u8], want: usize) {
        let mut reader = bytes;
        let n = buffer.read_from(&mut reader, want).await.expect("read");
        assert_eq!(n, bytes.len());
    }

    /// A read that fills its room, taken out: the next new chunk is a full one.
    async fn make_busy(buffer: &mut ReadBuffer) {
        buffer.release_if_empty();
        read(buffer, &[0; IDLE_READ], 0).await;
        buffer.bytes().advance(IDLE_READ);
        buffer.release_if_empty();
    }

    #[tokio::test]
    async fn an_idle_connection_waits_with_a_small_chunk_and_a_busy_one_reads_full_ones() {
        let mut buffer = ReadBuffer::default();
        read(&mut buffer, &[1; 10], 0).await;
        assert_eq!(
            buffer.allocated(),
            IDLE_READ,
            "a first read waits with a small chunk"
        );
        buffer.bytes().advance(10);
        make_busy(&mut buffer).await;
        read(&mut buffer, &[2; 10], 0).await;
        assert_eq!(buffer.allocated(), CHUNK, "after a full read, a full chunk");
        buffer.bytes().advance(10);
        buffer.release_if_empty();
        read(&mut buffer, &[3; 10], 0).await;
        assert_eq!(
            buffer.allocated(),
            IDLE_READ,
            "after a short read, a small chunk again"
        );
    }

    #[tokio::test]
    async fn a_large_frame_gets_a_chunk_of_its_own_size() {
        let mut buffer = ReadBuffer::default();
        assert_eq!(buffer.allocated(), 0, "no chunk before the first read");
        make_busy(&mut buffer).await;
        read(&mut buffer, &[1; 10], 0).await;
        assert_eq!(buffer.allocated(), CHUNK);
        read(&mut buffer, &[2; 100], 300 * 1024).await;
        assert!(buffer.allocated() >= 300 * 1024 + 10);
        assert_eq!(&buffer.bytes()[..11], &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        assert!(!buffer.pins(200 * 1024), "a large body is kept as a slice");
        assert!(buffer.pins(1), "a small one is copied");
    }

    #[tokio::test]
    async fn a_copied_slice_leaves_the_chunk_free_for_reuse() {
        let mut buffer = ReadBuffer::default();
        make_busy(&mut buffer).await;
        read(&mut buffer, &[7; 100], 0).await;
        let own = buffer.split_copy(60);
        assert_eq!(&own[..], &[7; 60][..]);
        assert_eq!(buffer.bytes().len(), 40);
        // Fill the chunk: with no slice of it alive, it is reclaimed in place instead of reallocated.
        let rest = vec![8; CHUNK - 100];
        read(&mut buffer, &rest, 0).await;
        buffer.bytes().advance(CHUNK - 60);
        read(&mut buffer, &[9; 10], 0).await;
        assert_eq!(buffer.allocated(), CHUNK);
        assert_eq!(&buffer.bytes()[..], &[9; 10][..]);
        buffer.release_if_empty();
        assert_eq!(buffer.allocated(), CHUNK, "bytes are still buffered");
        buffer.bytes().advance(10);
        buffer.release_if_empty();
        assert_eq!(buffer.allocated(), 0, "an idle buffer holds nothing");
    }

    #[tokio::test]
    async fn a_chunk_still_in_use_is_left_to_its_slices() {
        let mut buffer = ReadBuffer::default();
        make_busy(&mut buffer).await;
        read(&mut buffer, &vec![3; CHUNK], 0).await;
        let kept = buffer.bytes().split_to(CHUNK).freeze();
        read(&mut buffer, &[4; 10], 0).await;
        assert_eq!(&kept[..3], &[3, 3, 3], "the old chunk is untouched");
        assert_eq!(&buffer.bytes()[..], &[4; 10][..]);
    }
}
