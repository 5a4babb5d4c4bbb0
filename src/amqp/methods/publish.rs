//! The publish path: content assembly (basic.publish, header, body frames, with their limits), conversion
//! to the core's message, the channel's publisher, basic.return for mandatory messages, confirms in order, and
//! tx.commit.
//!
//! Every frame of a publish is handled without an `await`: the message goes to the channel publisher's outbox
//! (`core::publish`), and what is left for the connection's loop to await comes back as a [`PublishStep`]
//! (usually nothing; a flush when an outbox is full; the queues' answers for a confirm that needs them). The
//! loop flushes the outboxes after each read and before any other method.

use super::*;

/// What a publish frame leaves for the connection's loop, which may await ([`Connection::finish_step`]).
#[derive(Debug)]
pub(crate) enum PublishStep {
    /// Nothing: the common case.
    Done,
    /// A publisher's outbox is full: flush before reading on.
    Flush,
    /// A confirm waits for queues that may refuse the message: flush, await their answers, then the confirm
    /// takes its place in the channel's order.
    Answers { ch: u16, confirmation: Confirmation },
}

/// A routed publish: what its confirm waits for, or the queues' answers still to come.
enum Routed {
    Settled(Settling),
    Waiting(Confirmation),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// basic.publish: the checks every channel method goes through, then the content assembly starts.
    pub(crate) fn on_publish_method(
        &mut self,
        ch: u16,
        method: Method,
    ) -> Result<PublishStep, AmqpError> {
        let admitted = self.admit(ch, &method).map_err(|e| e.during(60, 40))?;
        if let (true, Method::BasicPublish(m)) = (admitted, method) {
            self.start_publish(ch, m).map_err(|e| e.during(60, 40))?;
        }
        Ok(PublishStep::Done)
    }

    pub(super) fn start_publish(&mut self, ch: u16, m: BasicPublish) -> Result<(), AmqpError> {
        if m.immediate {
            return Err(AmqpError::connection(
                code::NOT_IMPLEMENTED,
                "immediate=true",
            ));
        }
        self.channel(ch)?.assembly = Some(Assembly::new(m));
        Ok(())
    }

    pub(crate) fn on_header(
        &mut self,
        ch: u16,
        header: Box<ContentHeader>,
    ) -> Result<PublishStep, AmqpError> {
        let max = self.ctx.config.max_message_size;
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(PublishStep::Done);
        }
        let Some(assembly) = channel.assembly.as_mut().filter(|a| a.header.is_none()) else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content header without a preceding basic.publish",
            ));
        };
        if header.class_id != BASIC_CLASS {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!("content header for class {}", header.class_id),
            ));
        }
        if header.body_size > max {
            channel.assembly = None;
            return Err(AmqpError::channel(
                code::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {max}",
                    header.body_size
                ),
            )
            .during(60, 40));
        }
        let (raw, body_size) = (header.raw_properties.len() as u64, header.body_size);
        assembly.header = Some(header);
        if let Err(e) = channel.hold_header(raw + MESSAGE_OVERHEAD, body_size) {
            channel.take_assembly();
            return Err(AmqpError::from(e).during(60, 40));
        }
        if body_size == 0 {
            return self.finish_publish(ch);
        }
        Ok(PublishStep::Done)
    }

    pub(crate) fn on_body(&mut self, ch: u16, body: Bytes) -> Result<PublishStep, AmqpError> {
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(PublishStep::Done);
        }
        let Some(assembly) = channel.assembly.as_mut() else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content body without a preceding basic.publish",
            ));
        };
        let Some(size) = assembly.body_size() else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content body before the content header",
            ));
        };
        let len = body.len() as u64;
        if assembly.received + len > size {
            return Err(AmqpError::connection(
                code::FRAME_ERROR,
                format!("content body exceeds the declared size {size}"),
            ));
        }
        assembly.push(body);
        if assembly.received == size {
            return self.finish_publish(ch);
        }
        channel
            .hold_body(len)
            .map_err(|e| AmqpError::from(e).during(60, 40))?;
        Ok(PublishStep::Done)
    }

    fn finish_publish(&mut self, ch: u16) -> Result<PublishStep, AmqpError> {
        let channel = self.channel(ch)?;
        let Some(assembly) = channel.take_assembly() else {
            return Ok(PublishStep::Done);
        };
        let reply_to = channel.reply_to.clone();
        let (publish, mut header, body) = assembly.finish();
        let header = &mut *header;
        let properties = &mut header.properties;
        let mut raw = Some(std::mem::take(&mut header.raw_properties));
        if properties.reply_to.as_deref() == Some(REPLY_TO) {
            let own = reply_to.ok_or_else(|| {
                AmqpError::channel(
                    code::PRECONDITION_FAILED,
                    "fast reply consumer does not exist",
                )
                .during(60, 40)
            })?;
            properties.reply_to = Some(own);
            raw = None;
        }
        let message =
            convert::message_in(publish.exchange, publish.routing_key, properties, raw, body)
                .map_err(|e| e.during(60, 40))?;
        let channel = self.channel(ch)?;
        if channel.tx.is_some() {
            channel
                .tx_publish(publish.mandatory, message)
                .map_err(|e| AmqpError::from(e).during(60, 40))?;
            return Ok(PublishStep::Done);
        }
        self.publish(ch, message, publish.mandatory)
            .map_err(|e| e.during(60, 40))
    }

    /// Publishes through the channel's publisher; with confirms, the publish takes the next sequence number.
    fn publish(
        &mut self,
        ch: u16,
        message: Arc<Message>,
        mandatory: bool,
    ) -> Result<PublishStep, AmqpError> {
        let confirming = self.channel(ch)?.confirms.is_some();
        let settling = match self.route_one(ch, message, mandatory, confirming)? {
            Routed::Settled(settling) => settling,
            Routed::Waiting(confirmation) => {
                return Ok(PublishStep::Answers { ch, confirmation });
            }
        };
        self.confirm_next(ch, settling)?;
        Ok(if self.publisher_full(ch) {
            PublishStep::Flush
        } else {
            PublishStep::Done
        })
    }

    /// Records the confirm of a channel's next publish (when the channel is in confirm mode).
    fn confirm_next(&mut self, ch: u16, settling: Settling) -> Result<(), AmqpError> {
        if let Some(confirms) = self.channel(ch)?.confirms.as_mut() {
            let seq = confirms.next();
            confirms.push(seq, settling);
        }
        Ok(())
    }

    /// Hands a message to the core through the channel's publisher: it waits in the publisher's outbox until
    /// [`Connection::flush_publishes`] (see `core::publish`).
    fn route_one(
        &mut self,
        ch: u16,
        message: Arc<Message>,
        mandatory: bool,
        want_answers: bool,
    ) -> Result<Routed, AmqpError> {
        self.has_published = true;
        let session = self.session.as_ref();
        let channel = self
            .channels
            .get_mut(&ch)
            .ok_or_else(|| channel_not_open(ch))?;
        let publisher = match channel.publisher.as_mut() {
            Some(p) => p,
            None => channel
                .publisher
                .insert(Publisher::new(session.cloned().ok_or_else(not_open)?)),
        };
        match publisher.publish_buffered(message, want_answers)? {
            Receipt::Unroutable(m) => {
                if mandatory {
                    self.send_return(ch, &m);
                }
                Ok(Routed::Settled(Settling::Done(Outcome::Accepted)))
            }
            Receipt::Routed(confirmation) => Ok(match confirmation.try_settling() {
                Ok(settling) => Routed::Settled(settling),
                Err(confirmation) => Routed::Waiting(confirmation),
            }),
        }
    }

    fn publisher_full(&self, ch: u16) -> bool {
        self.channels
            .get(&ch)
            .and_then(|c| c.publisher.as_ref())
            .is_some_and(Publisher::is_full)
    }

    /// Does what a [`PublishStep`] left to await.
    pub(crate) async fn finish_step(&mut self, step: PublishStep) -> Result<(), AmqpError> {
        match step {
            PublishStep::Done => Ok(()),
            PublishStep::Flush => {
                self.flush_publishes().await;
                Ok(())
            }
            PublishStep::Answers { ch, confirmation } => {
                let settling = self.answered(confirmation).await;
                self.confirm_next(ch, settling)
            }
        }
    }

    /// Flushes, so that the queues get the message, and waits for their answers.
    async fn answered(&mut self, confirmation: Confirmation) -> Settling {
        self.flush_publishes().await;
        confirmation.queues_answered().await
    }

    /// Hands every channel's gathered publishes to their queues: after a read's frames, and before anything
    /// that must find them queued (any method but basic.publish, a commit, a confirm that waits for queues).
    pub(crate) async fn flush_publishes(&mut self) -> bool {
        let mut flushed = false;
        for (_, channel) in self.channels.iter_mut() {
            if let Some(publisher) = channel.publisher.as_mut().filter(|p| p.has_pending()) {
                publisher.flush().await;
                flushed = true;
            }
        }
        flushed
    }

    /// basic.return with the message a mandatory publish could not route.
    pub(super) fn send_return(&mut self, ch: u16, m: &Message) {
        let ret = codec::BasicReturn {
            reply_code: code::NO_ROUTE,
            reply_text: "NO_ROUTE".into(),
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        };
        codec::encode_content(
            ch,
            &Method::BasicReturn(ret),
            BASIC_CLASS,
            &Outgoing(m),
            &m.body,
            self.frame_max,
            &mut self.out,
        );
    }

    pub(super) async fn commit(&mut self, ch: u16) -> Result<(), AmqpError> {
        let work = self.channel(ch)?.take_tx().ok_or_else(not_transactional)?;
        let mut last_sync = None;
        for (mandatory, message) in work.publishes {
            let settling = match self.route_one(ch, message, mandatory, false)? {
                Routed::Settled(settling) => settling,
                Routed::Waiting(confirmation) => self.answered(confirmation).await,
            };
            if settling.waits_for_store() {
                last_sync = Some(settling);
            }
            if self.publisher_full(ch) {
                self.flush_publishes().await;
            }
        }
        self.flush_publishes().await;
        for s in work.settles {
            self.apply_settle(ch, s.delivery_tag, s.multiple, s.outcome)?;
        }
        if let Some(settling) = last_sync {
            // A committed transaction is durable: wait for the sync covering its last publish.
            if self.sync.settled(settling).await != Outcome::Accepted {
                return Err(AmqpError::connection(
                    code::INTERNAL_ERROR,
                    "message store failed; transaction not committed",
                ));
            }
        }
        self.send_method(ch, &Method::TxCommitOk);
        Ok(())
    }
}
