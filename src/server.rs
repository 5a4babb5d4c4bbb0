//! The composition root: the only code that knows every part of FerryMQ.
//!
//! [`start`] turns a [`Config`] into a running broker in the order the durability contract needs: create the
//! data directory, load the TLS certificate (so a bad one fails before anything else happens), open the store,
//! start the core (which recovers everything durable), and only then bind and serve the listeners: AMQP and
//! MQTT (also over WebSocket), AMQPS, MQTTS and MQTT over WSS when TLS is configured, the HTTP health
//! endpoints, and the AWS-compatible APIs (SQS, STS). The listeners are one table
//! ([`listener_table`]): each front end registers its name, address, TLS acceptor and serve function in one
//! row, and binding, serving, logging and [`RunningServer::addr`] all read that table. Each bound address is
//! logged as `listener=<name> addr=<ip:port> "listening"`, which is how tests and operators learn the ports
//! picked for port 0.
//!
//! [`RunningServer::shutdown`] is the graceful drain: stop accepting, tell every connection to close (AMQP
//! sends 320 CONNECTION_FORCED), wait for the connection tasks for at most [`DRAIN_TIMEOUT`], then shut the
//! core down, which flushes the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::DropGuard;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admin;
use crate::amqp::{self, AmqpContext};
use crate::aws::{self, AwsContext};
use crate::config::{Config, ConfigError, StoreKind, SyncPolicy};
use crate::core::{
    Broker, BrokerOptions, CoreError, CoreLimits, PermissionSpec, TopicPermissionSpec, UserSpec,
};
use crate::mqtt::{self, MqttContext};
use crate::store::journal::{self, JournalOptions, SyncMode};
use crate::store::{MemoryStore, Store, StoreError};
use crate::transport::{
    self, AcceptOptions, Budget, ClientStream, ConnectionLimits, Lifecycle, LimitStats,
    StreamHandler, TenantLimits, TlsError, WebSocketOptions,
};

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
    /// Every listener's name and bound address (the real port when 0 was configured), in table order.
    addrs: Vec<(&'static str, SocketAddr)>,
    /// Each stream listener's connection budget (listeners of one protocol share one).
    limits: Vec<(&'static str, Arc<ConnectionLimits>)>,
    config: Config,
    broker: Broker,
    lifecycle: Lifecycle,
    /// Accept loops and the HTTP server.
    listeners: TaskTracker,
    _cancel_on_drop: DropGuard,
}

/// How a listener serves what it accepts.
enum Service {
    /// A byte-stream protocol (AMQP; MQTT and STOMP later): the shared accept loop in `transport`, one task
    /// per connection running `handler`, after the TLS handshake when `tls` is set.
    Stream {
        tls: Option<TlsAcceptor>,
        handler: StreamHandler,
        limits: Arc<ConnectionLimits>,
    },
    /// An HTTP service (health; the AWS APIs) on axum, with its connection limit.
    Http(Router, usize),
}

/// One row of the listener table: a front end's name (as logged in `listener=<name>` and passed to
/// [`RunningServer::addr`]), its address, and how it serves.
struct ListenerSpec {
    name: &'static str,
    addr: SocketAddr,
    service: Service,
}

impl ListenerSpec {
    fn stream(
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        handler: &StreamHandler,
        limits: &Arc<ConnectionLimits>,
    ) -> Self {
        let service = Service::Stream {
            tls,
            handler: handler.clone(),
            limits: limits.clone(),
        };
        Self {
            name,
            addr,
            service,
        }
    }

    fn http(name: &'static str, addr: SocketAddr, router: Router, max_connections: usize) -> Self {
        Self {
            name,
            addr,
            service: Service::Http(router, max_connections),
        }
    }
}

/// A listener bound but not yet serving, with the address it got.
struct BoundListener {
    spec: ListenerSpec,
    socket: TcpListener,
    addr: SocketAddr,
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
        Some((cert, key)) => Some(transport::load_acceptor(
            cert,
            key,
            config.tls.client_ca.as_deref(),
        )?),
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
    let lifecycle = Lifecycle::new();
    let table = listener_table(&config, tls, &broker, &lifecycle);
    let bound = match bind_all(table).await {
        Ok(bound) => bound,
        Err(e) => {
            broker.shutdown().await;
            return Err(e);
        }
    };
    let server = serve(config, broker, lifecycle, bound);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %server.config.data_dir.display(),
        store = %server.config.store.kind,
        "ferrymq started"
    );
    Ok(server)
}

/// The listener table: every front end FerryMQ serves, one row each. Adding a protocol is one row here (next
/// to its config section), e.g. `ListenerSpec::stream("mqtt", config.mqtt.addr(), None, &mqtt, &limits)`.
fn listener_table(
    config: &Config,
    tls: Option<TlsAcceptor>,
    broker: &Broker,
    lifecycle: &Lifecycle,
) -> Vec<ListenerSpec> {
    let tenants = Arc::new(TenantLimits::new(config.limits.clone()));
    let amqp = amqp_handler(config, broker, lifecycle);
    let amqp_budget = Budget {
        max_connections: config.amqp.max_connections,
        max_handshakes: config.amqp.max_handshakes,
        handshake_timeout: Duration::from_secs(config.amqp.handshake_timeout_secs),
    };
    let reserved = reserved_descriptors(config);
    let amqp_budget = fit_budget("amqp", amqp_budget, reserved);
    let amqp_limits = Arc::new(ConnectionLimits::new("amqp", amqp_budget, tenants.clone()));
    let mqtt = mqtt_handler(config, broker, lifecycle);
    let mqtt_budget = Budget {
        max_connections: config.mqtt.max_connections,
        max_handshakes: config.mqtt.max_handshakes,
        handshake_timeout: Duration::from_secs(config.mqtt.handshake_timeout_secs),
    };
    let mqtt_limits = Arc::new(ConnectionLimits::new(
        "mqtt",
        fit_budget("mqtt", mqtt_budget, reserved),
        tenants,
    ));
    let mqtt_ws = mqtt_websocket_handler(config, &mqtt, lifecycle);
    let mut table = vec![
        ListenerSpec::stream("amqp", config.amqp.addr(), None, &amqp, &amqp_limits),
        ListenerSpec::stream("mqtt", config.mqtt.addr(), None, &mqtt, &mqtt_limits),
        ListenerSpec::stream(
            "mqtt-ws",
            config.websocket.mqtt_addr(),
            None,
            &mqtt_ws,
            &mqtt_limits,
        ),
        ListenerSpec::http(
            "http",
            config.http.addr(),
            admin::router(broker.clone()),
            transport::fd::HTTP_MAX_CONNECTIONS,
        ),
    ];
    if config.aws.enabled {
        let aws = aws::router(AwsContext::new(broker.clone(), &config.aws));
        table.push(ListenerSpec::http(
            "aws",
            config.aws.addr(),
            aws,
            config.aws.max_connections,
        ));
    }
    if let Some(tls) = tls {
        let addr = config.amqp.tls_addr();
        table.push(ListenerSpec::stream(
            "amqps",
            addr,
            Some(tls.clone()),
            &amqp,
            &amqp_limits,
        ));
        let addr = config.mqtt.tls_addr();
        table.push(ListenerSpec::stream(
            "mqtts",
            addr,
            Some(tls.clone()),
            &mqtt,
            &mqtt_limits,
        ));
        let addr = config.websocket.mqtt_tls_addr();
        table.push(ListenerSpec::stream(
            "mqtt-wss",
            addr,
            Some(tls),
            &mqtt_ws,
            &mqtt_limits,
        ));
    }
    table
}

/// Descriptors the stream protocols' budgets must leave: the store's, the HTTP listener's and the runtime's
/// ([`transport::fd::RESERVED_DESCRIPTORS`]) and the AWS listener's connections when it runs.
fn reserved_descriptors(config: &Config) -> u64 {
    let aws = if config.aws.enabled {
        config.aws.max_connections as u64
    } else {
        0
    };
    transport::fd::RESERVED_DESCRIPTORS + aws
}

/// `budget`, lowered (with a warning naming the options) when the open-file limit cannot hold it next to the
/// `reserved` descriptors. With more protocols the limit will have to be shared out among them.
fn fit_budget(protocol: &'static str, budget: Budget, reserved: u64) -> Budget {
    let soft_limit = transport::fd::soft_limit();
    let Some(fitted) = transport::fd::fit(budget, soft_limit, reserved) else {
        return budget;
    };
    warn!(
        protocol,
        open_files = soft_limit,
        reserved,
        max_connections = fitted.max_connections,
        max_handshakes = fitted.max_handshakes,
        configured_max_connections = budget.max_connections,
        configured_max_handshakes = budget.max_handshakes,
        "the open-file limit cannot hold the configured connection limits; lowering them (raise the hard \
         limit, e.g. LimitNOFILE=, to keep them)"
    );
    fitted
}

/// The MQTT front end's connection handler (MQTT and MQTTS share it).
fn mqtt_handler(config: &Config, broker: &Broker, lifecycle: &Lifecycle) -> StreamHandler {
    let ctx = MqttContext::new(broker.clone(), &config.mqtt);
    let closing = lifecycle.close_connections.clone();
    Arc::new(move |stream: ClientStream, peer, admission| {
        let certificate_name = stream.peer_certificate_name();
        Box::pin(mqtt::serve(
            stream,
            certificate_name,
            peer,
            admission,
            ctx.clone(),
            closing.clone(),
        ))
    })
}

/// MQTT's WebSocket subprotocols: `mqtt` (3.1.1 §6 and 5.0 §6: "the Client MUST include mqtt in the list of
/// WebSocket Sub Protocols it offers") and `mqttv3.1`, which MQTT 3.1 clients offer.
const MQTT_WS_SUBPROTOCOLS: &[&str] = &["mqtt", "mqttv3.1"];

/// The MQTT handler behind a WebSocket upgrade (MQTT over WS and WSS share it and MQTT's budget).
fn mqtt_websocket_handler(
    config: &Config,
    mqtt: &StreamHandler,
    lifecycle: &Lifecycle,
) -> StreamHandler {
    let ws = &config.websocket;
    let options = WebSocketOptions {
        path: ws.path.clone(),
        subprotocols: MQTT_WS_SUBPROTOCOLS,
        max_request_bytes: ws.max_request_bytes,
        max_message_size: ws.max_message_size,
        max_frame_size: ws.max_frame_size,
    };
    let closing = lifecycle.close_connections.clone();
    transport::upgrade_then(mqtt.clone(), Arc::new(options), closing)
}

/// The AMQP 0-9-1 front end's connection handler (AMQP and AMQPS share it).
fn amqp_handler(config: &Config, broker: &Broker, lifecycle: &Lifecycle) -> StreamHandler {
    let ctx = AmqpContext::new(broker.clone(), &config.amqp);
    let closing = lifecycle.close_connections.clone();
    Arc::new(move |stream, peer, admission| {
        Box::pin(amqp::serve(
            stream,
            peer,
            admission,
            ctx.clone(),
            closing.clone(),
        ))
    })
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
        topic_permissions: auth
            .topic_permissions
            .iter()
            .map(|t| TopicPermissionSpec {
                user: t.user.clone(),
                vhost: t.vhost.clone(),
                exchange: t.exchange.clone(),
                write: t.write.clone(),
                read: t.read.clone(),
            })
            .collect(),
        memory_limit: config.memory.high_water,
        connection_memory_limit: config.memory.max_per_connection,
        limits: CoreLimits {
            queues_per_vhost: Some(config.limits.max_queues_per_vhost).filter(|n| *n > 0),
            vhost_queues: config
                .limits
                .vhosts
                .iter()
                .map(|v| (v.name.clone(), config.limits.vhost_queues(&v.name)))
                .collect(),
            consumers_per_queue: config.limits.queue_consumers(),
        },
        ..BrokerOptions::default()
    }
}

/// Bind every listener before serving any, so a port clash fails start-up without half a server running.
async fn bind_all(table: Vec<ListenerSpec>) -> Result<Vec<BoundListener>, StartError> {
    let mut bound = Vec::with_capacity(table.len());
    for spec in table {
        let error = |source| StartError::Bind {
            listener: spec.name,
            addr: spec.addr,
            source,
        };
        let socket = TcpListener::bind(spec.addr).await.map_err(error)?;
        let addr = socket.local_addr().map_err(error)?;
        bound.push(BoundListener { spec, socket, addr });
    }
    Ok(bound)
}

/// Spawn every listener's accept loop or HTTP server, logging each address.
fn serve(
    config: Config,
    broker: Broker,
    lifecycle: Lifecycle,
    bound: Vec<BoundListener>,
) -> RunningServer {
    let listeners = TaskTracker::new();
    let mut addrs = Vec::with_capacity(bound.len());
    let mut budgets = Vec::new();
    for BoundListener { spec, socket, addr } in bound {
        let name = spec.name;
        info!(listener = name, %addr, "listening");
        addrs.push((name, addr));
        match spec.service {
            Service::Stream {
                tls,
                handler,
                limits,
            } => {
                budgets.push((name, limits.clone()));
                let options = AcceptOptions { name, tls, limits };
                let accept = transport::serve_listener(socket, options, handler, lifecycle.clone());
                listeners.spawn(accept);
            }
            Service::Http(router, max_connections) => {
                let stop = lifecycle.stop_accepting.clone();
                listeners.spawn(async move {
                    if let Err(e) = admin::serve(socket, router, max_connections, stop).await {
                        error!(listener = name, error = %e, "HTTP listener failed");
                    }
                });
            }
        }
    }
    listeners.close();
    RunningServer {
        addrs,
        limits: budgets,
        config,
        broker,
        _cancel_on_drop: lifecycle.close_connections.clone().drop_guard(),
        lifecycle,
        listeners,
    }
}

impl RunningServer {
    /// Where the listener `name` (`amqp`, `amqps`, `http`, ...) is bound; `None` when it is not running (e.g.
    /// `amqps` without TLS).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find_map(|(listener, addr)| (*listener == name).then_some(*addr))
    }

    /// Every running listener's name and address, in table order.
    pub fn addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.addrs
    }

    /// The connection counters of the stream listener `name` (`amqp`, `amqps`: they share one budget).
    pub fn connection_stats(&self, name: &str) -> Option<LimitStats> {
        self.limits
            .iter()
            .find_map(|(listener, limits)| (*listener == name).then(|| limits.stats()))
    }

    /// The connection limits in force for the stream listener `name`, after fitting them to the open-file
    /// limit.
    pub fn connection_budget(&self, name: &str) -> Option<Budget> {
        self.limits
            .iter()
            .find_map(|(listener, limits)| (*listener == name).then(|| limits.budget()))
    }

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
