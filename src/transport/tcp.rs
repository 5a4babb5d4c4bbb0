//! TCP accept loops shared by every socket protocol.
//!
//! [`serve_listener`] accepts connections until told to stop, admits each into its protocol's budget
//! ([`super::limits`]: the oldest unauthenticated connection makes room for a new one; the adapter refuses a
//! client over `max_connections` in its protocol's words), sets `TCP_NODELAY`, and spawns one task per
//! connection on the server's [`TaskTracker`]. Out of file descriptors (EMFILE/ENFILE), it refuses the
//! waiting connection with the help of one spare descriptor instead of spinning: that is a refusal of one
//! connection, never something the store has to see.
//! That task performs the TLS handshake when the listener has an acceptor (bounded by a timeout and by
//! shutdown, so a slow client never stalls the accept loop) and then runs the protocol handler on a
//! [`ClientStream`]. The [`Lifecycle`] carries the two shutdown phases: stop accepting, then close
//! connections.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{Admission, ConnectionLimits};
use super::websocket::WebSocketBytes;
use tracing::{debug, info, warn};

/// Pause after an accept error that is not about one connection (e.g. out of file descriptors), so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How long the accept loop waits for the connection it is about to refuse for lack of descriptors.
const SPARE_ACCEPT_WAIT: Duration = Duration::from_millis(10);

/// An accepted client connection, plain or TLS; protocol handlers only see `AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub enum ClientStream {
    /// A plain TCP connection.
    Plain(TcpStream),
    /// A TLS connection whose handshake has completed (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
    /// A WebSocket over either of the above, read and written as the bytes of its binary messages.
    WebSocket(Box<WebSocketBytes<ClientStream>>),
}

impl ClientStream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(_) => true,
            ClientStream::WebSocket(ws) => ws.get_ref().is_tls(),
        }
    }

    /// The common name of the client certificate the TLS handshake verified (see `tls::load_acceptor`), if the
    /// client presented one.
    pub fn peer_certificate_name(&self) -> Option<String> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(s) => {
                let leaf = s.get_ref().1.peer_certificates()?.first()?;
                super::tls::common_name(leaf.as_ref())
            }
            ClientStream::WebSocket(ws) => ws.get_ref().peer_certificate_name(),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::WebSocket(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::WebSocket(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::WebSocket(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
            ClientStream::WebSocket(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_flush(cx),
            ClientStream::WebSocket(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::WebSocket(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The shutdown phases every listener and connection task follows.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// Cancelled first: accept loops return and drop their listening sockets.
    pub stop_accepting: CancellationToken,
    /// Cancelled next: connection tasks close their connections (AMQP: 320 CONNECTION_FORCED) and end.
    /// Cancelling it also cancels `stop_accepting`.
    pub close_connections: CancellationToken,
    /// Every connection task, so shutdown can wait for them to finish.
    pub connections: TaskTracker,
}

impl Lifecycle {
    /// A lifecycle with nothing cancelled yet.
    pub fn new() -> Self {
        let close_connections = CancellationToken::new();
        Self {
            stop_accepting: close_connections.child_token(),
            close_connections,
            connections: TaskTracker::new(),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves one accepted connection of a byte-stream protocol until it ends; every listener of that protocol
/// shares one (AMQP and AMQPS do). The [`Admission`] is the connection's place in its protocol's budget: the
/// handler must give up when `evicted` fires during its handshake, call `establish` once the client has
/// authenticated, and keep it until the connection ends.
pub type StreamHandler =
    Arc<dyn Fn(ClientStream, SocketAddr, Admission) -> BoxFuture<'static, ()> + Send + Sync>;

/// How one listener treats the connections it accepts.
#[derive(Clone)]
pub struct AcceptOptions {
    /// Listener name for logs (`amqp`, `amqps`).
    pub name: &'static str,
    /// Present for TLS listeners: the handshake is completed before the handler runs.
    pub tls: Option<TlsAcceptor>,
    /// The protocol's connection budget.
    pub limits: Arc<ConnectionLimits>,
}

impl std::fmt::Debug for AcceptOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptOptions")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Accept connections on `listener` until `lifecycle.stop_accepting` is cancelled, running `handler` on each
/// in its own task tracked by `lifecycle.connections`. The handler must end when `close_connections` fires.
pub async fn serve_listener(
    listener: TcpListener,
    options: AcceptOptions,
    handler: StreamHandler,
    lifecycle: Lifecycle,
) {
    let name = options.name;
    let mut spare = SpareDescriptor::open();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = lifecycle.stop_accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => on_accept(tcp, peer, &options, &handler, &lifecycle),
            Err(e) if is_connection_error(&e) => {
                debug!(listener = name, error = %e, "accept failed for one connection")
            }
            Err(e) if is_out_of_descriptors(&e) => {
                // Not the listener's fault and not the store's: refuse the waiting connection promptly.
                if spare.refuse_one(&listener).await {
                    options.limits.refuse("out of file descriptors");
                }
            }
            Err(e) => {
                warn!(listener = name, error = %e, "accept failed; pausing the listener briefly");
                tokio::select! {
                    _ = lifecycle.stop_accepting.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                }
            }
        }
    }
    info!(listener = name, "stopped accepting");
}

fn on_accept(
    tcp: TcpStream,
    peer: SocketAddr,
    options: &AcceptOptions,
    handler: &StreamHandler,
    lifecycle: &Lifecycle,
) {
    let admission = options.limits.admit();
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(listener = options.name, %peer, error = %e, "cannot set TCP_NODELAY");
    }
    debug!(listener = options.name, %peer, "accepted connection");
    let options = options.clone();
    let handler = handler.clone();
    let closing = lifecycle.close_connections.clone();
    lifecycle.connections.spawn(async move {
        let stream = match &options.tls {
            None => ClientStream::Plain(tcp),
            Some(acceptor) => {
                let handshake = tls_handshake(acceptor, tcp, peer, &options, &admission);
                let stream = tokio::select! {
                    _ = closing.cancelled() => None,
                    stream = handshake => stream,
                };
                match stream {
                    Some(stream) => stream,
                    None => return,
                }
            }
        };
        handler(stream, peer, admission).await;
    });
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    options: &AcceptOptions,
    admission: &Admission,
) -> Option<ClientStream> {
    let timeout = admission.handshake_timeout();
    let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp));
    let outcome = tokio::select! {
        _ = admission.evicted().cancelled() => return None,
        outcome = handshake => outcome,
    };
    match outcome {
        Ok(Ok(stream)) => Some(ClientStream::Tls(Box::new(stream))),
        Ok(Err(e)) => {
            info!(listener = options.name, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            info!(listener = options.name, %peer, timeout_secs = timeout.as_secs(), "TLS handshake timed out");
            None
        }
    }
}

/// One descriptor held back (`/dev/null`) so that, out of descriptors, the accept loop can still take the
/// waiting connection off the queue and close it: a prompt refusal instead of a client hanging in the
/// backlog while the loop spins on EMFILE.
struct SpareDescriptor(Option<std::fs::File>);

impl SpareDescriptor {
    fn open() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    /// Free the spare, accept and close one waiting connection, then take the spare back. Returns whether
    /// there was a connection to refuse: accept(2) reports EMFILE before it looks for one, so there may be
    /// none.
    async fn refuse_one(&mut self, listener: &TcpListener) -> bool {
        self.0 = None;
        let refused = match tokio::time::timeout(SPARE_ACCEPT_WAIT, listener.accept()).await {
            Ok(Ok((tcp, _))) => {
                drop(tcp);
                true
            }
            _ => false,
        };
        *self = Self::open();
        if self.0.is_none() {
            // Still none to spare: give the other tasks time to close something.
            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
        }
        refused
    }
}

/// EMFILE (this process) or ENFILE (the whole system): no descriptor for the new connection.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Errors about one half-open connection that says nothing about the listener's health.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::limits::Budget;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo(mut stream: ClientStream, _peer: SocketAddr, mut admission: Admission) {
        if admission.establish("guest", "/").is_err() {
            return;
        }
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    async fn start(limit: usize) -> (SocketAddr, Lifecycle, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let options = AcceptOptions {
            name: "test",
            tls: None,
            limits: Arc::new(ConnectionLimits::new(
                "test",
                Budget {
                    max_connections: limit,
                    max_handshakes: limit,
                    handshake_timeout: Duration::from_secs(5),
                },
                Arc::default(),
            )),
        };
        let lifecycle = Lifecycle::new();
        let handler: StreamHandler =
            Arc::new(|stream, peer, admission| Box::pin(echo(stream, peer, admission)));
        let task = tokio::spawn(serve_listener(
            listener,
            options,
            handler,
            lifecycle.clone(),
        ));
        (addr, lifecycle, task)
    }

    async fn round_trip(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = vec![0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn accepted_connections_reach_the_handler() {
        let (addr, lifecycle, task) = start(10).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(round_trip(&mut client).await.expect("echo"), b"ping");
        lifecycle.stop_accepting.cancel();
        task.await.expect("accept loop ends");
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_at_once() {
        let (addr, _lifecycle, _task) = start(1).await;
        let mut first = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut first).await.expect("first is served"),
            b"ping"
        );

        let mut second = TcpStream::connect(addr).await.expect("the kernel accepts");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "over-limit connection must be closed, got {read:?}"
        );

        drop(first);
        // The permit comes back when the first connection's task ends.
        let mut third = None;
        for _ in 0..50 {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            if round_trip(&mut client).await.is_ok() {
                third = Some(client);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(third.is_some(), "a slot frees up once a connection closes");
    }

    /// Out of descriptors, the waiting connection is taken off the queue and closed (a counted refusal),
    /// not left in the backlog while the loop spins. nextest runs each test in its own process, so lowering
    /// this process's open-file limit touches no other test.
    #[tokio::test]
    async fn out_of_descriptors_the_waiting_connection_is_refused_and_counted() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let hard = getrlimit(Resource::Nofile).maximum;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: hard,
            },
        )
        .expect("lower");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = Arc::new(ConnectionLimits::new(
            "test",
            Budget {
                max_connections: 10,
                max_handshakes: 10,
                handshake_timeout: Duration::from_secs(5),
            },
            Arc::default(),
        ));
        let options = AcceptOptions {
            name: "test",
            tls: None,
            limits: limits.clone(),
        };
        let handler: StreamHandler =
            Arc::new(|stream, peer, admission| Box::pin(echo(stream, peer, admission)));
        let _task = tokio::spawn(serve_listener(listener, options, handler, Lifecycle::new()));
        tokio::time::sleep(Duration::from_millis(50)).await; // the loop has opened its spare

        let mut hoard = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            hoard.push(file);
        }
        hoard.pop(); // one for the client's socket
        let mut client = TcpStream::connect(addr).await.expect("the kernel accepts");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("refused promptly, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, got {read:?}");
        assert_eq!(limits.stats().refused, 1);
        drop(hoard);
    }

    #[tokio::test]
    async fn stopping_the_accept_loop_releases_the_port() {
        let (addr, lifecycle, task) = start(10).await;
        lifecycle.stop_accepting.cancel();
        task.await.expect("accept loop ends");
        TcpListener::bind(addr).await.expect("port is free again");
    }
}
