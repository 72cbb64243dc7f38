//! The client certificate of a User with `authentication.type: tls`: issued for
//! `CN=<metadata.name>` from the Cluster's clients CA into a Secret named after the User
//! (`tls.crt`, `tls.key`, and the brokers' `ca.crt`), owned by the User. It is issued again when
//! it is missing or unreadable, within 30 days of its end, when the clients CA is another, or
//! when the brokers' CA changed.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::Digest;

use crate::cluster::authority::Authority;
use crate::cluster::certificates::{
    failed, issue_client, renewal_reason, tls_secret, value, write_secret,
};
use crate::cluster::credentials::{existing_secret, listener_tls_secret, secret_value};
use crate::cluster::validate::clients_ca_secret;
use crate::controller::{Context, Error, kube_error};
use crate::crd::{Cluster, User};

/// The annotation naming the clients CA (SHA-256 of its certificate, hex) a User's certificate
/// was signed by.
pub const CLIENTS_CA_ANNOTATION: &str = "fjord.dev/clients-ca-sha256";

/// What became of the User's certificate Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It is current.
    Current,
    /// It was issued, for this reason.
    Issued(String),
    /// It cannot be: the reason, for the User's status (not a retry).
    Refused(String),
}

/// Makes sure the User's certificate Secret exists and is current.
pub async fn ensure_certificate(
    user: &User,
    cluster: &Cluster,
    context: &Context,
) -> Result<Outcome, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let name = user.name_any();
    let (Some(listener_secret), Some(_)) = (
        listener_tls_secret(cluster),
        cluster.spec.listeners.client_certificates.as_ref(),
    ) else {
        return Ok(Outcome::Refused(format!(
            "Cluster '{}' has no listeners.clientCertificates: its brokers take no client \
             certificates",
            cluster.name_any()
        )));
    };
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    // Both made by the Cluster's controller: until they exist, a retry. The CA's certificate
    // and key from one read: a renewal between two reads would pair them wrongly.
    let clients_ca = clients_ca_secret(&cluster.name_any());
    let ca = Authority::read(&clients_ca, &existing_secret(&secrets, &clients_ca).await?)?;
    let brokers_ca = secret_value(&secrets, &listener_secret, "ca.crt").await?;
    let fingerprint = hex(&sha2::Sha256::digest(ca.cert.as_bytes()));

    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(kube_error::<Secret>("getting", &name))?;
    let reason = match &existing {
        None => "no certificate yet".to_owned(),
        Some(secret) if !owned_by(secret, user) => {
            return Ok(Outcome::Refused(format!(
                "Secret '{name}' exists and is not this User's: delete it, or name the User \
                 otherwise"
            )));
        }
        Some(secret) => match value(secret, "tls.crt")
            .map_or_else(|| Some("no tls.crt".to_owned()), |c| renewal_reason(c, &[]))
        {
            Some(reason) => reason,
            None if secret.annotations().get(CLIENTS_CA_ANNOTATION) != Some(&fingerprint) => {
                "the clients CA changed".to_owned()
            }
            None if value(secret, "ca.crt") != Some(brokers_ca.as_slice()) => {
                "the brokers' CA changed".to_owned()
            }
            None => return Ok(Outcome::Current),
        },
    };
    let (cert, key) = issue_client(&ca.cert, &ca.key, &name).map_err(|e| failed(&clients_ca, e))?;
    let brokers_ca = String::from_utf8_lossy(&brokers_ca);
    let mut secret = tls_secret(
        super::reconcile::user_secret_metadata(user),
        &cert,
        &key,
        &brokers_ca,
    );
    secret
        .annotations_mut()
        .insert(CLIENTS_CA_ANNOTATION.to_owned(), fingerprint);
    write_secret(&secrets, existing, secret).await?;
    Ok(Outcome::Issued(reason))
}

/// Whether `secret` is owned by `user` (made by the operator for it).
fn owned_by(secret: &Secret, user: &User) -> bool {
    let uid = user.uid();
    secret
        .owner_references()
        .iter()
        .any(|owner| owner.kind == "User" && Some(&owner.uid) == uid.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
