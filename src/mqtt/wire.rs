//! One connection's bytes: the socket halves, the read buffer (a `transport::ReadBuffer`, so its chunk is
//! counted and small payloads do not pin it) and the write buffer, with the negotiated version and the
//! packet-size limits both ways. Packets are decoded from the read buffer with the codec and encoded into the
//! write buffer, which is flushed once per turn of the session loop.

use bytes::BytesMut;
use ferrymq_mqtt_codec::{self as codec, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::error::MqttError;
use crate::core::{Charge, ChargeKind, ClientMemory};
use crate::transport::ReadBuffer;

/// After a flush the write buffer lets go of its memory when it grew beyond this.
const OUT_KEEP: usize = 512 * 1024;
/// How long a closing connection keeps reading after it sent DISCONNECT.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Flush mid-turn once the write buffer holds this much.
pub const FLUSH_AT: usize = 256 * 1024;

pub struct Wire<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    inbuf: ReadBuffer,
    out: BytesMut,
    /// The version CONNECT negotiated (3.1.1 until then).
    pub version: ProtocolVersion,
    /// Largest packet accepted from the client.
    pub max_in: usize,
    /// Largest packet the client accepts (v5 Maximum Packet Size; otherwise unlimited).
    pub max_out: usize,
    /// This connection's ledger in the memory gauge.
    pub memory: ClientMemory,
    buffers: Charge,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S, memory: ClientMemory, max_in: usize) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let buffers = memory.charge(ChargeKind::Buffer);
        Self {
            reader,
            writer,
            inbuf: ReadBuffer::default(),
            out: BytesMut::new(),
            version: ProtocolVersion::V3_1_1,
            max_in,
            max_out: usize::MAX,
            memory,
            buffers,
        }
    }

    /// The next whole packet already buffered, if any. A small PUBLISH is decoded from a copy so its payload
    /// does not pin the read chunk.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, MqttError> {
        let Some(header) = codec::decode_fixed_header(self.inbuf.bytes(), self.max_in)? else {
            return Ok(None);
        };
        let len = header.packet_len();
        if self.inbuf.bytes().len() < len {
            return Ok(None);
        }
        if header.kind == 3 && self.inbuf.pins(len) {
            let mut own = self.inbuf.split_copy(len);
            return Ok(codec::decode_packet(&mut own, self.version, self.max_in)?);
        }
        Ok(codec::decode_packet(
            self.inbuf.bytes(),
            self.version,
            self.max_in,
        )?)
    }

    /// Bytes still needed for the packet being received (0 when unknown), so a large packet gets a chunk of
    /// its own size.
    fn wanted(&mut self) -> usize {
        let buffered = self.inbuf.bytes().len();
        match codec::decode_fixed_header(self.inbuf.bytes(), usize::MAX) {
            Ok(Some(h)) => h.packet_len().saturating_sub(buffered),
            _ => 0,
        }
    }

    /// Reads once; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        let want = self.wanted();
        self.inbuf.read_from(&mut self.reader, want).await
    }

    /// Encodes `packet` into the write buffer unless it is larger than the client accepts; whether it was
    /// written [MQTT-3.1.2-25].
    pub fn send(&mut self, packet: &Packet) -> bool {
        let start = self.out.len();
        let len = codec::encode_packet(packet, self.version, &mut self.out);
        if len > self.max_out {
            self.out.truncate(start);
            return false;
        }
        true
    }

    /// Whether the write buffer should be flushed before more is added.
    pub fn should_flush(&self) -> bool {
        self.out.len() >= FLUSH_AT
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.writer.write_all(&self.out).await?;
        self.writer.flush().await?;
        self.out.clear();
        if self.out.capacity() > OUT_KEEP {
            self.out = BytesMut::new();
        }
        Ok(())
    }

    /// Puts the buffers' sizes on the ledger, reports it to the gauge, and lets go of an empty read chunk.
    pub fn account(&mut self) {
        self.inbuf.release_if_empty();
        let held = self.inbuf.allocated() + self.out.capacity();
        self.buffers.set(held as u64);
        self.memory.report();
    }

    /// After the broker said why it closes (a v5 DISCONNECT, written side shut): what the client still sends
    /// is read and dropped for at most a second, so the close is not a reset that could destroy the
    /// DISCONNECT before the client reads it.
    pub async fn linger(mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(self.inbuf.read_from(&mut self.reader, 0).await, Ok(n) if n > 0) {
                self.inbuf.bytes().clear();
            }
        })
        .await;
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.writer.shutdown().await;
    }
}
