//! FerryMQ: an open-protocol message broker speaking AMQP 0-9-1 over one shared broker core with a durable
//! journal. See README.md and docs/ARCHITECTURE.md for the layout: `server` composes `transport`,
//! the protocol adapters (`amqp`, `aws`), `core`, `store` and `admin`.

pub mod admin;
pub mod amqp;
pub mod aws;
pub mod config;
pub mod core;
pub mod mqtt;
pub mod server;
pub mod store;
pub mod transport;
