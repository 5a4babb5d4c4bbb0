//! Byte transports under the protocol adapters: TCP listeners, TLS termination, connection budgets, the
//! process's file-descriptor budget, and the read buffer every connection reads through.
//!
//! `tcp` runs accept loops that hand each accepted connection, as a [`ClientStream`], to a protocol handler
//! in its own task; `tls` loads certificates and builds the rustls acceptor; `websocket` upgrades a
//! connection to a WebSocket and hands the handler the bytes of its binary messages as one more
//! `ClientStream` variant. The adapters (AMQP; MQTT and STOMP) see only `AsyncRead + AsyncWrite` and never
//! know whether TLS or WebSocket was involved. `read_buffer` reads a connection's bytes into chunks of known size, so the
//! adapter can count them in the memory gauge and copy small frames out instead of pinning a large chunk.
//! Nothing here knows a protocol: frames, handshakes and close codes belong to the adapters.

pub mod fd;
pub mod limits;
pub mod read_buffer;
pub mod tcp;
pub mod tenants;
pub mod tls;
pub mod websocket;

pub use limits::{Admission, Budget, ConnectionLimits, LimitStats};
pub use read_buffer::ReadBuffer;
pub use tcp::{AcceptOptions, ClientStream, Lifecycle, StreamHandler, serve_listener};
pub use tenants::{Refusal, TenantChannel, TenantConnection, TenantLimits};
pub use tls::{TlsError, load_acceptor};
pub use websocket::{WebSocketOptions, upgrade_then};
