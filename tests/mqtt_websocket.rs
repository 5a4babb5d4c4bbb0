//! MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5.0 §6) against the real broker: a tokio-tungstenite client
//! speaking raw MQTT 3.1.1 bytes on the `mqtt-ws` listener (path `/ws`, subprotocol `mqtt`) and on
//! `mqtt-wss` over the test CA, with packets packed several to a frame and split across frames.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{TestBroker, TestCerts};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const IO_WAIT: Duration = Duration::from_secs(10);
const CONNACK_ACCEPTED: &[u8] = &[0x20, 0x02, 0x00, 0x00];
const PINGREQ: &[u8] = &[0xc0, 0x00];
const PINGRESP: &[u8] = &[0xd0, 0x00];

/// An MQTT packet: fixed header byte, remaining length (one byte: every packet here is short), body.
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len()).expect("short packet");
    assert!(len < 128, "one-byte remaining length");
    let mut out = vec![header, len];
    out.extend_from_slice(body);
    out
}

fn string(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    string(&mut body, "MQTT");
    body.put_slice(&[0x04, 0x02, 0x00, 0x3c]);
    string(&mut body, client_id);
    packet(0x10, &body)
}

/// SUBSCRIBE packet id 1 to `filter` at QoS 0.
fn subscribe_packet(filter: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(1);
    string(&mut body, filter);
    body.put_u8(0);
    packet(0x82, &body)
}

/// PUBLISH at QoS 0.
fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    string(&mut body, topic);
    body.put_slice(payload);
    packet(0x30, &body)
}

async fn ws_connect<S>(stream: S, url: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, response) =
        tokio::time::timeout(IO_WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("upgrade in time")
            .expect("upgrade");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol"),
        Some(&HeaderValue::from_static("mqtt")),
        "[MQTT-6.0.0-4] the server selects the mqtt subprotocol"
    );
    ws
}

async fn ws_plain(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    ws_connect(tcp, &format!("ws://{addr}/ws")).await
}

/// Read binary messages until the bytes received so far equal `expected` (whatever the framing).
async fn expect_bytes<S>(ws: &mut WebSocketStream<S>, expected: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let message = tokio::time::timeout(IO_WAIT, ws.next())
            .await
            .expect("bytes in time")
            .expect("stream open")
            .expect("message");
        match message {
            Message::Binary(data) => got.extend_from_slice(&data),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected binary MQTT bytes, got {other:?}"),
        }
    }
    assert_eq!(got, expected);
}

async fn send(ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>, bytes: &[u8]) {
    ws.send(Message::Binary(Bytes::copy_from_slice(bytes)))
        .await
        .expect("send frame");
}

#[tokio::test]
async fn mqtt_over_websocket_carries_packets_packed_in_one_frame_and_split_across_frames() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("mqtt-ws");

    // The subscriber sends SUBSCRIBE and PINGREQ in one frame.
    let mut subscriber = ws_plain(addr).await;
    send(&mut subscriber, &connect_packet("ws-sub")).await;
    expect_bytes(&mut subscriber, CONNACK_ACCEPTED).await;
    let mut both = subscribe_packet("ws/+/c");
    both.extend_from_slice(PINGREQ);
    send(&mut subscriber, &both).await;
    let suback: &[u8] = &[0x90, 0x03, 0x00, 0x01, 0x00];
    expect_bytes(&mut subscriber, &[suback, PINGRESP].concat()).await;

    // The publisher splits its CONNECT and its PUBLISH across frames at odd places.
    let mut publisher = ws_plain(addr).await;
    let connect = connect_packet("ws-pub");
    send(&mut publisher, &connect[..3]).await;
    send(&mut publisher, &connect[3..]).await;
    expect_bytes(&mut publisher, CONNACK_ACCEPTED).await;
    let publish = publish_packet("ws/b/c", b"over websocket");
    for piece in publish.chunks(5) {
        send(&mut publisher, piece).await;
    }

    expect_bytes(&mut subscriber, &publish).await;
    broker.stop().await;
}

#[tokio::test]
async fn mqtt_over_secure_websocket_uses_the_tls_certificate() {
    let certs = TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;
    let addr = broker.listener("mqtt-wss");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(certs.client_config());
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let tls = tokio::time::timeout(IO_WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS in time")
        .expect("TLS handshake with the test CA");
    let mut ws = ws_connect(tls, &format!("wss://localhost:{}/ws", addr.port())).await;

    send(&mut ws, &connect_packet("wss-client")).await;
    expect_bytes(&mut ws, CONNACK_ACCEPTED).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_text_frame_closes_the_mqtt_websocket_with_1003_and_the_broker_keeps_serving() {
    let broker = TestBroker::start().await;
    let addr = broker.listener("mqtt-ws");
    let mut ws = ws_plain(addr).await;
    ws.send(Message::text("CONNECT")).await.expect("send text");
    let close = tokio::time::timeout(IO_WAIT, ws.next())
        .await
        .expect("close in time")
        .expect("stream open")
        .expect("message");
    match close {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("expected close 1003, got {other:?}"),
    }

    let mut next = ws_plain(addr).await;
    send(&mut next, &connect_packet("after-text")).await;
    expect_bytes(&mut next, CONNACK_ACCEPTED).await;
    broker.stop().await;
}
