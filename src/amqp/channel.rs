//! Per-channel bookkeeping of an AMQP connection: content assembly (publish -> header -> body frames),
//! delivery tags and unacked deliveries, publisher confirms in publish order, transactions, consumers and
//! prefetch. Pure state: no I/O and no core calls, so it is easy to reason about and test.
//!
//! What a channel holds for its client, the unfinished message and the transaction's publishes, is charged
//! to the connection's memory ledger (`core::memory`) as it arrives and given back as it leaves (finished,
//! committed, rolled back, channel closed); a charge the connection's cap refuses is an [`OverLimit`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::{BasicPublish, ContentHeader};

use super::error::{AmqpError, code};
use crate::core::message::Message;
use crate::core::{ChannelLimit, ConsumerKey, QueueHandle, Settle};
use crate::core::{Charge, MESSAGE_OVERHEAD, OverLimit};
use crate::core::{Outcome, Publisher, Settling, SyncView};
use crate::transport::TenantChannel;

/// Whether the channel is usable or waiting for the client's close-ok after a channel error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    Closing,
}

/// A basic.publish whose content is still arriving.
#[derive(Debug)]
pub struct Assembly {
    pub publish: BasicPublish,
    /// The content header once it arrived, boxed as decoded (properties are large).
    pub header: Option<Box<ContentHeader>>,
    /// The first body frame, kept apart so the common single-frame message needs no `Vec`.
    first: Option<Bytes>,
    rest: Vec<Bytes>,
    pub received: u64,
    /// Bytes charged to the channel for this message (header and body so far).
    held: u64,
}

impl Assembly {
    pub fn new(publish: BasicPublish) -> Self {
        Self {
            publish,
            header: None,
            first: None,
            rest: Vec::new(),
            received: 0,
            held: 0,
        }
    }

    /// Add a body frame.
    pub fn push(&mut self, part: Bytes) {
        self.received += part.len() as u64;
        match self.first {
            None => self.first = Some(part),
            Some(_) => self.rest.push(part),
        }
    }

    /// The body size the content header announced (`None` before it arrived).
    pub fn body_size(&self) -> Option<u64> {
        self.header.as_ref().map(|h| h.body_size)
    }

    /// The publish, its content header and the whole body; a single frame's bytes are passed on without a
    /// copy.
    pub fn finish(self) -> (BasicPublish, Box<ContentHeader>, Bytes) {
        let header = self.header.unwrap_or_default();
        let body = match (self.first, self.rest.is_empty()) {
            (None, _) => Bytes::new(),
            (Some(only), true) => only,
            (Some(first), false) => {
                let mut all = BytesMut::with_capacity(self.received as usize);
                all.extend_from_slice(&first);
                self.rest.iter().for_each(|p| all.extend_from_slice(p));
                all.freeze()
            }
        };
        (self.publish, header, body)
    }
}

/// A delivery the client has not settled yet.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub queue: QueueHandle,
    pub tag: u64,
    pub consumer: Option<ConsumerKey>,
}

/// Publisher-confirm state (confirm.select).
#[derive(Debug, Default)]
pub struct Confirms {
    next_seq: u64,
    pending: VecDeque<(u64, Settling)>,
}

/// A confirm frame to send: basic.ack or basic.nack with `multiple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmFrame {
    pub ack: bool,
    pub tag: u64,
    pub multiple: bool,
}

impl Confirms {
    /// Number the next publish.
    pub fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn push(&mut self, seq: u64, settling: Settling) {
        self.pending.push_back((seq, settling));
    }

    /// Whether any confirm waits for the disk.
    pub fn waits_for_sync(&self) -> bool {
        self.pending.iter().any(|(_, s)| s.waits_for_store())
    }

    /// Release every confirm that can go now, in publish order, folding runs into `multiple` frames. After a
    /// store failure, confirms waiting on the disk become nacks.
    pub fn release(&mut self, view: &SyncView, out: &mut Vec<ConfirmFrame>) {
        let mut run: Option<(bool, u64, u64)> = None; // (ack, first, last)
        while let Some(&(seq, settling)) = self.pending.front() {
            let Some(outcome) = settling.check(view) else {
                break;
            };
            let ack = outcome == Outcome::Accepted;
            self.pending.pop_front();
            run = match run {
                Some((kind, first, _)) if kind == ack => Some((kind, first, seq)),
                Some(done) => {
                    out.push(Self::frame(done));
                    Some((ack, seq, seq))
                }
                None => Some((ack, seq, seq)),
            };
        }
        if let Some(done) = run {
            out.push(Self::frame(done));
        }
    }

    fn frame((ack, first, last): (bool, u64, u64)) -> ConfirmFrame {
        ConfirmFrame {
            ack,
            tag: last,
            multiple: last > first,
        }
    }
}

/// A settlement recorded inside a transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxSettle {
    pub delivery_tag: u64,
    pub multiple: bool,
    pub outcome: Settle,
}

/// Work buffered by tx.select until tx.commit.
#[derive(Debug, Default)]
pub struct TxBuffer {
    /// Publishes (mandatory flag, message) waiting for tx.commit.
    pub publishes: Vec<(bool, Arc<Message>)>,
    pub settles: Vec<TxSettle>,
    /// Bytes charged to the channel for this work.
    held: u64,
}

/// A consumer on this channel.
#[derive(Debug, Clone)]
pub struct ChannelConsumer {
    pub key: ConsumerKey,
    pub queue: QueueHandle,
}

/// One open channel.
#[derive(Debug)]
pub struct Channel {
    pub state: ChannelState,
    pub assembly: Option<Assembly>,
    pub confirms: Option<Confirms>,
    pub tx: Option<TxBuffer>,
    pub consumers: HashMap<Arc<str>, ChannelConsumer>,
    /// Prefetch for consumers created from now on (basic.qos global=false).
    pub consumer_prefetch: u32,
    /// Shared limit of the channel (basic.qos global=true).
    pub limit: Arc<ChannelLimit>,
    /// The channel's publisher (and its caches), created by the first publish.
    pub publisher: Option<Publisher>,
    /// Last queue declared on the channel (an empty queue name in later methods means this one).
    pub last_queue: Option<String>,
    /// Private queue behind `amq.rabbitmq.reply-to` (direct reply-to) once the channel consumes from it.
    pub reply_to: Option<String>,
    next_tag: u64,
    /// Unsettled deliveries by delivery tag: index = tag - `base_tag`; settled ones become None.
    unacked: VecDeque<Option<Unacked>>,
    base_tag: u64,
    /// The unfinished message and the transaction's work, on the connection's ledger.
    held: Charge,
    /// The channel's place in its user's channel limit (given back when the channel goes).
    pub tenant: Option<TenantChannel>,
}

impl Channel {
    /// A new open channel whose content is charged to `held` (a content charge of the connection's ledger).
    pub fn new(held: Charge) -> Self {
        Self {
            state: ChannelState::Open,
            assembly: None,
            confirms: None,
            tx: None,
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            limit: Arc::new(ChannelLimit::default()),
            publisher: None,
            last_queue: None,
            reply_to: None,
            next_tag: 1,
            unacked: VecDeque::new(),
            base_tag: 1,
            held,
            tenant: None,
        }
    }

    /// Holds the content header of the message being assembled (`raw` bytes of properties), refusing it when
    /// the body it announces would not fit under the connection's cap either.
    pub fn hold_header(&mut self, raw: u64, body_size: u64) -> Result<(), OverLimit> {
        self.held.check(raw.saturating_add(body_size))?;
        self.hold_assembly(raw)
    }

    /// Holds a body frame of the message being assembled.
    pub fn hold_body(&mut self, len: u64) -> Result<(), OverLimit> {
        self.hold_assembly(len)
    }

    fn hold_assembly(&mut self, bytes: u64) -> Result<(), OverLimit> {
        self.held.add(bytes)?;
        if let Some(assembly) = self.assembly.as_mut() {
            assembly.held += bytes;
        }
        Ok(())
    }

    /// Takes the message being assembled, giving back what it held.
    pub fn take_assembly(&mut self) -> Option<Assembly> {
        let assembly = self.assembly.take()?;
        self.held.sub(assembly.held);
        Some(assembly)
    }

    /// Buffers a publish in the transaction (the channel must be transactional).
    pub fn tx_publish(&mut self, mandatory: bool, message: Arc<Message>) -> Result<(), OverLimit> {
        let bytes = message.body.len() as u64 + MESSAGE_OVERHEAD;
        if let Some(tx) = self.tx_hold(bytes)? {
            tx.publishes.push((mandatory, message));
        }
        Ok(())
    }

    /// Buffers a settlement in the transaction (the channel must be transactional).
    pub fn tx_settle(&mut self, settle: TxSettle) -> Result<(), OverLimit> {
        if let Some(tx) = self.tx_hold(std::mem::size_of::<TxSettle>() as u64)? {
            tx.settles.push(settle);
        }
        Ok(())
    }

    /// Holds `bytes` more for the transaction, which it returns to add its work to.
    fn tx_hold(&mut self, bytes: u64) -> Result<Option<&mut TxBuffer>, OverLimit> {
        self.held.add(bytes)?;
        let Some(tx) = self.tx.as_mut() else {
            return Ok(None);
        };
        tx.held += bytes;
        Ok(Some(tx))
    }

    /// The transaction's work (tx.commit, tx.rollback), giving back what it held; the channel stays
    /// transactional. `None` when it is not.
    pub fn take_tx(&mut self) -> Option<TxBuffer> {
        let work = std::mem::take(self.tx.as_mut()?);
        self.held.sub(work.held);
        Some(work)
    }

    /// Drops the unfinished message and the transaction's work (the channel is closing).
    pub fn drop_content(&mut self) {
        self.assembly = None;
        if let Some(tx) = self.tx.as_mut() {
            *tx = TxBuffer::default();
        }
        self.held.set(0);
    }
    /// Assign the next delivery tag; `unacked` is kept when the client must settle it.
    pub fn deliver(&mut self, unacked: Option<Unacked>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.unacked.is_empty() {
            self.base_tag = tag;
        }
        if unacked.is_some() || !self.unacked.is_empty() {
            self.unacked.push_back(unacked);
        } else {
            self.base_tag = tag + 1;
        }
        self.trim();
        tag
    }

    fn trim(&mut self) {
        while matches!(self.unacked.front(), Some(None)) {
            self.unacked.pop_front();
            self.base_tag += 1;
        }
        if self.unacked.is_empty() {
            self.base_tag = self.next_tag;
        }
    }

    /// Take the deliveries a basic.ack/nack/reject names. Tag 0 with `multiple` means all.
    pub fn take(&mut self, delivery_tag: u64, multiple: bool) -> Result<Vec<Unacked>, AmqpError> {
        let unknown = || {
            AmqpError::channel(
                code::PRECONDITION_FAILED,
                format!("unknown delivery tag {delivery_tag}"),
            )
        };
        let mut out = Vec::new();
        if multiple {
            let upto = if delivery_tag == 0 {
                self.next_tag - 1
            } else {
                delivery_tag
            };
            if delivery_tag >= self.next_tag {
                return Err(unknown());
            }
            while self.base_tag <= upto {
                let Some(slot) = self.unacked.pop_front() else {
                    break;
                };
                self.base_tag += 1;
                out.extend(slot);
            }
            if out.is_empty() && delivery_tag != 0 {
                return Err(unknown());
            }
        } else {
            let index = delivery_tag
                .checked_sub(self.base_tag)
                .ok_or_else(unknown)? as usize;
            let slot = self.unacked.get_mut(index).ok_or_else(unknown)?;
            out.push(slot.take().ok_or_else(unknown)?);
        }
        self.trim();
        Ok(out)
    }

    /// Every unsettled delivery (channel close, basic.recover).
    pub fn take_all(&mut self) -> Vec<Unacked> {
        let all = self.unacked.drain(..).flatten().collect();
        self.trim();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{after, view};

    #[test]
    fn confirms_fold_runs_and_wait_for_sync() {
        let mut c = Confirms::default();
        let ready = Settling::Done(Outcome::Accepted);
        for settling in [ready, ready, after(5), ready] {
            let seq = c.next();
            c.push(seq, settling);
        }
        let mut out = vec![];
        c.release(&view(4, false), &mut out);
        assert_eq!(
            out,
            vec![ConfirmFrame {
                ack: true,
                tag: 2,
                multiple: true
            }]
        );
        out.clear();
        c.release(&view(5, false), &mut out);
        assert_eq!(
            out,
            vec![ConfirmFrame {
                ack: true,
                tag: 4,
                multiple: true
            }]
        );
    }

    #[test]
    fn content_is_held_until_it_leaves_the_channel() {
        let gauge = std::sync::Arc::new(crate::core::MemoryGauge::new(0));
        let memory = crate::core::ClientMemory::new(gauge, 1000);
        let mut channel = Channel::new(memory.charge(crate::core::ChargeKind::Content));
        channel.assembly = Some(Assembly::new(BasicPublish::default()));
        assert!(
            channel.hold_header(100, 901).is_err(),
            "the announced body does not fit"
        );
        channel.hold_header(100, 400).expect("fits");
        channel.hold_body(300).expect("fits");
        assert_eq!(memory.content(), 400);
        assert!(channel.take_assembly().is_some());
        assert_eq!(memory.content(), 0, "a finished message is given back");
        channel.tx = Some(TxBuffer::default());
        let message = Arc::new(Message::new("", "q", Bytes::from(vec![0; 600])));
        channel.tx_publish(false, message.clone()).expect("fits");
        assert!(channel.tx_publish(false, message).is_err(), "over the cap");
        assert_eq!(memory.content(), 600 + MESSAGE_OVERHEAD);
        let work = channel.take_tx().expect("transactional");
        assert_eq!(work.publishes.len(), 1);
        assert_eq!(
            memory.content(),
            0,
            "committed or rolled back work is given back"
        );
        channel.hold_body(50).expect("fits");
        channel.drop_content();
        assert_eq!(memory.content(), 0, "a closing channel holds nothing");
    }

    #[test]
    fn confirms_nack_after_store_failure_and_for_refusals() {
        let mut c = Confirms::default();
        let s = c.next();
        c.push(s, after(9));
        let s = c.next();
        c.push(s, Settling::Done(Outcome::Refused));
        let mut out = vec![];
        c.release(&view(1, true), &mut out);
        assert_eq!(
            out,
            vec![ConfirmFrame {
                ack: false,
                tag: 2,
                multiple: true
            }]
        );
    }
}

/// The open channels of a connection, indexed by channel number: a lookup per frame costs an index, not a
/// hash. Channels are boxed so a client opening a high channel number costs 8 bytes per lower slot.
#[derive(Debug, Default)]
pub struct ChannelTable {
    slots: Vec<Option<Box<Channel>>>,
}

impl ChannelTable {
    pub fn get(&self, ch: &u16) -> Option<&Channel> {
        self.slots.get(usize::from(*ch))?.as_deref()
    }

    pub fn get_mut(&mut self, ch: &u16) -> Option<&mut Channel> {
        self.slots.get_mut(usize::from(*ch))?.as_deref_mut()
    }

    pub fn contains_key(&self, ch: &u16) -> bool {
        self.slots
            .get(usize::from(*ch))
            .is_some_and(Option::is_some)
    }

    pub fn insert(&mut self, ch: u16, channel: Channel) {
        let at = usize::from(ch);
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        self.slots[at] = Some(Box::new(channel));
    }

    pub fn remove(&mut self, ch: &u16) -> Option<Channel> {
        self.slots.get_mut(usize::from(*ch))?.take().map(|b| *b)
    }

    /// Numbers of the open channels.
    pub fn ids(&self) -> Vec<u16> {
        self.iter().map(|(ch, _)| ch).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u16, &Channel)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i as u16, c.as_deref()?)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut Channel)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| Some((i as u16, c.as_deref_mut()?)))
    }
}
