//! Connection limits against the real broker: over `amqp.max_connections` a client is refused in AMQP's own
//! words (connection.close 530 NOT_ALLOWED on connection.open, RabbitMQ's text) and counted, and sockets
//! that never log in cannot hold the slots a real client needs (`amqp.max_handshakes`: the oldest
//! unauthenticated connection makes room for a new one).

mod common;

use std::time::Duration;

use common::TestBroker;
use ferrymq::config::VhostLimits;
use lapin::{Connection, ConnectionProperties};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(broker: &TestBroker) -> lapin::Result<Connection> {
    tokio::time::timeout(
        WAIT,
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default()),
    )
    .await
    .expect("the broker answers within the wait")
}

#[tokio::test]
async fn over_max_connections_open_is_refused_with_530_and_counted() {
    let broker = TestBroker::with(|c| c.amqp.max_connections = 2).await;
    let first = connect(&broker).await.expect("first connection");
    let _second = connect(&broker).await.expect("second connection");

    let refused = connect(&broker)
        .await
        .expect_err("a third is over the limit");
    let text = format!("{refused:?}");
    assert!(
        text.contains("connection refused: node connection limit (2) is reached"),
        "{text}"
    );
    assert!(
        text.contains("NOTALLOWED") || text.contains("530"),
        "{text}"
    );
    let stats = broker
        .server()
        .connection_stats("amqp")
        .expect("amqp stats");
    assert_eq!((stats.open, stats.refused), (2, 1));

    first.close(200, "bye".into()).await.expect("close");
    let mut third = None;
    for _ in 0..50 {
        if let Ok(conn) = connect(&broker).await {
            third = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "a closed connection gives its slot back");
}

#[tokio::test]
async fn silent_sockets_do_not_lock_out_a_real_client() {
    let broker = TestBroker::with(|c| {
        c.amqp.max_connections = 200;
        c.amqp.max_handshakes = 50;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(
            TcpStream::connect(broker.amqp_addr())
                .await
                .expect("connect"),
        );
    }

    let conn = connect(&broker)
        .await
        .expect("a real client gets in past 200 silent sockets");
    let channel = conn.create_channel().await.expect("and works");
    drop(channel);

    let stats = broker
        .server()
        .connection_stats("amqp")
        .expect("amqp stats");
    assert!(stats.evicted >= 150, "{stats:?}");
    assert!(stats.handshaking <= 50, "{stats:?}");
    let mut oldest = silent.remove(0);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, oldest.read(&mut buf))
        .await
        .expect("the oldest silent socket was closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn user_and_vhost_connection_limits_refuse_with_rabbitmq_texts() {
    let broker = TestBroker::with(|c| {
        c.limits.max_connections_per_user = 2;
        c.limits.vhosts.push(VhostLimits {
            name: "/".into(),
            max_connections: Some(1),
            max_queues: None,
        });
    })
    .await;
    let _first = connect(&broker).await.expect("first connection");
    let refused = connect(&broker).await.expect_err("the vhost holds one");
    let text = format!("{refused:?}");
    assert!(
        text.contains(
            "access to vhost '/' refused for user 'guest': connection limit (1) is reached"
        ),
        "{text}"
    );
    drop(_first);

    let broker = TestBroker::with(|c| c.limits.max_connections_per_user = 1).await;
    let _first = connect(&broker).await.expect("first connection");
    let refused = connect(&broker).await.expect_err("guest holds one");
    let text = format!("{refused:?}");
    assert!(
        text.contains("Connection refused for user 'guest': user connection limit (1) is reached"),
        "{text}"
    );
}
