//! SQS's error vocabulary: each error's JSON shape name, Query code and status as the SQS API model states
//! them (`awsQueryError` traits), and the core's errors worded for SQS.

use crate::aws::error::AwsError;
use crate::core::{CoreError, ErrorClass};

const NS: &str = "com.amazonaws.sqs";

pub fn queue_does_not_exist() -> AwsError {
    AwsError::service(
        NS,
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        400,
        "The specified queue does not exist.",
    )
}

pub fn queue_name_exists(name: &str) -> AwsError {
    AwsError::service(
        NS,
        "QueueNameExists",
        "QueueAlreadyExists",
        400,
        &format!(
            "A queue already exists with the same name and a different value for attribute(s) of {name}"
        ),
    )
}

pub fn purge_in_progress(name: &str) -> AwsError {
    AwsError::service(
        NS,
        "PurgeQueueInProgress",
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        403,
        &format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
    )
}

/// A receipt handle that does not decode (SQS words it with the handle in batches only).
pub fn receipt_handle_invalid_in_batch(handle: &str) -> AwsError {
    AwsError {
        message: format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
        ..receipt_handle_invalid()
    }
}

pub fn receipt_handle_invalid() -> AwsError {
    AwsError::service(
        NS,
        "ReceiptHandleIsInvalid",
        "ReceiptHandleIsInvalid",
        404,
        "The input receipt handle is invalid.",
    )
}

pub fn message_not_inflight() -> AwsError {
    AwsError::service(
        NS,
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        400,
        "The message referred to isn't in flight.",
    )
}

pub fn invalid_attribute_name(message: &str) -> AwsError {
    AwsError::service(
        NS,
        "InvalidAttributeName",
        "InvalidAttributeName",
        400,
        message,
    )
}

pub fn invalid_attribute_value(message: &str) -> AwsError {
    AwsError::service(
        NS,
        "InvalidAttributeValue",
        "InvalidAttributeValue",
        400,
        message,
    )
}

pub fn invalid_message_contents(message: &str) -> AwsError {
    AwsError::service(
        NS,
        "InvalidMessageContents",
        "InvalidMessageContents",
        400,
        message,
    )
}

pub fn too_many_entries(sent: usize) -> AwsError {
    AwsError::service(
        NS,
        "TooManyEntriesInBatchRequest",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        400,
        &format!("Maximum number of entries per request are 10. You have sent {sent}."),
    )
}

/// `entry`: the action's entry shape (`SendMessageBatchRequestEntry`).
pub fn empty_batch(entry: &str) -> AwsError {
    AwsError::service(
        NS,
        "EmptyBatchRequest",
        "AWS.SimpleQueueService.EmptyBatchRequest",
        400,
        &format!("There should be at least one {entry} in the request."),
    )
}

pub fn batch_ids_not_distinct(id: &str) -> AwsError {
    AwsError::service(
        NS,
        "BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        400,
        &format!("Id {id} repeated."),
    )
}

pub fn invalid_batch_entry_id() -> AwsError {
    AwsError::service(
        NS,
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        400,
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at \
         most 80 letters long.",
    )
}

pub fn batch_too_long(limit: usize, sent: usize) -> AwsError {
    AwsError::service(
        NS,
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        400,
        &format!("Batch requests cannot be longer than {limit} bytes. You have sent {sent} bytes."),
    )
}

pub fn resource_not_found(message: &str) -> AwsError {
    AwsError::service(
        NS,
        "ResourceNotFoundException",
        "ResourceNotFoundException",
        404,
        message,
    )
}

pub fn over_limit(message: &str) -> AwsError {
    AwsError::service(NS, "OverLimit", "OverLimit", 403, message)
}

/// A core error worded for SQS.
pub fn from_core(e: &CoreError) -> AwsError {
    match e {
        CoreError::NotFound { .. } => queue_does_not_exist(),
        other => match other.class() {
            ErrorClass::Store => AwsError::unavailable(&other.to_string()),
            ErrorClass::LimitExceeded => over_limit(&other.to_string()),
            ErrorClass::AccessRefused | ErrorClass::NotAllowed => {
                AwsError::common("AccessDenied", 403, &other.to_string())
            }
            _ => AwsError::invalid_parameter(&other.to_string()),
        },
    }
}
