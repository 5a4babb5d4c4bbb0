//! The basic class (AMQP 0-9-1 §1.8) apart from publishing: qos, consume, cancel, get, ack / nack / reject,
//! recover; basic.publish here only starts the content assembly (`publish` takes it from there).

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// basic.* methods.
    pub(super) async fn basic_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::BasicQos(m) => {
                let channel = self.channel(ch)?;
                if m.global {
                    channel.limit.limit.store(
                        m.prefetch_count as u32,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let queues: Vec<QueueHandle> = channel
                        .consumers
                        .values()
                        .map(|c| c.queue.clone())
                        .collect();
                    queues.iter().for_each(QueueHandle::wake);
                } else {
                    channel.consumer_prefetch = m.prefetch_count as u32;
                }
                self.send_method(ch, &Method::BasicQosOk);
                Ok(())
            }
            Method::BasicConsume(m) => self.consume(ch, m).await,
            Method::BasicCancel(m) => {
                if let Some(consumer) = self.channel(ch)?.consumers.remove(m.consumer_tag.as_str())
                {
                    self.consumers.remove(&consumer.key);
                    consumer.queue.cancel(consumer.key).await;
                }
                self.reply(
                    ch,
                    m.no_wait,
                    Method::BasicCancelOk(codec::BasicCancelOk {
                        consumer_tag: m.consumer_tag,
                    }),
                );
                Ok(())
            }
            Method::BasicPublish(m) => self.start_publish(ch, m),
            Method::BasicGet(m) => self.get(ch, &m.queue, m.no_ack).await,
            Method::BasicAck(m) => self.settle(ch, m.delivery_tag, m.multiple, Settle::Ack),
            Method::BasicReject(m) => {
                self.settle(ch, m.delivery_tag, false, requeue_or_reject(m.requeue))
            }
            Method::BasicNack(m) => {
                self.settle(ch, m.delivery_tag, m.multiple, requeue_or_reject(m.requeue))
            }
            Method::BasicRecover(_) => {
                self.recover(ch)?;
                self.send_method(ch, &Method::BasicRecoverOk);
                Ok(())
            }
            Method::BasicRecoverAsync(_) => self.recover(ch),
            other => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                format!(
                    "{} is not a method a client may send on a channel",
                    method_name(&other)
                ),
            )),
        }
    }
}
