//! Fjord operator: reconciles `Cluster` and `Topic` resources (group `fjord.dev`) into broker
//! StatefulSets and live Kafka topics.
//!
//! ```text
//! kubectl apply Cluster ─> controller ─> cluster::validate ─> cluster::build ─> server-side apply
//!                                         (pure)              (pure)           ConfigMap, Services,
//!                                                                              StatefulSet per zone,
//!                                                                              PDB, ServiceAccount
//!                                      └> cluster::rollout (one pod at a time, gated on the
//!                                         brokers' /v1/status) ─> status
//! kubectl apply Topic   ─> controller ─> topic::validate ─> kafka::KafkaAdmin ─> topic::converge
//!                                         (pure)            (bootstrap Service)   create, grow,
//!                                                                                 configs, delete
//!                                                           ─> status
//! ```
//!
//! - [`crd`]: the resource types; `crds/` is generated from them.
//! - [`controller`]: shared context, errors and the wiring of both controllers.
//! - [`leader`]: Lease-based leader election, so replicas can run side by side.
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`rbac`]: the API permissions the code needs (the chart's rules are checked against it).
//! - [`render`]: `fjord-operator crd` and `render`, without a cluster.

pub mod cluster;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod render;
pub mod topic;
pub mod user;
