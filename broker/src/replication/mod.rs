//! Partition replication between brokers: followers pull from their leader over one stream per
//! pair of brokers, carrying every partition the pair shares (as Kafka's replica fetchers do).
//!
//! - [`wire`]: the fetch messages as bytes (sans-IO, fuzzed); gRPC is only the transport.
//! - [`leader`]: what a leader answers a follower's fetch.
//! - [`transport`]: the fetch stream over gRPC on the inter-broker listener.
//! - [`follower`]: the fetchers that keep this broker's follower replicas up with their leaders.
//! - [`throttle`]: the replication throttles of out-of-sync replicas (reassignment, catch-up).

pub mod follower;
pub mod leader;
pub mod throttle;
pub mod transport;
pub mod wire;
