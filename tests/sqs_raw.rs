//! SQS and STS over raw HTTP: Query-protocol form posts and their XML replies (what older SDKs and kombu send),
//! and bad input no SDK sends: malformed JSON, XML and forms, unknown actions and targets, oversized bodies.
//! Each gets AWS's exact error envelope and status, and the broker keeps serving.

mod aws_support;
mod common;

use aws_support::{json, post, query};
use common::TestBroker;

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text
        .find(open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("{open} in {text}"));
    let end = text[start..]
        .find(close)
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("{close} in {text}"));
    &text[start..end]
}

#[tokio::test]
async fn query_forms_create_send_and_receive_with_xml_replies() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("aws");
    let created = query(addr, "Action=CreateQueue&QueueName=legacy&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=40&Version=2012-11-05").await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.header("content-type"), Some("text/xml"));
    let url = between(&created.body, "<QueueUrl>", "</QueueUrl>").to_owned();
    assert_eq!(url, format!("http://{addr}/123456789012/legacy"));
    assert!(
        created
            .body
            .contains("<CreateQueueResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">")
    );
    assert!(created.body.contains("<ResponseMetadata><RequestId>"));

    let form = format!(
        "Action=SendMessage&QueueUrl={}&MessageBody=hello%20world&MessageAttribute.1.Name=n&MessageAttribute.1.Value.DataType=Number&MessageAttribute.1.Value.StringValue=42",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let sent = query(addr, &form).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(
        between(&sent.body, "<MD5OfMessageBody>", "</MD5OfMessageBody>"),
        "5eb63bbbe01eeed093cb22bb8f5acdc3"
    );

    // Posting to the queue URL's path names the queue, as the oldest clients do.
    let got = post(
        addr,
        "/123456789012/legacy",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=All",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(between(&got.body, "<Body>", "</Body>"), "hello world");
    assert!(got.body.contains("<MessageAttribute><Name>n</Name><Value><DataType>Number</DataType><StringValue>42</StringValue></Value></MessageAttribute>"), "{}", got.body);
    assert!(
        got.body.contains(
            "<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>"
        ),
        "{}",
        got.body
    );

    let attrs = query(addr, "Action=GetQueueAttributes&QueueUrl=%2F123456789012%2Flegacy&AttributeName.1=VisibilityTimeout").await;
    assert!(
        attrs
            .body
            .contains("<Attribute><Name>VisibilityTimeout</Name><Value>40</Value></Attribute>"),
        "{}",
        attrs.body
    );
}

#[tokio::test]
async fn errors_have_the_query_envelope() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("aws");
    let missing = query(addr, "Action=GetQueueUrl&QueueName=nope").await;
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("<ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error><Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>"), "{}", missing.body);
    assert!(missing.body.contains("<RequestId>"));
    let unknown = query(addr, "Action=FlyToTheMoon").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(between(&unknown.body, "<Code>", "</Code>"), "InvalidAction");
    let no_action = query(addr, "QueueName=x").await;
    assert_eq!(
        between(&no_action.body, "<Code>", "</Code>"),
        "MissingParameter"
    );
    let malformed = query(
        addr,
        "Action=ReceiveMessage&QueueUrl=%2Fa%2Fb&AttributeName.one=All",
    )
    .await;
    assert_eq!(
        between(&malformed.body, "<Code>", "</Code>"),
        "MalformedQueryString"
    );
    let not_utf8 = post(
        addr,
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"Action=\xff\xfe",
    )
    .await;
    assert_eq!(not_utf8.status, 400);
}

#[tokio::test]
async fn json_errors_carry_type_and_query_error_header() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("aws");
    let missing = json(addr, "GetQueueUrl", r#"{"QueueName":"nope"}"#).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(
        missing.header("x-amzn-query-error"),
        Some("AWS.SimpleQueueService.NonExistentQueue;Sender")
    );
    let body: serde_json::Value = serde_json::from_str(&missing.body).expect("JSON error body");
    assert_eq!(body["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    assert!(missing.header("x-amzn-requestid").is_some());

    let malformed = json(addr, "CreateQueue", "{\"QueueName\": ").await;
    assert_eq!(malformed.status, 400);
    let body: serde_json::Value = serde_json::from_str(&malformed.body).expect("JSON error body");
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#SerializationException"
    );
    let not_object = json(addr, "CreateQueue", "[1,2]").await;
    assert_eq!(not_object.status, 400);
    let unknown = json(addr, "FlyToTheMoon", "{}").await;
    let body: serde_json::Value = serde_json::from_str(&unknown.body).expect("JSON error body");
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    let other_service = post(
        addr,
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.ListTables")],
        b"{}",
    )
    .await;
    assert_eq!(other_service.status, 400);

    // The broker still serves.
    let ok = json(addr, "CreateQueue", r#"{"QueueName":"still-here"}"#).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn oversized_requests_are_refused_before_they_are_read() {
    let broker = TestBroker::with(|c| c.aws.max_request_bytes = 1024 * 1024).await;
    let addr = broker.listener("aws");
    let big = vec![b'a'; 1024 * 1024 + 1];
    let refused = post(addr, "/", &[("X-Amz-Target", "AmazonSQS.ListQueues")], &big).await;
    assert_eq!(refused.status, 413);
    let body: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON error body");
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#RequestEntityTooLarge"
    );
    let ok = json(addr, "ListQueues", "{}").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn sts_get_caller_identity_answers_the_account() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("aws");
    let me = query(addr, "Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(me.body.contains(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    ));
    assert_eq!(between(&me.body, "<Account>", "</Account>"), "123456789012");
}

#[tokio::test]
async fn idle_keep_alive_connections_beyond_the_http_limit_do_not_lock_clients_out() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("aws");
    // Held open and silent, as an SDK's pooled keep-alive connections are between requests: more than the
    // health listener's 64, fewer than `aws.max_connections`.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        json(addr, "ListQueues", "{}"),
    )
    .await
    .expect("a new client is answered while 200 connections sit idle");
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(idle);
}
