//! The exchange class (AMQP 0-9-1 §1.5): declare, delete, bind, unbind.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// exchange.declare / delete / bind / unbind.
    pub(super) fn exchange_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::ExchangeDeclare(m) => {
                let spec = ExchangeSpec {
                    name: m.exchange,
                    kind: m.kind,
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    arguments: convert::table_in(m.arguments),
                };
                self.session()?.declare_exchange(spec, m.passive)?;
                self.reply(ch, m.no_wait, Method::ExchangeDeclareOk);
                Ok(())
            }
            Method::ExchangeDelete(m) => {
                self.session()?.delete_exchange(&m.exchange, m.if_unused)?;
                self.reply(ch, m.no_wait, Method::ExchangeDeleteOk);
                Ok(())
            }
            Method::ExchangeBind(m) => {
                let b = binding(
                    m.source,
                    m.destination,
                    DestinationKind::Exchange,
                    m.routing_key,
                    m.arguments,
                );
                self.bind(ch, BindOp::Bind, &b, m.no_wait, Method::ExchangeBindOk)
            }
            Method::ExchangeUnbind(m) => {
                let b = binding(
                    m.source,
                    m.destination,
                    DestinationKind::Exchange,
                    m.routing_key,
                    m.arguments,
                );
                self.bind(ch, BindOp::Unbind, &b, m.no_wait, Method::ExchangeUnbindOk)
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
