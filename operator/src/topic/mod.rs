//! The Topic controller: a `Topic` becomes a live Kafka topic on its Cluster's brokers,
//! through the Kafka admin protocol (never by touching broker files).
//!
//! ```text
//! Topic -> finalizer only while deletionPolicy: Delete -> validate (pure)
//!       -> an older Topic naming the same Kafka topic? ResourceConflict (claims, pure)
//!       -> Cluster lookup
//!       -> KafkaAdmin (bootstrap Service) -> converge (create / add partitions / configs)
//!       -> status (topic id, partitions, Ready with a reason)
//! ```

pub mod claims;
pub mod converge;
pub mod reconcile;
pub mod validate;
