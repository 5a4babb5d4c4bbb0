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
        let header = *header;
        let (raw, body_size) = (header.raw_properties.len() as u64, header.body_size);
        assembly.header = Some((header.properties, header.raw_properties, body_size));
        if let Err(e) = channel.hold_header(raw + MESSAGE_OVERHEAD, body_size) {
            channel.take_assembly();
            return Err(AmqpError::from(e).during(60, 40));
        }
        if body_size == 0 {
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
        let Some((_, _, size)) = assembly.header else {
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
            return self.finish_publish(ch).await;
        }
        channel
            .hold_body(len)
            .map_err(|e| AmqpError::from(e).during(60, 40))
    }

    pub(super) async fn finish_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Some(assembly) = channel.take_assembly() else {
            return Ok(());
        };
        let reply_to = channel.reply_to.clone();
        let (publish, mut properties, raw, body) = assembly.finish();
        let mut raw = Some(raw);
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
        let message = convert::message_in(
            publish.exchange,
            publish.routing_key,
            properties,
            raw.as_deref(),
            body,
        )
        .map_err(|e| e.during(60, 40))?;
        let channel = self.channel(ch)?;
        if channel.tx.is_some() {
            return channel
                .tx_publish(publish.mandatory, message)
                .map_err(|e| AmqpError::from(e).during(60, 40));
        }
        self.publish(ch, message, publish.mandatory)
            .await
            .map_err(|e| e.during(60, 40))
    }

    /// Hands a message to the core through the channel's publisher; returns what its confirm waits for.
    pub(super) async fn publish_one(
        &mut self,
        ch: u16,
        message: Message,
        mandatory: bool,
        want_answers: bool,
    ) -> Result<Settling, AmqpError> {
        self.has_published = true;
        let session = self.session()?;
        let mut publisher = self
            .channel(ch)?
            .publisher
            .take()
            .unwrap_or_else(|| Publisher::new(session));
        let receipt = publisher.publish(message, want_answers).await;
        self.channel(ch)?.publisher = Some(publisher);
        Ok(match receipt? {
            Receipt::Unroutable(m) => {
                if mandatory {
                    self.send_return(ch, &m);
                }
                Settling::Done(Outcome::Accepted)
            }
            Receipt::Routed(confirmation) => confirmation.queues_answered().await,
        })
    }

    pub(super) async fn publish(
        &mut self,
        ch: u16,
        message: Message,
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
        let work = self.channel(ch)?.take_tx().ok_or_else(not_transactional)?;
        let mut last_sync = None;
        for (mandatory, message) in work.publishes {
            let settling = self.publish_one(ch, message, mandatory, false).await?;
            if settling.waits_for_store() {
                last_sync = Some(settling);
            }
        }
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
