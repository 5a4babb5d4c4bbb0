//! The open-file limit, against the real binary started under `prlimit --nofile=1024:1024` (hard limit too,
//! so the broker cannot raise it): 1,100 sockets that never log in used to exhaust the descriptors, after
//! which the journal could not open a file and refused every persistent publish and durable declare (541)
//! until a restart. The broker now fits its connection budgets under the limit, keeping descriptors for the
//! store, so the journal keeps working during the flood and after it.

mod common;

use std::time::Duration;

use common::BrokerProcess;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::net::TcpStream;

const SILENT_SOCKETS: usize = 1_100;

/// This test process needs more descriptors than the broker gets: raise its own soft limit.
fn raise_own_limit() {
    let limit = getrlimit(Resource::Nofile);
    let needed = (SILENT_SOCKETS as u64) * 2;
    assert!(
        limit.maximum.is_none_or(|hard| hard >= needed),
        "this test needs a hard open-file limit of at least {needed}, have {limit:?}"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .expect("raise the soft limit to the hard one");
}

/// Declare a durable queue and publish one persistent message to it with a confirm; both touch the journal.
async fn durable_round(ch: &Channel, round: u32) {
    ch.queue_declare(
        format!("durable-{round}").as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("durable queue.declare");
    let confirm = ch
        .basic_publish(
            "".into(),
            format!("durable-{round}").as_str().into(),
            BasicPublishOptions::default(),
            b"persistent",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirm");
    assert!(
        matches!(confirm, Confirmation::Ack(None)),
        "round {round}: {confirm:?}"
    );
}

#[tokio::test]
async fn silent_sockets_past_the_open_file_limit_leave_the_journal_working() {
    raise_own_limit();
    let broker = BrokerProcess::start_under(&["prlimit", "--nofile=1024:1024"], &[]);
    assert!(
        broker.logs().contains("lowering them"),
        "the clamp is logged:\n{}",
        broker.logs()
    );

    let mut silent = Vec::with_capacity(SILENT_SOCKETS);
    for _ in 0..SILENT_SOCKETS {
        silent.push(
            TcpStream::connect(broker.amqp_addr())
                .await
                .expect("connect"),
        );
    }
    let conn = tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default()),
    )
    .await
    .expect("connect in time")
    .expect("a real client gets in during the flood");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    durable_round(&ch, 1).await;

    drop(silent);
    tokio::time::sleep(Duration::from_millis(200)).await;
    durable_round(&ch, 2).await;
    assert!(
        !broker.logs().contains("Too many open files"),
        "no EMFILE reached the store:\n{}",
        broker.logs()
    );
}
