//! Journal recovery and disk headroom, end to end with real clients: the real
//! binary restarts on a journal of hundreds of segments under a low open-file limit, and `/health/ready` says
//! 503 while publishers are blocked for disk space.

mod common;

use common::{BrokerProcess, TestBroker, http_get};
use ferrymq::config::StoreKind;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

const QUEUE: &str = "many-segments";
const MESSAGES: u32 = 200;

async fn declare(url: &str) -> (Connection, lapin::Channel, u32) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let q = ch
        .queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await
        .expect("queue.declare");
    (conn, ch, q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_hundreds_of_segments_reopens_under_an_open_file_limit_of_64() {
    let config_dir = tempfile::tempdir().expect("config dir");
    let config = config_dir.path().join("ferrymq.toml");
    // 4 KiB segments: every 3000-byte message gets a segment of its own.
    std::fs::write(
        &config,
        "[store]\nkind = \"journal\"\nsegment_size = 4096\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 temp path").to_owned();
    let mut broker = BrokerProcess::start_with(&["--config", &config]);
    {
        let (_conn, ch, _) = declare(&broker.amqp_url()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        for seq in 0..MESSAGES {
            let confirm = ch
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    &vec![(seq % 251) as u8; 3000],
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("basic.publish");
            assert!(confirm.await.expect("confirm").is_ack());
        }
    }
    assert!(broker.terminate().success());
    let store = broker.data_dir().join("store");
    let segments = std::fs::read_dir(&store)
        .expect("store dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert!(segments >= MESSAGES as usize, "{segments} segments");

    broker.restart_under(&["prlimit", "--nofile=64:64"]);
    let (_conn, _ch, count) = declare(&broker.amqp_url()).await;
    assert_eq!(count, MESSAGES, "messages recovered under ulimit -n 64");
}

#[tokio::test]
async fn ready_says_503_while_publishers_are_blocked_for_disk() {
    let broker = TestBroker::with(|c| {
        c.store.kind = StoreKind::Journal;
        // No disk has this much free: publishers are blocked from the start.
        c.store.disk_low_water = u64::MAX / 4;
    })
    .await;
    let (status, body) = http_get(broker.http_addr(), "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk"), "{body}");
    assert_eq!(http_get(broker.http_addr(), "/health/live").await.0, 200);
}
