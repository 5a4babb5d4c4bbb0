//! Publisher confirms (RabbitMQ's confirm class) and transactions (AMQP 0-9-1 §1.9, tx).

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// confirm.select and tx.select / commit / rollback.
    pub(super) async fn confirm_tx_method(
        &mut self,
        ch: u16,
        method: Method,
    ) -> Result<(), AmqpError> {
        match method {
            Method::ConfirmSelect(m) => {
                let channel = self.channel(ch)?;
                if channel.tx.is_some() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                channel.confirms.get_or_insert_with(Confirms::default);
                self.reply(ch, m.no_wait, Method::ConfirmSelectOk);
                Ok(())
            }
            Method::TxSelect => {
                let channel = self.channel(ch)?;
                if channel.confirms.is_some() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                channel.tx.get_or_insert_with(TxBuffer::default);
                self.send_method(ch, &Method::TxSelectOk);
                Ok(())
            }
            Method::TxCommit => self.commit(ch).await,
            Method::TxRollback => {
                self.channel(ch)?.take_tx().ok_or_else(not_transactional)?;
                self.send_method(ch, &Method::TxRollbackOk);
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
