//! WebSocket (RFC 6455) as one more byte transport: the HTTP upgrade, subprotocol negotiation, and binary
//! frames turned back into a byte stream, so a front end's `serve(stream, ...)` runs unchanged over it.
//!
//! Any front end whose protocol has a WebSocket binding (MQTT on `mqtt`/`mqttv3.1`, STOMP on `v12.stomp` and
//! its elders) wraps its stream handler with [`upgrade_then`] and names its subprotocols in
//! [`WebSocketOptions`]; the listener table gives that handler its own port. The upgrade request is read
//! and answered here, not by tungstenite's handshake, so that its size is bounded before it is buffered
//! ([`WebSocketOptions::max_request_bytes`], 431 beyond it), its time by the listener's handshake timeout,
//! and each refusal gets the HTTP status RFC 6455 §4.2.1 asks for. [`parse_upgrade`] is the sans-IO half
//! of that: bytes in, a decision out.
//!
//! After the upgrade, [`WebSocketBytes`] is the byte stream: binary messages are concatenated on read
//! (several packets in one frame and one packet across frames therefore work by construction), and writes
//! are buffered until the front end flushes, which sends them as one binary message. tungstenite answers
//! pings and the peer's close itself. Text frames are refused with close code 1003 (unsupported data) and
//! frames or messages over the configured maximum with 1009 (message too big), then the stream reports an
//! error so the front end ends the connection (RFC 6455 §7.4.1). WSS is this over the TLS stream that the
//! accept loop hands over; nothing here knows TLS or any protocol's packets.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::tcp::{ClientStream, StreamHandler};

/// Headers an upgrade request may carry; more is refused with 431 like an oversized request.
const MAX_HEADERS: usize = 32;
/// Buffered outgoing bytes at which a write sends them as a frame without waiting for the flush.
const WRITE_FRAME_BYTES: usize = 64 * 1024;
/// tungstenite's read buffer per connection (its default, 128 KiB, would dwarf an idle client's cost).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What a front end asks of its WebSocket listener.
#[derive(Clone, Debug)]
pub struct WebSocketOptions {
    /// The request path the upgrade must name (`/ws`); a query string is ignored.
    pub path: String,
    /// The subprotocols the front end speaks. The first one the client offers is chosen; a client that
    /// offers none is served without one, a client that offers only others is refused (400).
    pub subprotocols: &'static [&'static str],
    /// The largest upgrade request (request line and headers) read before refusing with 431.
    pub max_request_bytes: usize,
    /// The largest binary message accepted, in bytes; beyond it the connection closes with 1009.
    pub max_message_size: usize,
    /// The largest single frame accepted, in bytes; beyond it the connection closes with 1009.
    pub max_frame_size: usize,
}

impl WebSocketOptions {
    fn tungstenite_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size))
    }
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request was refused with an HTTP status (already sent to the client).
    #[error("upgrade refused with {status}: {reason}")]
    Refused { status: u16, reason: &'static str },
    /// The client closed the connection before a whole request arrived.
    #[error("connection closed during the upgrade request")]
    Closed,
    /// Reading or answering the request failed.
    #[error("upgrade failed: {0}")]
    Io(#[from] io::Error),
}

/// An HTTP refusal of an upgrade request: the status line's code and text, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code.
    pub status: u16,
    /// Why, for the log and the response body.
    pub reason: &'static str,
}

impl Refusal {
    const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason }
    }

    fn status_text(self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        }
    }

    /// The whole HTTP response; 426 names the version this server speaks (RFC 6455 §4.2.2).
    fn response(self) -> String {
        let version = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {}\r\n{version}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}\n",
            self.status,
            self.status_text(),
            self.reason.len() + 1,
            self.reason
        )
    }
}

const TOO_LARGE: Refusal = Refusal::new(431, "upgrade request too large");

/// An acceptable upgrade request: what the 101 response must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept` for the client's key.
    pub accept_key: String,
    /// The subprotocol chosen, if the client offered one of ours.
    pub subprotocol: Option<&'static str>,
    /// Length of the request in bytes; anything after it is already WebSocket data.
    pub request_len: usize,
}

impl Upgrade {
    fn response(&self) -> String {
        let protocol = self
            .subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
            self.accept_key
        )
    }
}

/// Decide on the upgrade request at the start of `buf`: `Ok(None)` while it is incomplete (and within
/// `max_request_bytes`), the upgrade to perform, or the refusal to send (RFC 6455 §4.2.1).
pub fn parse_upgrade(buf: &[u8], options: &WebSocketOptions) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let request_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= options.max_request_bytes => len,
        Ok(httparse::Status::Partial) if buf.len() < options.max_request_bytes => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(_) => return Err(Refusal::new(400, "malformed HTTP request")),
    };
    check_request_line(&request, options)?;
    let header = |name: &str| header_value(request.headers, name);
    if !has_token(header("upgrade"), "websocket") || !has_token(header("connection"), "upgrade") {
        return Err(Refusal::new(426, "a WebSocket upgrade is required here"));
    }
    if header("sec-websocket-version") != Some("13") {
        return Err(Refusal::new(426, "only WebSocket version 13 is supported"));
    }
    let key = header("sec-websocket-key")
        .filter(|key| is_valid_key(key))
        .ok_or(Refusal::new(400, "missing or malformed Sec-WebSocket-Key"))?;
    let subprotocol = choose_subprotocol(request.headers, options.subprotocols)?;
    Ok(Some(Upgrade {
        accept_key: derive_accept_key(key.as_bytes()),
        subprotocol,
        request_len,
    }))
}

fn check_request_line(
    request: &httparse::Request<'_, '_>,
    options: &WebSocketOptions,
) -> Result<(), Refusal> {
    if request.method != Some("GET") {
        return Err(Refusal::new(405, "a WebSocket upgrade is a GET request"));
    }
    if request.version != Some(1) {
        return Err(Refusal::new(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    if path != options.path {
        return Err(Refusal::new(404, "no WebSocket endpoint at this path"));
    }
    Ok(())
}

/// The value of the first header called `name` (case-insensitive), if it is text.
fn header_value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// RFC 6455 §4.1: the key is 16 random bytes in base64, so 24 characters ending in `==`.
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first subprotocol the client offers (every `Sec-WebSocket-Protocol` header, in order) that the front
/// end speaks. None offered: none chosen. Only others offered: refused, since the client would fail the
/// connection anyway (RFC 6455 §4.1, the client's step 6).
fn choose_subprotocol(
    headers: &[httparse::Header<'_>],
    ours: &'static [&'static str],
) -> Result<Option<&'static str>, Refusal> {
    let mut offered = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    if offered.peek().is_none() {
        return Ok(None);
    }
    offered
        .find_map(|p| {
            ours.iter()
                .copied()
                .find(|ours| ours.eq_ignore_ascii_case(p))
        })
        .map(Some)
        .ok_or(Refusal::new(
            400,
            "none of the offered subprotocols is supported",
        ))
}

/// Read the upgrade request from `stream`, answer it, and return the byte stream over the WebSocket. Bytes
/// after the request (a client that sends its first frame at once) are kept. The caller bounds the time.
pub async fn accept<S>(
    mut stream: S,
    options: &WebSocketOptions,
) -> Result<WebSocketBytes<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let upgrade = loop {
        match parse_upgrade(&buf, options) {
            Ok(Some(upgrade)) => break upgrade,
            Ok(None) => {}
            Err(refusal) => return Err(refuse(&mut stream, refusal).await),
        }
        let room = options.max_request_bytes.saturating_sub(buf.len()).max(1);
        buf.reserve(room.min(4096));
        let read = (&mut stream).take(room as u64).read_buf(&mut buf).await?;
        if read == 0 {
            return Err(UpgradeError::Closed);
        }
    };
    stream.write_all(upgrade.response().as_bytes()).await?;
    stream.flush().await?;
    let rest = buf.split_off(upgrade.request_len).to_vec();
    let config = options.tungstenite_config();
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    Ok(WebSocketBytes::new(ws, upgrade.subprotocol))
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: Refusal) -> UpgradeError {
    // The refusal is best effort: the client may be gone already.
    let _ = stream.write_all(refusal.response().as_bytes()).await;
    let _ = stream.shutdown().await;
    UpgradeError::Refused {
        status: refusal.status,
        reason: refusal.reason,
    }
}

/// Wrap a front end's stream handler so that each accepted connection is upgraded to a WebSocket first,
/// within the admission's handshake timeout, and the handler is given the byte stream over it. Eviction of
/// the unauthenticated connection or `closing` during the upgrade drops the connection.
pub fn upgrade_then(
    handler: StreamHandler,
    options: Arc<WebSocketOptions>,
    closing: CancellationToken,
) -> StreamHandler {
    Arc::new(move |stream, peer, admission| {
        let handler = handler.clone();
        let options = options.clone();
        let closing = closing.clone();
        Box::pin(async move {
            let timeout = admission.handshake_timeout();
            let upgrade = tokio::time::timeout(timeout, accept(stream, &options));
            let outcome = tokio::select! {
                _ = admission.evicted().cancelled() => return,
                _ = closing.cancelled() => return,
                outcome = upgrade => outcome,
            };
            match outcome {
                Ok(Ok(ws)) => {
                    let stream = ClientStream::WebSocket(Box::new(ws));
                    handler(stream, peer, admission).await;
                }
                Ok(Err(e)) => log_failed_upgrade(peer, &e),
                Err(_) => {
                    info!(%peer, timeout_secs = timeout.as_secs(), "WebSocket upgrade timed out")
                }
            }
        })
    })
}

fn log_failed_upgrade(peer: SocketAddr, error: &UpgradeError) {
    match error {
        UpgradeError::Closed => debug!(%peer, "client left during the WebSocket upgrade"),
        _ => info!(%peer, %error, "WebSocket upgrade failed"),
    }
}

/// Where the stream stands on closing a connection the peer broke the rules on.
#[derive(Debug)]
enum Refusing {
    /// Nothing wrong so far.
    No,
    /// The close frame still has to be queued.
    Queue(CloseCode, &'static str),
    /// The close frame is queued and being flushed.
    Flush(&'static str),
    /// The close frame is out (or could not be sent): every read fails with this reason.
    Done(&'static str),
}

/// A byte stream over an accepted WebSocket: reads yield the payloads of binary messages back to back;
/// writes are buffered and go out as one binary message per flush (or per [`WRITE_FRAME_BYTES`]).
#[derive(Debug)]
pub struct WebSocketBytes<S> {
    ws: WebSocketStream<S>,
    subprotocol: Option<&'static str>,
    /// The unread rest of the last binary message.
    read: Bytes,
    /// Bytes written since the last message was sent.
    write: BytesMut,
    refusing: Refusing,
    /// Whether our close frame (on shutdown) has been queued.
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketBytes<S> {
    fn new(ws: WebSocketStream<S>, subprotocol: Option<&'static str>) -> Self {
        Self {
            ws,
            subprotocol,
            read: Bytes::new(),
            write: BytesMut::new(),
            refusing: Refusing::No,
            close_sent: false,
        }
    }

    /// The subprotocol agreed in the upgrade, if any.
    pub fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }

    /// The stream the WebSocket runs over (plain TCP or TLS).
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }

    /// Start closing the connection with `code` because of what the peer sent.
    fn refuse(&mut self, code: CloseCode, reason: &'static str) {
        debug!(?code, reason, "closing WebSocket");
        self.refusing = Refusing::Queue(code, reason);
    }

    /// Send the close frame of a refusal, then fail the read with its reason.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.refusing, Refusing::No) {
                Refusing::No => return Poll::Ready(Ok(())),
                Refusing::Queue(code, reason) => {
                    if Pin::new(&mut self.ws).poll_ready(cx).is_pending() {
                        self.refusing = Refusing::Queue(code, reason);
                        return Poll::Pending;
                    }
                    let sent = Pin::new(&mut self.ws).start_send(close_message(code, reason));
                    self.refusing = match sent {
                        Ok(()) => Refusing::Flush(reason),
                        Err(_) => Refusing::Done(reason),
                    };
                }
                Refusing::Flush(reason) => {
                    if Pin::new(&mut self.ws).poll_flush(cx).is_pending() {
                        self.refusing = Refusing::Flush(reason);
                        return Poll::Pending;
                    }
                    self.refusing = Refusing::Done(reason);
                }
                Refusing::Done(reason) => {
                    self.refusing = Refusing::Done(reason);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason)));
                }
            }
        }
    }

    /// Take the next binary message into `self.read`; `Ok(false)` at the end of the stream.
    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let message = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(false)),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Poll::Ready(self.on_error(e).map(|()| true)),
            };
            match message {
                Message::Binary(data) => {
                    self.read = data;
                    return Poll::Ready(Ok(true));
                }
                Message::Text(_) => {
                    self.refuse(CloseCode::Unsupported, "text frames are not accepted");
                    return Poll::Ready(Ok(true));
                }
                // Pings are answered and the peer's close is echoed by tungstenite on this same read path.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
            }
        }
    }

    /// An error from tungstenite: over a limit or against the protocol, the peer is told with a close code.
    fn on_error(&mut self, error: WsError) -> io::Result<()> {
        match error {
            WsError::Capacity(_) => {
                self.refuse(CloseCode::Size, "frame or message over the maximum size");
                Ok(())
            }
            WsError::Protocol(_) | WsError::Utf8(_) => {
                self.refuse(CloseCode::Protocol, "WebSocket protocol violation");
                Ok(())
            }
            WsError::Io(e) => Err(e),
            other => Err(io::Error::other(other)),
        }
    }

    /// Queue the buffered writes as one binary message.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(into_io)?;
        let message = Message::Binary(self.write.split().freeze());
        Pin::new(&mut self.ws)
            .start_send(message)
            .map_err(into_io)?;
        Poll::Ready(Ok(()))
    }
}

fn close_message(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// On shutdown, a connection already closed (by the peer's close frame) is the goal reached.
fn closed_is_done(error: WsError) -> io::Result<()> {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(()),
        other => Err(into_io(other)),
    }
}

fn into_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if !matches!(this.refusing, Refusing::No) {
                return this.poll_refusal(cx);
            }
            if !ready!(this.poll_next_message(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write.len() >= WRITE_FRAME_BYTES {
            ready!(this.poll_send_buffered(cx))?;
        }
        this.write.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }

    /// Send what is buffered, then the close frame (1000, RFC 6455 §7.1.2).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        if !this.close_sent {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(into_io)?;
            let close = close_message(CloseCode::Normal, "");
            let sent = Pin::new(&mut this.ws).start_send(close);
            this.close_sent = true;
            if let Err(e) = sent {
                return Poll::Ready(closed_is_done(e));
            }
        }
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(closed_is_done(e)),
        }
    }
}

#[cfg(test)]
mod tests;
