//! An SQS queue is a core queue: AMQP publishes to the default exchange with the queue's name are received by
//! SQS ReceiveMessage (headers as message attributes), SQS sends are consumed over AMQP (attributes as
//! headers), and queues, their attributes and their messages survive a restart of a journaled broker; a
//! delayed send is held from every consumer until it is due, across a restart too.

mod aws_support;
mod common;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use aws_support::{any_client, create_queue, receive};
use common::TestBroker;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};

#[tokio::test]
async fn amqp_publishes_are_received_over_sqs_with_headers_as_attributes() {
    let broker = TestBroker::start().await;
    let client = any_client(broker.listener("aws"));
    let url = create_queue(&client, "shared", &[]).await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("colour"),
        AMQPValue::LongString("blue".into()),
    );
    headers.insert(ShortString::from("count"), AMQPValue::LongInt(7));
    ch.basic_publish(
        "".into(),
        "shared".into(),
        BasicPublishOptions::default(),
        b"from amqp",
        BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("publish")
    .await
    .expect("confirmed");
    let got = client
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let m = &got.messages()[0];
    assert_eq!(m.body(), Some("from amqp"));
    let attrs = m.message_attributes().expect("attributes");
    assert_eq!(attrs["colour"].data_type(), "String");
    assert_eq!(attrs["colour"].string_value(), Some("blue"));
    assert_eq!(attrs["count"].data_type(), "Number");
    assert_eq!(attrs["count"].string_value(), Some("7"));
    assert!(m.message_id().is_some_and(|id| !id.is_empty()));
    assert!(m.md5_of_message_attributes().is_some());
}

#[tokio::test]
async fn sqs_sends_are_consumed_over_amqp_with_attributes_as_headers() {
    let broker = TestBroker::start().await;
    let client = any_client(broker.listener("aws"));
    let url = create_queue(&client, "to-amqp", &[]).await;
    let attr = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("v")
        .build()
        .expect("attr");
    client
        .send_message()
        .queue_url(&url)
        .message_body("from sqs")
        .message_attributes("k", attr)
        .send()
        .await
        .expect("send");
    let (_conn, ch) = broker.channel().await;
    let got = ch
        .basic_get("to-amqp".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message");
    assert_eq!(got.delivery.data, b"from sqs");
    let props = &got.delivery.properties;
    assert_eq!(
        props.delivery_mode(),
        &Some(2),
        "SQS messages are persistent"
    );
    let headers = props.headers().as_ref().expect("headers");
    let k = headers
        .inner()
        .get(&ShortString::from("k"))
        .expect("attribute k as a header");
    assert_eq!(k, &AMQPValue::LongString("v".into()));
}

#[tokio::test]
async fn queues_attributes_and_messages_survive_a_restart() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let url = client
        .create_queue()
        .queue_name("durable")
        .attributes(QueueAttributeName::VisibilityTimeout, "77")
        .tags("team", "core")
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    client
        .send_message()
        .queue_url(&url)
        .message_body("kept")
        .send()
        .await
        .expect("send");
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    let url = client
        .get_queue_url()
        .queue_name("durable")
        .send()
        .await
        .expect("still there")
        .queue_url
        .expect("url");
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .expect("attributes");
    assert_eq!(
        attrs.attributes().expect("attrs")[&QueueAttributeName::VisibilityTimeout],
        "77"
    );
    let tags = client
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .expect("tags");
    assert_eq!(tags.tags().expect("tags")["team"], "core");
    let got = receive(&client, &url).await;
    assert_eq!(got.messages()[0].body(), Some("kept"));
}

/// The SQS queue's ApproximateNumberOfMessages and ApproximateNumberOfMessagesDelayed.
async fn visible_and_delayed(client: &aws_sdk_sqs::Client, url: &str) -> (String, String) {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("attributes");
    let attrs = attrs.attributes().expect("attrs");
    (
        attrs[&QueueAttributeName::ApproximateNumberOfMessages].clone(),
        attrs[&QueueAttributeName::ApproximateNumberOfMessagesDelayed].clone(),
    )
}

#[tokio::test]
async fn a_delayed_sqs_message_is_held_from_amqp_consumers_too_and_across_a_restart() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let url = create_queue(&client, "later", &[]).await;
    let sent = std::time::Instant::now();
    for (body, delay) in [("now", 0), ("in three seconds", 3)] {
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .expect("send");
    }
    assert_eq!(
        visible_and_delayed(&client, &url).await,
        ("1".into(), "1".into())
    );
    // Restarted while the delay runs: the message is still held, then delivered when due.
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    let (_conn, ch) = broker.channel().await;
    let get = |ch: lapin::Channel| async move {
        ch.basic_get("later".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .map(|m| m.delivery.data)
    };
    assert_eq!(get(ch.clone()).await.as_deref(), Some(&b"now"[..]));
    assert_eq!(get(ch.clone()).await, None, "delivered before its delay");
    assert_eq!(
        visible_and_delayed(&client, &url).await,
        ("0".into(), "1".into())
    );
    let deadline = sent + std::time::Duration::from_secs(30);
    let late = loop {
        if let Some(body) = get(ch.clone()).await {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(late, b"in three seconds");
    assert!(sent.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(
        visible_and_delayed(&client, &url).await,
        ("0".into(), "0".into())
    );
}

#[tokio::test]
async fn a_delayed_message_is_received_by_a_short_poll_as_soon_as_it_is_due_on_a_journaled_broker()
{
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let url = create_queue(&client, "soon", &[]).await;
    client
        .send_message()
        .queue_url(&url)
        .message_body("one second")
        .delay_seconds(1)
        .send()
        .await
        .expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // No WaitTimeSeconds: the body must be at hand when the message falls due, not still on disk.
    let got = receive(&client, &url).await;
    assert_eq!(got.messages().len(), 1, "{got:?}");
    assert_eq!(got.messages()[0].body(), Some("one second"));
}

/// A queue keeping messages 2 s (moto's range, 1 s and up, is accepted, so a test need not wait AWS's 60 s
/// minimum), with `n` numbered messages sent to it.
async fn short_lived(client: &aws_sdk_sqs::Client, name: &str, n: usize) -> String {
    let url = create_queue(
        client,
        name,
        &[(QueueAttributeName::MessageRetentionPeriod, "2")],
    )
    .await;
    send_numbered(client, &url, n).await;
    url
}

/// Sends `message 0` to `message {n-1}` to the queue at `url`.
async fn send_numbered(client: &aws_sdk_sqs::Client, url: &str, n: usize) {
    for i in 0..n {
        client
            .send_message()
            .queue_url(url)
            .message_body(format!("message {i}"))
            .send()
            .await
            .expect("send");
    }
}

#[tokio::test]
async fn messages_past_their_retention_leave_the_queue_unread_even_across_a_restart() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let short = short_lived(&client, "short-lived", 20).await;
    let long = create_queue(&client, "long-lived", &[]).await;
    send_numbered(&client, &long, 20).await;
    assert_eq!(visible_and_delayed(&client, &short).await.0, "20");
    // The deadline is journaled with the message: a restart does not give it a new lease of life.
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Nothing receives from the queue: the count drops because the queue itself drops them.
    while visible_and_delayed(&client, &short).await.0 != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "messages past their retention are still counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(visible_and_delayed(&client, &long).await.0, "20");
    assert!(receive(&client, &short).await.messages().is_empty());
}

#[tokio::test]
async fn the_purge_interval_holds_across_a_restart() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let url = create_queue(&client, "purged", &[]).await;
    client
        .purge_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("first purge");
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    let again = client.purge_queue().queue_url(&url).send().await;
    let err = again.expect_err("a second purge within 60 s, after a restart");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_purge_queue_in_progress()),
        "{err:?}"
    );
    // Another queue is not held back by it.
    let other = create_queue(&client, "other", &[]).await;
    client
        .purge_queue()
        .queue_url(&other)
        .send()
        .await
        .expect("purge of another queue");
}

/// Sends `body` to a FIFO queue; answers (MessageId, SequenceNumber).
async fn send_fifo(
    client: &aws_sdk_sqs::Client,
    url: &str,
    group: &str,
    dedup: Option<&str>,
    body: &str,
) -> (String, String) {
    let sent = client
        .send_message()
        .queue_url(url)
        .message_group_id(group)
        .set_message_deduplication_id(dedup.map(str::to_owned))
        .message_body(body)
        .send()
        .await
        .expect("send");
    (
        sent.message_id().expect("id").to_owned(),
        sent.sequence_number().expect("sequence").to_owned(),
    )
}

#[tokio::test]
async fn a_fifo_send_retried_across_a_restart_is_still_a_duplicate() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let by_id = create_queue(
        &client,
        "orders.fifo",
        &[(QueueAttributeName::FifoQueue, "true")],
    )
    .await;
    let by_body = create_queue(
        &client,
        "bodies.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "true"),
        ],
    )
    .await;
    let per_group = create_queue(
        &client,
        "groups.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::DeduplicationScope, "messageGroup"),
            (QueueAttributeName::FifoThroughputLimit, "perMessageGroupId"),
        ],
    )
    .await;
    let mut first = Vec::new();
    for i in 0..200 {
        let dedup = format!("order-{i}");
        first.push(send_fifo(&client, &by_id, "g", Some(&dedup), &format!("order {i}")).await);
    }
    let body_first = send_fifo(&client, &by_body, "g", None, "same body").await;
    let group_first = send_fifo(&client, &per_group, "a", Some("d"), "in a").await;

    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    for (i, earlier) in first.iter().enumerate() {
        let dedup = format!("order-{i}");
        let again = send_fifo(&client, &by_id, "g", Some(&dedup), &format!("order {i}")).await;
        assert_eq!(&again, earlier, "send {i} retried after the restart");
    }
    let fresh = send_fifo(&client, &by_id, "g", Some("order-new"), "new").await;
    assert!(fresh.1 > first[199].1, "sequence numbers keep increasing");
    assert_eq!(visible_and_delayed(&client, &by_id).await.0, "201");
    assert_eq!(
        send_fifo(&client, &by_body, "g", None, "same body").await,
        body_first
    );
    assert_eq!(visible_and_delayed(&client, &by_body).await.0, "1");
    // Per group: the same id in the same group is a duplicate, in another group it is not.
    assert_eq!(
        send_fifo(&client, &per_group, "a", Some("d"), "in a").await,
        group_first
    );
    send_fifo(&client, &per_group, "b", Some("d"), "in b").await;
    assert_eq!(visible_and_delayed(&client, &per_group).await.0, "2");
}

#[tokio::test]
async fn a_message_move_task_resumes_after_a_restart_and_moves_everything() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let dead = create_queue(&client, "dead-letters", &[]).await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dead-letters","maxReceiveCount":"3"}"#;
    let work = create_queue(
        &client,
        "work",
        &[(QueueAttributeName::RedrivePolicy, policy)],
    )
    .await;
    let n = 60;
    for i in 0..n {
        client
            .send_message()
            .queue_url(&dead)
            .message_body(format!("dead {i}"))
            .send()
            .await
            .expect("send");
    }
    let source_arn = "arn:aws:sqs:us-east-1:123456789012:dead-letters";
    // 20 a second: the task is still running when the broker restarts.
    let handle = client
        .start_message_move_task()
        .source_arn(source_arn)
        .max_number_of_messages_per_second(20)
        .send()
        .await
        .expect("start")
        .task_handle
        .expect("handle");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    let tasks = client
        .list_message_move_tasks()
        .source_arn(source_arn)
        .send()
        .await
        .expect("list after the restart");
    assert_eq!(tasks.results().len(), 1, "{tasks:?}");
    assert_eq!(tasks.results()[0].task_handle(), Some(handle.as_str()));
    assert_eq!(tasks.results()[0].status(), Some("RUNNING"));
    // Finished: listed as completed, every message moved (the one in flight when the broker stopped may
    // have been copied before its original was deleted: moves are at least once), none left behind.
    let status = |client: aws_sdk_sqs::Client| async move {
        let tasks = client
            .list_message_move_tasks()
            .source_arn(source_arn)
            .send()
            .await
            .expect("list");
        tasks
            .results()
            .first()
            .and_then(|t| t.status().map(str::to_owned))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while status(client.clone()).await.as_deref() != Some("COMPLETED") {
        assert!(std::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(visible_and_delayed(&client, &dead).await.0, "0");
    let moved: usize = visible_and_delayed(&client, &work)
        .await
        .0
        .parse()
        .expect("count");
    assert!((n..=n + 1).contains(&moved), "{moved} moved");
    // A restart does not start a finished task again.
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    assert_eq!(status(client.clone()).await, None, "nothing resumed");
    let mut bodies = std::collections::BTreeSet::new();
    loop {
        let got = client
            .receive_message()
            .queue_url(&work)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if got.messages().is_empty() {
            break;
        }
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
    let want: std::collections::BTreeSet<String> = (0..n).map(|i| format!("dead {i}")).collect();
    assert_eq!(bodies, want);
}

#[tokio::test]
async fn a_changed_retention_applies_to_the_messages_already_queued() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let raised = short_lived(&client, "raised", 10).await;
    let lowered = create_queue(&client, "lowered", &[]).await;
    send_numbered(&client, &lowered, 10).await;
    let set = |url: &str, secs: &str| {
        client
            .set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::MessageRetentionPeriod, secs)
            .send()
    };
    set(&raised, "600").await.expect("raise");
    set(&lowered, "1").await.expect("lower");
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    // Nothing received: the queue itself kept the first ten and dropped the others.
    assert_eq!(visible_and_delayed(&client, &raised).await.0, "10");
    assert_eq!(visible_and_delayed(&client, &lowered).await.0, "0");
}

#[tokio::test]
async fn a_raised_retention_holds_for_the_queued_messages_across_a_restart() {
    let broker = TestBroker::journal().await;
    let client = any_client(broker.listener("aws"));
    let url = short_lived(&client, "kept-longer", 10).await;
    let sent = std::time::Instant::now();
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "600")
        .send()
        .await
        .expect("raise");
    // The messages were journaled with a deadline 2 s after their send; the raise comes back with the queue.
    let broker = broker.restart().await;
    let client = any_client(broker.listener("aws"));
    tokio::time::sleep(std::time::Duration::from_millis(3000).saturating_sub(sent.elapsed())).await;
    assert_eq!(visible_and_delayed(&client, &url).await.0, "10");
    let got = receive(&client, &url).await;
    assert_eq!(got.messages().len(), 1, "a receive finds them too");
}
