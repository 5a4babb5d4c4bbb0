//! The AWS error vocabulary every AWS API shares: an error code, its Query-protocol code (SQS's
//! `AWS.SimpleQueueService.*` names), the HTTP status, who is at fault (`Sender` or `Receiver`) and the message.
//! How an error is written (JSON `__type` with `x-amzn-query-error`, or Query `ErrorResponse` XML) is the
//! codec's business (`aws::protocol`).

/// One AWS error as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The JSON `__type` shape name (`QueueDoesNotExist`).
    pub code: &'static str,
    /// The Query-protocol code (`AWS.SimpleQueueService.NonExistentQueue`); the same as `code` for most.
    pub query_code: &'static str,
    pub status: u16,
    /// `Sender` (the client's fault) rather than `Receiver`.
    pub sender: bool,
    pub message: String,
    /// The JSON namespace of `code` (`com.amazonaws.sqs`; `com.amazon.coral.service` for the common ones).
    pub namespace: &'static str,
}

const COMMON: &str = "com.amazon.coral.service";

impl AwsError {
    /// A client error of the common vocabulary (same code in JSON and Query).
    pub fn common(code: &'static str, status: u16, message: &str) -> Self {
        Self {
            code,
            query_code: code,
            status,
            sender: true,
            message: message.to_owned(),
            namespace: COMMON,
        }
    }

    /// A service-specific client error with its Query code.
    pub fn service(
        namespace: &'static str,
        code: &'static str,
        query_code: &'static str,
        status: u16,
        message: &str,
    ) -> Self {
        Self {
            code,
            query_code,
            status,
            sender: true,
            message: message.to_owned(),
            namespace,
        }
    }

    pub fn invalid_token(message: &str) -> Self {
        Self::common("InvalidClientTokenId", 403, message)
    }

    pub fn missing_token() -> Self {
        Self::common(
            "MissingAuthenticationToken",
            403,
            "Request is missing Authentication Token",
        )
    }

    pub fn signature_mismatch(message: &str) -> Self {
        Self::common("SignatureDoesNotMatch", 403, message)
    }

    pub fn incomplete_signature(message: &str) -> Self {
        Self::common("IncompleteSignature", 400, message)
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::common(
            "InvalidAction",
            400,
            &format!(
                "The action or operation requested is invalid. Verify that the action is typed correctly: {action}"
            ),
        )
    }

    pub fn unknown_operation() -> Self {
        Self::common("UnknownOperationException", 400, "")
    }

    pub fn serialization(message: &str) -> Self {
        Self::common("SerializationException", 400, message)
    }

    pub fn malformed_query(message: &str) -> Self {
        Self::common("MalformedQueryString", 400, message)
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::common(
            "MissingParameter",
            400,
            &format!("The request must contain the parameter {name}."),
        )
    }

    pub fn invalid_parameter(message: &str) -> Self {
        Self::common("InvalidParameterValue", 400, message)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::common(
            "RequestEntityTooLarge",
            413,
            &format!("Request body must be at most {limit} bytes."),
        )
    }

    /// A server-side failure (the store refused a write, say).
    pub fn internal(message: &str) -> Self {
        Self {
            sender: false,
            ..Self::common("InternalFailure", 500, message)
        }
    }

    pub fn unavailable(message: &str) -> Self {
        Self {
            sender: false,
            ..Self::common("ServiceUnavailable", 503, message)
        }
    }
}
