//! The queue class (AMQP 0-9-1 §1.6): declare (passive or with typed options), bind, unbind, purge, delete.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// queue.declare / bind / unbind / purge / delete.
    pub(super) async fn queue_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::QueueDeclare(m) => {
                let name = if m.passive {
                    self.queue_name(ch, &m.queue)?
                } else {
                    m.queue
                };
                let s = self.session()?;
                let (q, stats) = if m.passive {
                    s.queue_exists(&name).await?
                } else {
                    let options = QueueOptions {
                        durability: if m.durable {
                            Durability::Durable
                        } else {
                            Durability::Transient
                        },
                        ownership: if m.exclusive {
                            Ownership::Exclusive
                        } else {
                            Ownership::Shared
                        },
                        auto_delete: if m.auto_delete {
                            AutoDelete::WhenUnused
                        } else {
                            AutoDelete::Never
                        },
                        arguments: convert::table_in(m.arguments),
                    };
                    s.declare_queue(&name, options).await?
                };
                self.channel(ch)?.last_queue = Some(q.name.clone());
                let ok = codec::QueueDeclareOk {
                    queue: q.name.clone(),
                    message_count: stats.messages,
                    consumer_count: stats.consumers,
                };
                self.reply(ch, m.no_wait, Method::QueueDeclareOk(ok));
                Ok(())
            }
            Method::QueueBind(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let b = binding(
                    m.exchange,
                    queue,
                    DestinationKind::Queue,
                    m.routing_key,
                    m.arguments,
                );
                self.bind(ch, BindOp::Bind, &b, m.no_wait, Method::QueueBindOk)
            }
            Method::QueueUnbind(m) => {
                // queue.unbind has no no-wait bit: it is always answered.
                let queue = self.queue_name(ch, &m.queue)?;
                let b = binding(
                    m.exchange,
                    queue,
                    DestinationKind::Queue,
                    m.routing_key,
                    m.arguments,
                );
                self.bind(ch, BindOp::Unbind, &b, false, Method::QueueUnbindOk)
            }
            Method::QueuePurge(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let count = self.session()?.purge_queue(&queue).await?;
                self.reply(
                    ch,
                    m.no_wait,
                    Method::QueuePurgeOk(codec::QueuePurgeOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
            Method::QueueDelete(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let count = self
                    .session()?
                    .delete_queue(&queue, m.if_unused, m.if_empty)
                    .await?;
                self.reply(
                    ch,
                    m.no_wait,
                    Method::QueueDeleteOk(codec::QueueDeleteOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
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
