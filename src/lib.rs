//! FerryMQ
