//! The User controller: a `User` becomes a principal on its Cluster, with a SCRAM-SHA-512
//! credential whose password is in a Secret, a client certificate in a Secret
//! ([`certificate`]), or no credential at all (a ServiceAccount's token logs in through
//! OAUTHBEARER), and the ACLs its spec lists. [`converge`] is the Kafka side, [`reconcile`] the
//! Kubernetes side.

pub mod certificate;
pub mod converge;
pub mod reconcile;
