//! Fjord broker: a Kafka-compatible event-streaming broker.
//!
//! Data flow, top to bottom (the modules not listed yet arrive as the broker grows):
//!
//! ```text
//! TCP bytes -> server -> protocol -> handler -> partition -> log
//!                                                  |
//!                      record (batch format) ------+
//! ```
//!
//! - [`record`]: the Kafka v2 record batch format: validation, header edits, building batches.
//! - [`log`]: the segmented, durable commit log of one partition.

pub mod log;
pub mod record;
