//! The secrets of a secured Cluster the operator itself uses: its own SCRAM credential (made
//! once, before the first broker starts, so the brokers seed the cluster with it), and how its
//! admin client reaches the brokers (the listener Secret's CA, that credential).

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::build::build_operator_credentials;
use super::validate::{OPERATOR_USER, ValidatedCluster};
use crate::controller::{Context, Error, kube_error};
use crate::crd::Cluster;
use crate::kafka::AdminSecurity;

/// Creates the operator's credentials Secret of `cluster` if there is none. Never replaced: the
/// brokers read it only when the cluster is first formed.
pub async fn ensure_operator_credentials(
    context: &Context,
    cluster: &ValidatedCluster,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &cluster.namespace);
    let name = cluster.operator_credentials();
    if secrets
        .get_opt(&name)
        .await
        .map_err(kube_error::<Secret>("getting", &name))?
        .is_some()
    {
        return Ok(());
    }
    let password = generated_password().ok_or_else(|| Error::Secret {
        name: name.clone(),
        problem: "the system's random source failed".into(),
    })?;
    secrets
        .create(
            &PostParams::default(),
            &build_operator_credentials(cluster, &password),
        )
        .await
        .map_err(kube_error::<Secret>("creating", &name))?;
    Ok(())
}

/// A fresh random password: 24 bytes, URL-safe base64.
pub fn generated_password() -> Option<String> {
    use base64::Engine;
    let bytes = crate::kafka::random_bytes::<24>()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How the operator's admin client reaches `cluster`'s brokers: trusting the listener Secret's
/// `ca.crt` when they speak TLS, logged in with its own credential when clients log in.
pub async fn admin_security(context: &Context, cluster: &Cluster) -> Result<AdminSecurity, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let mut security = AdminSecurity::default();
    let listeners = &cluster.spec.listeners;
    if let Some(name) = listener_tls_secret(cluster) {
        let ca = secret_value(&secrets, &name, "ca.crt").await?;
        let config = AdminSecurity::tls_config(&ca, None)
            .map_err(|problem| Error::Secret { name, problem })?;
        security.tls = Some(config);
    }
    if listeners.authentication.is_some() {
        let name = format!("{}-operator-credentials", cluster.name_any());
        let password = secret_value(&secrets, &name, "password").await?;
        let password = String::from_utf8(password).map_err(|_| Error::Secret {
            name: name.clone(),
            problem: "`password` is not UTF-8".into(),
        })?;
        security.scram_sha_512 = Some((OPERATOR_USER.to_owned(), password));
    }
    Ok(security)
}

/// The Secret with the brokers' certificate and its `ca.crt`, when `cluster` speaks TLS.
pub fn listener_tls_secret(cluster: &Cluster) -> Option<String> {
    let tls = cluster.spec.listeners.tls.as_ref()?;
    Some(
        tls.secret_name
            .clone()
            .unwrap_or_else(|| super::validate::issued_tls_secret(&cluster.name_any())),
    )
}

/// Secret `name`; a missing one is a retry.
pub async fn existing_secret(secrets: &Api<Secret>, name: &str) -> Result<Secret, Error> {
    secrets
        .get_opt(name)
        .await
        .map_err(kube_error::<Secret>("getting", name))?
        .ok_or_else(|| Error::Secret {
            name: name.to_owned(),
            problem: "it does not exist".into(),
        })
}

/// The bytes of `key` in Secret `name`; a missing Secret or key is a retry.
pub async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> Result<Vec<u8>, Error> {
    existing_secret(secrets, name)
        .await?
        .data
        .and_then(|mut data| data.remove(key))
        .map(|value| value.0)
        .ok_or_else(|| Error::Secret {
            name: name.to_owned(),
            problem: format!("it has no `{key}`"),
        })
}
