//! The composition root: the only code that knows every part of FerryMQ.
//!
//! [`start`] turns a [`Config`] into a running broker in the order the durability contract needs: create the
//! data directory, load the TLS certificate (so a bad one fails before anything else happens), open the store,
//! start the core (which recovers everything durable), and only then bind and serve the listeners: AMQP,
//! AMQPS when TLS is configured, and the HTTP health endpoints. Each bound address is logged as
//! `listener=<name> addr=<ip:port> "listening"`, which is how tests and operators learn the ports picked for
//! port 0.
//!
//! [`RunningServer::shutdown`] is the graceful drain: stop accepting, tell every connection to close (AMQP
//! sends 320 CONNECTION_FORCED), wait for the connection tasks for at most [`DRAIN_TIMEOUT`], then shut the
//! core down, which flushes the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::DropGuard;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admin;
use crate::amqp::{self, AmqpContext};
use crate::config::{Config, ConfigError, StoreKind, SyncPolicy};
use crate::core::{Broker, BrokerOptions, CoreError, PermissionSpec, UserSpec};
use crate::store::journal::{self, JournalOptions, SyncMode};
use crate::store::{MemoryStore, Store, StoreError};
use crate::transport::{self, AcceptOptions, Lifecycle, TlsError};

/// How long shutdown waits for open connections to close before closing the store anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The core refused to start (recovery failed).
    #[error("cannot start the broker: {0}")]
    Core(#[from] CoreError),
    /// A listener could not bind its address.
    #[error("cannot listen for {listener} on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started broker with its listeners. Dropping it stops the listeners and connections abruptly; call
/// [`RunningServer::shutdown`] for the graceful drain.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the plain AMQP listener is bound (the real port when 0 was configured).
    pub amqp_addr: SocketAddr,
    /// Where the AMQPS listener is bound, when TLS is configured.
    pub amqps_addr: Option<SocketAddr>,
    /// Where the HTTP listener (health endpoints) is bound.
    pub http_addr: SocketAddr,
    config: Config,
    broker: Broker,
    lifecycle: Lifecycle,
    /// Accept loops and the HTTP server.
    listeners: TaskTracker,
    _cancel_on_drop: DropGuard,
}

/// A listening socket bound but not yet serving, with the address it got.
struct BoundSocket {
    socket: TcpListener,
    addr: SocketAddr,
}

/// Every listening socket, bound but not yet serving.
struct Bound {
    amqp: BoundSocket,
    amqps: Option<(BoundSocket, TlsAcceptor)>,
    http: BoundSocket,
}

/// Start FerryMQ as `config` says and return once every listener accepts connections.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let config = config.resolve()?;
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let tls = match config.tls.files() {
        Some((cert, key)) => Some(transport::load_acceptor(cert, key)?),
        None => None,
    };
    let store = open_store(&config)?;
    crate::amqp::register_with_core();
    let broker = match Broker::start(broker_options(&config), store.clone()).await {
        Ok(broker) => broker,
        Err(e) => {
            store.close();
            return Err(e.into());
        }
    };
    let bound = match bind_all(&config, tls).await {
        Ok(bound) => bound,
        Err(e) => {
            broker.shutdown().await;
            return Err(e);
        }
    };
    let server = serve(config, broker, bound);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %server.config.data_dir.display(),
        store = %server.config.store.kind,
        "ferrymq started"
    );
    Ok(server)
}

/// The one place that decides which store backs the broker: the durable journal in `<data_dir>/store`, or
/// memory. Opening the journal recovers it (blocking file I/O; nothing else runs yet at that point).
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match config.store.kind {
        StoreKind::Memory => {
            info!("memory store: messages and definitions do not survive a restart");
            Ok(Arc::new(MemoryStore::default()))
        }
        StoreKind::Journal => {
            let sync = match config.store.sync {
                SyncPolicy::Always => SyncMode::Always,
                SyncPolicy::BatchWindow => {
                    SyncMode::BatchWindow(Duration::from_micros(config.store.batch_window_us))
                }
            };
            let options = JournalOptions {
                dir: config.store.dir.clone(),
                segment_size: config.store.segment_size,
                sync,
                disk_low_water: config.store.disk_low_water,
            };
            let store: Arc<dyn Store> = journal::open(options)?;
            Ok(store)
        }
    }
}

/// The core's view of the configuration (`[auth]` and `[memory]`).
// Every current option is set from the config; the struct update keeps the build going when the core adds an
// option, which then runs at its default until it gets a config setting here.
#[allow(clippy::needless_update)]
fn broker_options(config: &Config) -> BrokerOptions {
    let auth = &config.auth;
    BrokerOptions {
        default_user: auth.default_user.clone(),
        default_pass: auth.default_pass.clone(),
        loopback_users: auth.loopback_users.clone(),
        vhosts: auth.vhosts.clone(),
        users: auth
            .users
            .iter()
            .map(|u| UserSpec {
                name: u.name.clone(),
                password: u.password.clone(),
                tags: u.tags.clone(),
            })
            .collect(),
        permissions: auth
            .permissions
            .iter()
            .map(|p| PermissionSpec {
                user: p.user.clone(),
                vhost: p.vhost.clone(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            })
            .collect(),
        memory_limit: config.memory.high_water,
        ..BrokerOptions::default()
    }
}

/// Bind every listener before serving any, so a port clash fails start-up without half a server running.
async fn bind_all(config: &Config, tls: Option<TlsAcceptor>) -> Result<Bound, StartError> {
    let amqp = bind("amqp", config.amqp.addr()).await?;
    let amqps = match tls {
        Some(acceptor) => Some((bind("amqps", config.amqp.tls_addr()).await?, acceptor)),
        None => None,
    };
    let http = bind("http", config.http.addr()).await?;
    Ok(Bound { amqp, amqps, http })
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<BoundSocket, StartError> {
    let error = |source| StartError::Bind {
        listener,
        addr,
        source,
    };
    let socket = TcpListener::bind(addr).await.map_err(error)?;
    let addr = socket.local_addr().map_err(error)?;
    Ok(BoundSocket { socket, addr })
}

/// Spawn the accept loops and the HTTP server on the bound sockets, logging each address.
fn serve(config: Config, broker: Broker, bound: Bound) -> RunningServer {
    let lifecycle = Lifecycle::new();
    let listeners = TaskTracker::new();
    let ctx = AmqpContext::new(broker.clone(), &config.amqp);
    let closing = lifecycle.close_connections.clone();
    let amqp_handler = move |stream, peer| amqp::serve(stream, peer, ctx.clone(), closing.clone());
    let accept = AcceptOptions {
        name: "amqp",
        tls: None,
        handshake_timeout: Duration::from_secs(config.amqp.handshake_timeout_secs),
        connection_limit: Arc::new(Semaphore::new(
            config.amqp.max_connections.min(Semaphore::MAX_PERMITS),
        )),
    };

    let amqp_addr = bound.amqp.addr;
    info!(listener = "amqp", addr = %amqp_addr, "listening");
    listeners.spawn(transport::serve_listener(
        bound.amqp.socket,
        accept.clone(),
        amqp_handler.clone(),
        lifecycle.clone(),
    ));

    let amqps_addr = bound.amqps.map(|(bound, acceptor)| {
        info!(listener = "amqps", addr = %bound.addr, "listening");
        let options = AcceptOptions {
            name: "amqps",
            tls: Some(acceptor),
            ..accept
        };
        listeners.spawn(transport::serve_listener(
            bound.socket,
            options,
            amqp_handler,
            lifecycle.clone(),
        ));
        bound.addr
    });

    let http_addr = bound.http.addr;
    info!(listener = "http", addr = %http_addr, "listening");
    let router = admin::router(broker.clone());
    let stop_http = lifecycle.stop_accepting.clone();
    listeners.spawn(async move {
        if let Err(e) = admin::serve(bound.http.socket, router, stop_http).await {
            error!(listener = "http", error = %e, "HTTP listener failed");
        }
    });
    listeners.close();

    RunningServer {
        amqp_addr,
        amqps_addr,
        http_addr,
        config,
        broker,
        _cancel_on_drop: lifecycle.close_connections.clone().drop_guard(),
        lifecycle,
        listeners,
    }
}

impl RunningServer {
    /// The broker core behind the listeners.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The resolved configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Graceful shutdown: stop accepting, close every connection (AMQP: 320 CONNECTION_FORCED), wait up to
    /// [`DRAIN_TIMEOUT`] for connection tasks to end, then shut the core down (flushing the store).
    pub async fn shutdown(self) {
        info!(
            connections = self.lifecycle.connections.len(),
            "shutting down: no longer accepting connections"
        );
        self.lifecycle.stop_accepting.cancel();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.listeners.wait())
            .await
            .is_err()
        {
            warn!("listeners did not stop within the drain timeout");
        }
        self.lifecycle.close_connections.cancel();
        self.lifecycle.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.lifecycle.connections.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.lifecycle.connections.len(),
                timeout_secs = DRAIN_TIMEOUT.as_secs(),
                "connections still open after the drain timeout; shutting down anyway"
            );
        }
        self.broker.shutdown().await;
        info!("ferrymq stopped");
    }
}
