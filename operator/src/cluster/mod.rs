//! The Cluster controller: a `Cluster` becomes a ConfigMap, two Services, one StatefulSet per
//! zone, a PodDisruptionBudget and a ServiceAccount; pods whose template is out of date are
//! replaced one at a time while the brokers are healthy.
//!
//! ```text
//! Cluster -> validate (pure) -> build (pure) -> server-side apply -> delete orphans by label
//!         -> rollout step (one pod, gated on /v1/status) -> status
//! ```

pub mod authority;
pub mod build;
pub mod certificates;
pub mod credentials;
pub mod reconcile;
pub mod rollout;
pub mod scale;
pub mod service_accounts;
pub mod validate;
