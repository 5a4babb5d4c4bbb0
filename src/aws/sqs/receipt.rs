//! Receipt handles: which queue, which message (the core delivery tag) and which receive of it (the receive
//! count), plus a random part so that every receive hands out a new handle, as SQS does. Opaque to clients
//! (URL-safe base64); a handle that does not decode is `ReceiptHandleIsInvalid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::error::receipt_handle_invalid;
use crate::aws::error::AwsError;

/// A decoded receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub queue: String,
    pub tag: u64,
    /// The receive count when it was handed out.
    pub receive: u32,
}

impl Receipt {
    pub fn encode(&self) -> String {
        let nonce: u64 = rand::random();
        B64.encode(format!(
            "{}\n{}\n{}\n{nonce:016x}",
            self.queue, self.tag, self.receive
        ))
    }

    /// Decodes a handle given for queue `queue`.
    pub fn decode(handle: &str, queue: &str) -> Result<Receipt, AwsError> {
        let invalid = receipt_handle_invalid;
        let bytes = B64.decode(handle.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split('\n');
        let (Some(q), Some(tag), Some(receive), Some(_nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        if q != queue {
            return Err(invalid());
        }
        Ok(Receipt {
            queue: q.to_owned(),
            tag: tag.parse().map_err(|_| invalid())?,
            receive: receive.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_differ_per_receive_and_decode_back() {
        let r = Receipt {
            queue: "q".to_owned(),
            tag: 42,
            receive: 2,
        };
        let (a, b) = (r.encode(), r.encode());
        assert_ne!(a, b);
        assert_eq!(Receipt::decode(&a, "q").expect("valid"), r);
        assert!(Receipt::decode(&a, "other").is_err());
        assert_eq!(
            Receipt::decode("garbage!", "q").expect_err("invalid").code,
            "ReceiptHandleIsInvalid"
        );
    }
}
