//! SQS through the official Rust SDK (aws-sdk-sqs) against the real broker: every queue action, message
//! actions and their semantics (visibility, receipt handles, long polling, delays, batches, MD5 digests,
//! attribute types, dead-letter redrive, move tasks, FIFO deduplication and sequence numbers).

mod aws_support;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_support::{any_client, receive};
use common::TestBroker;
use md5::{Digest, Md5};

async fn start() -> (TestBroker, Client) {
    let broker = TestBroker::start().await;
    let client = any_client(broker.listener("aws"));
    (broker, client)
}

async fn create(client: &Client, name: &str, attrs: &[(QueueAttributeName, &str)]) -> String {
    aws_support::create_queue(client, name, attrs).await
}

/// A FIFO queue deduplicated by content, with `messages` (group, body) sent to it in order.
async fn fifo_with(client: &Client, name: &str, messages: &[(&str, &str)]) -> String {
    let url = create(
        client,
        name,
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "true"),
        ],
    )
    .await;
    for (group, body) in messages {
        client
            .send_message()
            .queue_url(&url)
            .message_group_id(*group)
            .message_body(*body)
            .send()
            .await
            .expect("send");
    }
    url
}

/// A plain SendMessage.
async fn send(client: &Client, url: &str, body: &str) {
    client
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

fn code<E: aws_sdk_sqs::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_owned()
}

#[tokio::test]
async fn queues_are_created_found_listed_and_deleted() {
    let (broker, client) = start().await;
    let url = create(&client, "orders", &[]).await;
    let addr = broker.listener("aws");
    assert_eq!(url, format!("http://{addr}/123456789012/orders"));
    create(&client, "orders-2", &[]).await;
    create(&client, "other", &[]).await;

    let got = client
        .get_queue_url()
        .queue_name("orders")
        .send()
        .await
        .expect("url");
    assert_eq!(got.queue_url(), Some(url.as_str()));
    let listed = client
        .list_queues()
        .queue_name_prefix("orders")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.queue_urls().len(), 2);
    let page = client
        .list_queues()
        .max_results(2)
        .send()
        .await
        .expect("page 1");
    assert_eq!(page.queue_urls().len(), 2);
    let token = page.next_token().expect("a next page").to_owned();
    let rest = client
        .list_queues()
        .max_results(2)
        .next_token(token)
        .send()
        .await
        .expect("page 2");
    assert_eq!(rest.queue_urls().len(), 1);
    assert!(rest.next_token().is_none());

    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete");
    let err = client
        .get_queue_url()
        .queue_name("orders")
        .send()
        .await
        .expect_err("gone");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "{err:?}"
    );
}

#[tokio::test]
async fn create_is_idempotent_only_with_the_same_attributes() {
    let (_broker, client) = start().await;
    let a = create(
        &client,
        "idem",
        &[(QueueAttributeName::VisibilityTimeout, "60")],
    )
    .await;
    let b = create(
        &client,
        "idem",
        &[(QueueAttributeName::VisibilityTimeout, "60")],
    )
    .await;
    assert_eq!(a, b);
    let err = client
        .create_queue()
        .queue_name("idem")
        .attributes(QueueAttributeName::VisibilityTimeout, "61")
        .send()
        .await
        .expect_err("different attributes");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_queue_name_exists()),
        "{err:?}"
    );
    let bad = client
        .create_queue()
        .queue_name("bad name!")
        .send()
        .await
        .expect_err("invalid name");
    assert_eq!(code(&bad), "InvalidParameterValue");
}

#[tokio::test]
async fn a_message_round_trips_with_exact_digests_and_typed_attributes() {
    let (_broker, client) = start().await;
    let url = create(&client, "typed", &[]).await;
    let attr = |t: &str, v: &str| {
        MessageAttributeValue::builder()
            .data_type(t)
            .string_value(v)
            .build()
            .expect("attr")
    };
    let binary = MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(Blob::new(vec![0u8, 1, 2, 255]))
        .build()
        .expect("binary attr");
    let sent = client
        .send_message()
        .queue_url(&url)
        .message_body("héllo wörld")
        .message_attributes("price", attr("Number.float", "1.50"))
        .message_attributes("name", attr("String", "widget"))
        .message_attributes("raw", binary)
        .send()
        .await
        .expect("send");
    assert_eq!(
        sent.md5_of_message_body(),
        Some(md5_hex("héllo wörld".as_bytes()).as_str())
    );
    let got = client
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let m = &got.messages()[0];
    assert_eq!(m.body(), Some("héllo wörld"));
    assert_eq!(m.message_id(), sent.message_id());
    assert_eq!(m.md5_of_body(), sent.md5_of_message_body());
    assert_eq!(
        m.md5_of_message_attributes(),
        sent.md5_of_message_attributes()
    );
    let attrs = m.message_attributes().expect("attributes");
    assert_eq!(attrs["price"].data_type(), "Number.float");
    assert_eq!(attrs["price"].string_value(), Some("1.50"));
    assert_eq!(
        attrs["raw"].binary_value().map(|b| b.as_ref().to_vec()),
        Some(vec![0u8, 1, 2, 255])
    );
    let system = m.attributes().expect("system attributes");
    assert_eq!(
        system[&MessageSystemAttributeName::ApproximateReceiveCount],
        "1"
    );
    assert!(system.contains_key(&MessageSystemAttributeName::SentTimestamp));
    assert!(system.contains_key(&MessageSystemAttributeName::SenderId));

    // Only the attributes asked for, and their digest over those alone.
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().expect("handle"))
        .visibility_timeout(0)
        .send()
        .await
        .expect("make visible");
    let again = client
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("na.*")
        .message_attribute_names("name")
        .send()
        .await
        .expect("receive again");
    let m2 = &again.messages()[0];
    let only: Vec<&String> = m2.message_attributes().expect("attrs").keys().collect();
    assert_eq!(only, vec!["name"]);
    assert_ne!(
        m2.receipt_handle(),
        m.receipt_handle(),
        "a new receipt handle per receive"
    );
}

#[tokio::test]
async fn visibility_timeout_hides_a_message_until_it_runs_out_or_is_changed() {
    let (_broker, client) = start().await;
    let url = create(&client, "vis", &[]).await;
    send(&client, &url, "m").await;
    let first = client
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(1)
        .send()
        .await
        .expect("receive");
    let handle = first.messages()[0]
        .receipt_handle()
        .expect("handle")
        .to_owned();
    let hidden = receive(&client, &url).await;
    assert!(hidden.messages().is_empty());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let back = client
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("visible again");
    let m = &back.messages()[0];
    assert_eq!(
        m.attributes().expect("attrs")[&MessageSystemAttributeName::ApproximateReceiveCount],
        "2"
    );
    // Made visible again, the message is no longer in flight: changing its visibility is refused.
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().expect("handle"))
        .visibility_timeout(0)
        .send()
        .await
        .expect("visible now");
    let not_inflight = client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(10)
        .send()
        .await
        .expect_err("not in flight");
    assert!(
        code(&not_inflight).contains("MessageNotInflight"),
        "{not_inflight:?}"
    );
    // Even visible, a received message is deleted by its (older) receipt handle.
    client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(&handle)
        .send()
        .await
        .expect("delete");
    let empty = receive(&client, &url).await;
    assert!(empty.messages().is_empty(), "deleted: {empty:?}");
    let bad = client
        .delete_message()
        .queue_url(&url)
        .receipt_handle("nonsense")
        .send()
        .await
        .expect_err("bad handle");
    assert!(
        bad.as_service_error()
            .is_some_and(|e| e.is_receipt_handle_is_invalid()),
        "{bad:?}"
    );
}

#[tokio::test]
async fn long_polling_returns_as_soon_as_a_message_arrives() {
    let (broker, client) = start().await;
    let url = create(&client, "poll", &[]).await;
    let sender = any_client(broker.listener("aws"));
    let send_url = url.clone();
    let sending = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&sender, &send_url, "late").await;
    });
    let got = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(20)
        .send()
        .await
        .expect("long poll");
    assert_eq!(got.messages()[0].body(), Some("late"));
    sending.await.expect("sender");
}

#[tokio::test]
async fn delayed_messages_stay_hidden_until_due() {
    let (_broker, client) = start().await;
    let url = create(&client, "delay", &[]).await;
    client
        .send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(1)
        .send()
        .await
        .expect("send");
    let early = receive(&client, &url).await;
    assert!(early.messages().is_empty());
    let due = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive");
    assert_eq!(due.messages()[0].body(), Some("later"));
}

#[tokio::test]
async fn batches_succeed_and_fail_entry_by_entry() {
    let (_broker, client) = start().await;
    let url = create(&client, "batch", &[]).await;
    let entry = |id: &str, body: &str| {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body(body)
            .build()
            .expect("entry")
    };
    let sent = client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("a", "one"))
        .entries(entry("b", "two"))
        .entries(entry("c", "bad \u{1} body"))
        .send()
        .await
        .expect("batch");
    assert_eq!(sent.successful().len(), 2);
    assert_eq!(sent.failed().len(), 1);
    assert_eq!(sent.failed()[0].id(), "c");
    assert_eq!(sent.failed()[0].code(), "InvalidMessageContents");
    let dup = client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("x", "1"))
        .entries(entry("x", "2"))
        .send()
        .await
        .expect_err("ids not distinct");
    assert!(
        dup.as_service_error()
            .is_some_and(|e| e.is_batch_entry_ids_not_distinct()),
        "{dup:?}"
    );

    let got = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["one", "two"]);
    let mut delete = client.delete_message_batch().queue_url(&url);
    for (i, m) in got.messages().iter().enumerate() {
        delete = delete.entries(
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle().expect("handle"))
                .build()
                .expect("entry"),
        );
    }
    delete = delete.entries(
        DeleteMessageBatchRequestEntry::builder()
            .id("bad")
            .receipt_handle("xyz")
            .build()
            .expect("entry"),
    );
    let deleted = delete.send().await.expect("delete batch");
    assert_eq!(deleted.successful().len(), 2);
    assert_eq!(deleted.failed()[0].code(), "ReceiptHandleIsInvalid");
    let counts = attributes(&client, &url).await;
    assert_eq!(counts["ApproximateNumberOfMessages"], "0");
    assert_eq!(counts["ApproximateNumberOfMessagesNotVisible"], "0");
}

async fn attributes(client: &Client, url: &str) -> HashMap<String, String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .expect("some attributes")
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn queue_attributes_are_set_read_and_counted() {
    let (_broker, client) = start().await;
    let url = create(&client, "attrs", &[(QueueAttributeName::DelaySeconds, "0")]).await;
    let all = attributes(&client, &url).await;
    assert_eq!(all["VisibilityTimeout"], "30");
    assert_eq!(all["MaximumMessageSize"], "1048576");
    assert_eq!(all["MessageRetentionPeriod"], "345600");
    assert_eq!(all["QueueArn"], "arn:aws:sqs:us-east-1:123456789012:attrs");
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "45")
        .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "2")
        .send()
        .await
        .expect("set");
    send(&client, &url, "a").await;
    send(&client, &url, "b").await;
    client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .expect("receive");
    let all = attributes(&client, &url).await;
    assert_eq!(all["VisibilityTimeout"], "45");
    assert_eq!(all["ReceiveMessageWaitTimeSeconds"], "2");
    assert_eq!(all["ApproximateNumberOfMessages"], "1");
    assert_eq!(all["ApproximateNumberOfMessagesNotVisible"], "1");
    let bad = client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "43201")
        .send()
        .await
        .expect_err("out of range");
    assert_eq!(code(&bad), "InvalidAttributeValue");
    let too_big = client
        .send_message()
        .queue_url(&url)
        .message_body("x".repeat(1_048_577))
        .send()
        .await
        .expect_err("too big");
    assert_eq!(code(&too_big), "InvalidParameterValue");
}

#[tokio::test]
async fn purge_empties_a_queue_once_a_minute() {
    let (_broker, client) = start().await;
    let url = create(&client, "purge", &[]).await;
    send(&client, &url, "a").await;
    client
        .purge_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("purge");
    assert!(
        client
            .receive_message()
            .queue_url(&url)
            .send()
            .await
            .expect("receive")
            .messages()
            .is_empty()
    );
    let again = client
        .purge_queue()
        .queue_url(&url)
        .send()
        .await
        .expect_err("too soon");
    assert!(
        again
            .as_service_error()
            .is_some_and(|e| e.is_purge_queue_in_progress()),
        "{again:?}"
    );
}

#[tokio::test]
async fn tags_and_permissions_are_kept() {
    let (_broker, client) = start().await;
    let url = create(&client, "tagged", &[]).await;
    client
        .tag_queue()
        .queue_url(&url)
        .tags("team", "a")
        .tags("env", "dev")
        .send()
        .await
        .expect("tag");
    client
        .untag_queue()
        .queue_url(&url)
        .tag_keys("env")
        .send()
        .await
        .expect("untag");
    let tags = client
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .expect("tags");
    let tags = tags.tags().expect("tags");
    assert_eq!(tags.len(), 1);
    assert_eq!(tags["team"], "a");
    client
        .add_permission()
        .queue_url(&url)
        .label("read")
        .aws_account_ids("111122223333")
        .actions("ReceiveMessage")
        .send()
        .await
        .expect("add permission");
    let policy = attributes(&client, &url).await["Policy"].clone();
    assert!(policy.contains("\"Sid\":\"read\""), "{policy}");
    client
        .remove_permission()
        .queue_url(&url)
        .label("read")
        .send()
        .await
        .expect("remove");
    let err = client
        .remove_permission()
        .queue_url(&url)
        .label("read")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&err), "InvalidParameterValue");
}

#[tokio::test]
async fn messages_received_too_often_move_to_the_dead_letter_queue_and_back() {
    let (_broker, client) = start().await;
    let dlq = create(&client, "dead", &[]).await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dead","maxReceiveCount":"1"}"#;
    let src = create(
        &client,
        "work",
        &[(QueueAttributeName::RedrivePolicy, policy)],
    )
    .await;
    send(&client, &src, "poison").await;
    let first = client
        .receive_message()
        .queue_url(&src)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive 1");
    assert_eq!(first.messages().len(), 1);
    let second = receive(&client, &src).await;
    assert!(second.messages().is_empty(), "moved on its second receive");
    let dead = client
        .receive_message()
        .queue_url(&dlq)
        .visibility_timeout(0)
        .send()
        .await
        .expect("dlq receive");
    assert_eq!(dead.messages()[0].body(), Some("poison"));
    let sources = client
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .expect("sources");
    assert_eq!(sources.queue_urls(), std::slice::from_ref(&src));

    let task = client
        .start_message_move_task()
        .source_arn("arn:aws:sqs:us-east-1:123456789012:dead")
        .send()
        .await
        .expect("start move");
    assert!(task.task_handle().is_some());
    let back = client
        .receive_message()
        .queue_url(&src)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("moved back");
    assert_eq!(back.messages()[0].body(), Some("poison"));
    let tasks = client
        .list_message_move_tasks()
        .source_arn("arn:aws:sqs:us-east-1:123456789012:dead")
        .send()
        .await
        .expect("list tasks");
    assert_eq!(tasks.results().len(), 1);
}

#[tokio::test]
async fn fifo_queues_deduplicate_and_number_their_messages() {
    let (_broker, client) = start().await;
    let url = create(
        &client,
        "jobs.fifo",
        &[(QueueAttributeName::FifoQueue, "true")],
    )
    .await;
    let send = |body: &'static str, dedup: &'static str| {
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id("g1")
            .message_deduplication_id(dedup)
            .send()
    };
    let a = send("first", "d1").await.expect("send a");
    let b = send("first again", "d1").await.expect("duplicate");
    let c = send("second", "d2").await.expect("send c");
    assert_eq!(
        a.message_id(),
        b.message_id(),
        "a duplicate answers the first send"
    );
    assert!(c.sequence_number() > a.sequence_number());
    let missing_group = client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .send()
        .await
        .expect_err("no group");
    assert_eq!(code(&missing_group), "MissingParameter");
    let got = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["first", "second"]);
    let attrs = got.messages()[0].attributes().expect("attrs");
    assert_eq!(attrs[&MessageSystemAttributeName::MessageGroupId], "g1");
    assert_eq!(
        attrs[&MessageSystemAttributeName::MessageDeduplicationId],
        "d1"
    );
    assert_eq!(
        attrs
            .get(&MessageSystemAttributeName::SequenceNumber)
            .map(String::as_str),
        a.sequence_number()
    );
}

#[tokio::test]
async fn a_fifo_group_is_locked_while_one_of_its_messages_is_in_flight() {
    let (_broker, client) = start().await;
    let url = fifo_with(
        &client,
        "groups.fifo",
        &[("g1", "a"), ("g1", "b"), ("g2", "c")],
    )
    .await;
    let first = receive(&client, &url).await;
    assert_eq!(first.messages()[0].body(), Some("a"));
    let others = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive while g1 is locked");
    let bodies: Vec<&str> = others.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["c"], "g1's next message waits for a");
    client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(first.messages()[0].receipt_handle().expect("handle"))
        .send()
        .await
        .expect("delete a");
    let next = receive(&client, &url).await;
    assert_eq!(next.messages()[0].body(), Some("b"));
}

#[tokio::test]
async fn a_fifo_receive_retried_with_its_attempt_id_gets_the_same_messages_and_handles() {
    let (_broker, client) = start().await;
    let url = fifo_with(
        &client,
        "attempts.fifo",
        &[("g", "a"), ("g", "b"), ("g", "c")],
    )
    .await;
    let attempt = |id: &'static str| {
        client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(2)
            .receive_request_attempt_id(id)
            .send()
    };
    let handles = |out: &aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput| {
        out.messages()
            .iter()
            .map(|m| {
                (
                    m.body().unwrap_or_default().to_owned(),
                    m.receipt_handle().unwrap_or_default().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = handles(&attempt("try-1").await.expect("first receive"));
    assert_eq!(
        first.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    // The group is locked: a receive without the attempt id gets nothing.
    assert!(receive(&client, &url).await.messages().is_empty());
    // The lost answer, asked for again: the same messages with the same receipt handles.
    let again = handles(&attempt("try-1").await.expect("retry"));
    assert_eq!(again, first);
    // Another attempt id is a new receive (and the group is still locked).
    assert!(
        attempt("try-2")
            .await
            .expect("other id")
            .messages()
            .is_empty()
    );
    // Once one of its messages is deleted the attempt is spent: a retry receives anew.
    client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(&first[0].1)
        .send()
        .await
        .expect("delete a");
    assert!(
        attempt("try-1")
            .await
            .expect("retry after a delete")
            .messages()
            .is_empty()
    );
    let bad = client
        .receive_message()
        .queue_url(&url)
        .receive_request_attempt_id("not valid")
        .send()
        .await
        .expect_err("an id with a space");
    assert_eq!(
        bad.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidParameterValue")
    );
}

#[tokio::test]
async fn each_region_is_a_namespace_of_its_own() {
    let (broker, home) = start().await;
    let west = aws_support::sqs_client_in(broker.listener("aws"), "AKIDANY", "x", "us-west-2");
    let url = west
        .create_queue()
        .queue_name("regional")
        .send()
        .await
        .expect("create in us-west-2")
        .queue_url
        .expect("url");
    west.send_message()
        .queue_url(&url)
        .message_body("west")
        .send()
        .await
        .expect("send");
    let listed = west.list_queues().send().await.expect("list west");
    assert_eq!(listed.queue_urls(), std::slice::from_ref(&url));
    assert!(
        home.list_queues()
            .send()
            .await
            .expect("list home")
            .queue_urls()
            .is_empty()
    );
    let missing = home
        .get_queue_url()
        .queue_name("regional")
        .send()
        .await
        .expect_err("not at home");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "{missing:?}"
    );
    let attrs = west
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes");
    assert_eq!(
        attrs.attributes().expect("attrs")[&QueueAttributeName::QueueArn],
        "arn:aws:sqs:us-west-2:123456789012:regional"
    );
    let got = receive(&west, &url).await;
    assert_eq!(got.messages()[0].body(), Some("west"));
}
