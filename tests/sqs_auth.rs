//! SigV4 on the AWS endpoint with keys configured: the SDK's signatures verify, a wrong secret is
//! SignatureDoesNotMatch, an unknown key InvalidClientTokenId, an unsigned request MissingAuthenticationToken,
//! all with the AWS envelope; a presigned URL verifies. Without keys, any key from loopback is accepted (the
//! other SQS tests run that way).

mod aws_support;
mod common;

use aws_support::{KEY_ID, SECRET, json, receive, sqs_client};
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
    let got = receive(&client, &url).await;
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

/// Now, or `offset_secs` from now, as `X-Amz-Date` wants it.
fn amz_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64;
    ferrymq::aws::sigv4::format_amz_date((now + offset_secs) as u64)
}

#[tokio::test]
async fn a_skewed_clock_is_refused_and_presigned_urls_verify() {
    let broker = keyed_broker().await;
    let addr = broker.listener("aws");
    let body = br#"{"QueueName":"skew"}"#;
    let send = |date: String| async move {
        let headers = aws_support::signed_json_headers(
            addr,
            SECRET,
            KEY_ID,
            "AmazonSQS.CreateQueue",
            body,
            &date,
        );
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        aws_support::post(addr, "/", &headers, body).await
    };
    let fresh = send(amz_date(0)).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let late = send(amz_date(-3600)).await;
    assert_eq!(late.status, 403, "{}", late.body);
    assert!(late.body.contains("Signature expired"), "{}", late.body);

    let path = aws_support::presigned_path(
        addr,
        SECRET,
        KEY_ID,
        "Action=ListQueues&Version=2012-11-05",
        &amz_date(0),
        300,
    );
    let listed = aws_support::get(addr, &path).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        listed.body.contains("/123456789012/skew</QueueUrl>"),
        "{}",
        listed.body
    );
    let tampered = aws_support::get(addr, &path.replace("ListQueues", "ListQueueZ")).await;
    assert_eq!(tampered.status, 403, "{}", tampered.body);
    let expired_path = aws_support::presigned_path(
        addr,
        SECRET,
        KEY_ID,
        "Action=ListQueues",
        &amz_date(-600),
        60,
    );
    assert_eq!(aws_support::get(addr, &expired_path).await.status, 403);
}
