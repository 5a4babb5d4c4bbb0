//! The WebSocket transport, first as a sans-IO request parser, then over real sockets on 127.0.0.1 with a
//! tokio-tungstenite client against a small length-prefixed echo front end run by the shared accept loop.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::*;
use crate::transport::limits::{Admission, Budget, ConnectionLimits};
use crate::transport::tcp::{AcceptOptions, Lifecycle, serve_listener};

const SUBPROTOCOLS: &[&str] = &["mqtt", "mqttv3.1"];
const MAX_MESSAGE: usize = 1024;

fn options() -> WebSocketOptions {
    WebSocketOptions {
        path: "/ws".to_owned(),
        subprotocols: SUBPROTOCOLS,
        max_request_bytes: 2048,
        max_message_size: MAX_MESSAGE,
        max_frame_size: MAX_MESSAGE,
    }
}

fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse(text: &str) -> Result<Option<Upgrade>, Refusal> {
    parse_upgrade(text.as_bytes(), &options())
}

fn refusal(text: &str) -> u16 {
    match parse(text) {
        Err(refusal) => refusal.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_request_gets_the_rfc_accept_key_and_our_subprotocol() {
    let text = request("/ws", "Sec-WebSocket-Protocol: mqtt\r\n");
    let upgrade = parse(&text).expect("valid").expect("complete");
    // RFC 6455 §1.3's worked example.
    assert_eq!(upgrade.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(upgrade.subprotocol, Some("mqtt"));
    assert_eq!(upgrade.request_len, text.len());
}

#[test]
fn the_first_supported_subprotocol_the_client_offers_is_chosen() {
    let text = request(
        "/ws?client=1",
        "Sec-WebSocket-Protocol: v12.stomp, MQTTv3.1\r\nSec-WebSocket-Protocol: mqtt\r\n",
    );
    let upgrade = parse(&text).expect("valid").expect("complete");
    assert_eq!(upgrade.subprotocol, Some("mqttv3.1"));
}

#[test]
fn a_client_offering_no_subprotocol_is_served_without_one() {
    let upgrade = parse(&request("/ws", ""))
        .expect("valid")
        .expect("complete");
    assert_eq!(upgrade.subprotocol, None);
}

#[test]
fn a_client_offering_only_other_subprotocols_is_refused() {
    assert_eq!(
        refusal(&request("/ws", "Sec-WebSocket-Protocol: v12.stomp\r\n")),
        400
    );
}

#[test]
fn a_request_is_incomplete_until_its_blank_line_at_every_split() {
    let text = request("/ws", "");
    for end in 0..text.len() {
        assert_eq!(parse(&text[..end]), Ok(None), "prefix of {end} bytes");
    }
    assert!(matches!(parse(&text), Ok(Some(_))));
}

#[test]
fn a_request_over_the_size_limit_is_refused_with_431() {
    let padding = format!("X-Padding: {}\r\n", "a".repeat(4096));
    assert_eq!(refusal(&request("/ws", &padding)), 431);
    // Still incomplete but already past the limit: refused before reading more.
    let incomplete = format!("GET /ws HTTP/1.1\r\nX-Padding: {}", "a".repeat(4096));
    assert_eq!(refusal(&incomplete), 431);
}

#[test]
fn too_many_headers_are_refused_with_431() {
    let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(refusal(&request("/ws", &many)), 431);
}

#[test]
fn requests_that_are_not_websocket_upgrades_get_the_matching_status() {
    assert_eq!(refusal(&request("/other", "")), 404);
    assert_eq!(refusal(&request("/ws", "").replacen("GET", "POST", 1)), 405);
    assert_eq!(
        refusal(&request("/ws", "").replace("HTTP/1.1", "HTTP/1.0")),
        400
    );
    assert_eq!(
        refusal(&request("/ws", "").replace("Upgrade: websocket", "Upgrade: h2c")),
        426
    );
    assert_eq!(
        refusal(&request("/ws", "").replace("Version: 13", "Version: 8")),
        426
    );
    assert_eq!(
        refusal(&request("/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
        400
    );
    assert_eq!(refusal("\x16\x03\x01\x02\x00\r\n\r\n"), 400);
}

/// A front end of length-prefixed packets (one length byte, then the payload) that echoes each packet
/// back and flushes after each one, so each packet it answers is one WebSocket message.
async fn echo_packets(mut stream: ClientStream, _peer: SocketAddr, mut admission: Admission) {
    if admission.establish("guest", "/").is_err() {
        return;
    }
    while let Ok(packet) = read_packet(&mut stream).await {
        if packet == [b'q'] {
            let _ = stream.shutdown().await;
            return;
        }
        let mut answer = vec![packet.len() as u8];
        answer.extend_from_slice(&packet);
        if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let len = stream.read_u8().await?;
    let mut packet = vec![0; usize::from(len)];
    stream.read_exact(&mut packet).await?;
    Ok(packet)
}

struct Server {
    addr: SocketAddr,
    lifecycle: Lifecycle,
}

async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let budget = Budget {
        max_connections: 10,
        max_handshakes: 10,
        handshake_timeout: Duration::from_secs(1),
    };
    let accept_options = AcceptOptions {
        name: "test-ws",
        tls,
        limits: Arc::new(ConnectionLimits::new("test", budget, Arc::default())),
    };
    let lifecycle = Lifecycle::new();
    let echo: StreamHandler = Arc::new(|s, p, a| Box::pin(echo_packets(s, p, a)));
    let handler = upgrade_then(
        echo,
        Arc::new(options()),
        lifecycle.close_connections.clone(),
    );
    tokio::spawn(serve_listener(
        listener,
        accept_options,
        handler,
        lifecycle.clone(),
    ));
    Server { addr, lifecycle }
}

type Client<S> = WebSocketStream<S>;

async fn connect_over<S>(stream: S, addr: SocketAddr, protocols: &str) -> Client<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocols).expect("header"),
    );
    let (client, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgrade");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol"),
        Some(&HeaderValue::from_static("mqtt"))
    );
    client
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connect_over(tcp, addr, "mqtt").await
}

async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>) -> Message {
    tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("an answer in time")
        .expect("the stream is open")
        .expect("a message")
}

/// The close frame the server ends with, skipping nothing else.
async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>) -> CloseCode {
    match next_message(client).await {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn binary(bytes: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(bytes))
}

#[tokio::test]
async fn several_packets_in_one_frame_and_one_packet_across_frames_are_read_as_a_byte_stream() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client
        .send(binary(b"\x03abc\x02d"))
        .await
        .expect("first frame");
    client.send(binary(b"e")).await.expect("second frame");
    assert_eq!(next_message(&mut client).await, binary(b"\x03abc"));
    assert_eq!(next_message(&mut client).await, binary(b"\x02de"));
    server.lifecycle.close_connections.cancel();
}

#[tokio::test]
async fn pings_are_answered_with_pongs() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .expect("ping");
    assert_eq!(
        next_message(&mut client).await,
        Message::Pong(Bytes::from_static(b"hi"))
    );
}

#[tokio::test]
async fn text_frames_are_refused_with_1003() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client.send(Message::text("\x01a")).await.expect("text");
    assert_eq!(close_code(&mut client).await, CloseCode::Unsupported);
}

#[tokio::test]
async fn a_message_over_the_maximum_is_refused_with_1009() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client
        .send(binary(&vec![1; MAX_MESSAGE + 1]))
        .await
        .expect("large frame");
    assert_eq!(close_code(&mut client).await, CloseCode::Size);
}

#[tokio::test]
async fn the_front_end_ending_the_connection_sends_a_normal_close() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client.send(binary(b"\x01q")).await.expect("quit");
    assert_eq!(close_code(&mut client).await, CloseCode::Normal);
}

#[tokio::test]
async fn a_client_close_is_answered_and_the_connection_ends() {
    let server = start(None).await;
    let mut client = connect(server.addr).await;
    client.close(None).await.expect("close");
    let rest = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("the close handshake completes");
    assert!(
        matches!(rest, None | Some(Ok(Message::Close(_)))),
        "{rest:?}"
    );
}

/// Send raw `bytes` and read the server's whole answer until it closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_upgrade_to_another_path_gets_404_and_a_closed_connection() {
    let server = start(None).await;
    let answer = raw_exchange(server.addr, request("/mqtt", "").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
}

#[tokio::test]
async fn an_endless_upgrade_request_is_cut_off_with_431() {
    let server = start(None).await;
    let flood = format!("GET /ws HTTP/1.1\r\nX-Flood: {}", "a".repeat(64 * 1024));
    let answer = raw_exchange(server.addr, flood.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[tokio::test]
async fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let server = start(None).await;
    let answer = raw_exchange(server.addr, b"GET /ws HTTP/1.1\r\n").await;
    assert_eq!(answer, "", "closed without an answer");
}

#[tokio::test]
async fn the_first_frame_sent_with_the_request_is_not_lost() {
    let server = start(None).await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    // A masked binary frame (mask 0) carrying packet "\x01z", written in the same segment as the request.
    let mut bytes = request("/ws", "Sec-WebSocket-Protocol: mqtt\r\n").into_bytes();
    bytes.extend_from_slice(&[0x82, 0x82, 0, 0, 0, 0, 0x01, b'z']);
    tcp.write_all(&bytes).await.expect("send");
    let mut answer = vec![0; 256];
    let mut got = Vec::new();
    while !got.ends_with(&[0x82, 0x02, 0x01, b'z']) {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
            .await
            .expect("answer in time")
            .expect("read");
        assert_ne!(n, 0, "closed early; got {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&answer[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "));
}

fn tls_pair() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("generate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    let acceptor = crate::transport::load_acceptor(&cert, &key, None).expect("acceptor");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (acceptor, tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[tokio::test]
async fn wss_runs_the_same_byte_stream_over_the_tls_acceptor() {
    let (acceptor, connector) = tls_pair();
    let server = start(Some(acceptor)).await;
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut client = connect_over(tls, server.addr, "mqttv5, mqtt").await;
    client.send(binary(b"\x02ok")).await.expect("send");
    assert_eq!(next_message(&mut client).await, binary(b"\x02ok"));
}
