//! The publish path: content assembly (basic.publish, header, body frames, with their limits), conversion
//! to the core's message, the channel's publisher, basic.return for mandatory messages, confirms in order, and
//! tx.commit.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    pub(crate) async fn on_header(
        &mut self,
        ch: u16,
        header: Box<ContentHeader>,
    ) -> Result<(), AmqpError> {
        let max = self.ctx.config.max_message_size;
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(());
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
        let empty = header.body_size == 0;
        assembly.header = Some(header);
        if empty {
            return self.finish_publish(ch).await;
        }
        Ok(())
    }

    pub(crate) async fn on_body(&mut self, ch: u16, body: Bytes) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(());
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
        if assembly.received + body.len() as u64 > size {
            return Err(AmqpError::connection(
                code::FRAME_ERROR,
                format!("content body exceeds the declared size {size}"),
            ));
        }
        assembly.push(body);
        if assembly.received == size {
            return self.finish_publish(ch).await;
        }
        Ok(())
    }

    pub(super) async fn finish_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Some(assembly) = channel.assembly.take() else {
            return Ok(());
        };
        let reply_to = channel.reply_to.clone();
        let (publish, mut header, body) = assembly.finish();
        let properties = &mut header.properties;
        let mut raw = Some(&header.raw_properties[..]);
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
        if let Some(tx) = self.channel(ch)?.tx.as_mut() {
            tx.publishes.push((publish.mandatory, message));
            return Ok(());
        }
        self.publish(ch, message, publish.mandatory)
            .await
            .map_err(|e| e.during(60, 40))
    }

    /// Hands a message to the core through the channel's publisher; returns what its confirm waits for. The
    /// message waits in the publisher's outbox until [`Connection::flush_publishes`] (see `core::publish`),
    /// unless the outbox is full or a queue must answer first.
    pub(super) async fn publish_one(
        &mut self,
        ch: u16,
        message: Arc<Message>,
        mandatory: bool,
        want_answers: bool,
    ) -> Result<Settling, AmqpError> {
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
        let receipt = publisher.publish_buffered(message, want_answers)?;
        let full = publisher.is_full();
        let confirmation = match receipt {
            Receipt::Unroutable(m) => {
                if mandatory {
                    self.send_return(ch, &m);
                }
                return Ok(Settling::Done(Outcome::Accepted));
            }
            Receipt::Routed(confirmation) => confirmation,
        };
        match confirmation.try_settling() {
            Ok(settling) => {
                if full {
                    self.flush_publishes().await;
                }
                Ok(settling)
            }
            Err(confirmation) => {
                self.flush_publishes().await;
                Ok(confirmation.queues_answered().await)
            }
        }
    }

    /// Hands every channel's gathered publishes to their queues: after a read's frames, and before anything
    /// that must find them queued (any method but basic.publish, a commit, a confirm that waits for queues).
    pub(crate) async fn flush_publishes(&mut self) {
        for (_, channel) in self.channels.iter_mut() {
            if let Some(publisher) = channel.publisher.as_mut().filter(|p| p.has_pending()) {
                publisher.flush().await;
            }
        }
    }

    pub(super) async fn publish(
        &mut self,
        ch: u16,
        message: Arc<Message>,
        mandatory: bool,
    ) -> Result<(), AmqpError> {
        let confirming = self.channel(ch)?.confirms.is_some();
        let settling = self.publish_one(ch, message, mandatory, confirming).await?;
        if let Some(confirms) = self.channel(ch)?.confirms.as_mut() {
            let seq = confirms.next();
            confirms.push(seq, settling);
        }
        Ok(())
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
        let tx = self
            .channel(ch)?
            .tx
            .as_mut()
            .ok_or_else(not_transactional)?;
        let work = std::mem::take(tx);
        let mut last_sync = None;
        for (mandatory, message) in work.publishes {
            let settling = self.publish_one(ch, message, mandatory, false).await?;
            if settling.waits_for_store() {
                last_sync = Some(settling);
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
