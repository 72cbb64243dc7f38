//! User reconcile: the calls. A finalizer while the User exists, so its deletion removes its
//! credential and ACLs from the cluster first (released without Kafka when the Cluster is gone);
//! the Secret of a SCRAM user (created with a generated password unless one is there, owned by
//! the User so it goes with it); the Kafka side ([`converge`](crate::user::converge)); the
//! status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::cluster::build::MANAGER;
use crate::conditions::{READY, condition, with_transitions};
use crate::controller::{Context, Error, connect_admin, kube_error, patch_params, set_finalizer};
use crate::crd::{AuthenticationType, Cluster, User, UserStatus};
use crate::user::certificate::Outcome;
use crate::user::converge::{Credential, converge_user, desired_acls, principal, remove_user};

/// Present on a User while its deletion must remove it from the cluster.
pub const FINALIZER: &str = "fjord.dev/user-cleanup";

/// Resync of a converged user: catches ACLs changed behind the operator's back.
const RESYNC: Duration = Duration::from_secs(300);
/// A Cluster may appear later (applied in any order by GitOps).
const CLUSTER_RETRY: Duration = Duration::from_secs(30);

pub async fn reconcile_user(user: Arc<User>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile(&user, &context).await;
    context.metrics.reconciled("user", started.elapsed());
    if result.is_ok() {
        context.reconciled(&crate::controller::object_key(user.as_ref()));
    }
    result
}

async fn reconcile(user: &User, context: &Context) -> Result<Action, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let users: Api<User> = Api::namespaced(context.client.clone(), &namespace);
    let has_finalizer = user.finalizers().iter().any(|f| f == FINALIZER);
    if user.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            finalize(user, context, &users).await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        set_finalizer(&users, user, FINALIZER, true).await?;
    }
    let principal = principal(user);

    let clusters: Api<Cluster> = Api::namespaced(context.client.clone(), &namespace);
    let Some(cluster) = clusters
        .get_opt(&user.spec.cluster)
        .await
        .map_err(kube_error::<Cluster>("getting", &user.spec.cluster))?
    else {
        let message = format!(
            "Cluster '{}' does not exist in {namespace}",
            user.spec.cluster
        );
        write_status(&users, user, &principal, None, "ClusterNotFound", &message).await?;
        return Ok(Action::requeue(CLUSTER_RETRY));
    };

    let (credential, secret) = match user.spec.authentication.kind {
        AuthenticationType::ServiceAccount => (Credential::None, None),
        AuthenticationType::Tls => {
            match crate::user::certificate::ensure_certificate(user, &cluster, context).await? {
                Outcome::Current => {}
                Outcome::Issued(reason) => {
                    let note = format!(
                        "issued the client certificate of {principal} into Secret '{}' ({reason})",
                        user.name_any()
                    );
                    context
                        .event(user, false, "CertificateIssued", "Update", note)
                        .await;
                }
                Outcome::Refused(message) => {
                    write_status(
                        &users,
                        user,
                        &principal,
                        None,
                        "NoClientCertificate",
                        &message,
                    )
                    .await?;
                    context
                        .event(user, true, "NoClientCertificate", "Validate", message)
                        .await;
                    // What refused it (the Cluster, another Secret) is not watched: looked at
                    // again on the resync.
                    return Ok(Action::requeue(RESYNC));
                }
            }
            (Credential::None, None)
        }
        AuthenticationType::ScramSha512 => match scram_secret(user, context, &namespace).await? {
            Ok((password, version)) => {
                let reset = user
                    .status
                    .as_ref()
                    .and_then(|s| s.credential_secret_version.as_deref())
                    != Some(version.as_str());
                let credential = Credential::Scram {
                    user: user.name_any(),
                    password,
                    reset,
                };
                (credential, Some(version))
            }
            Err(message) => {
                write_status(&users, user, &principal, None, "InvalidSecret", &message).await?;
                context
                    .event(user, true, "InvalidSecret", "Validate", message)
                    .await;
                return Ok(Action::await_change());
            }
        },
    };

    let acls = desired_acls(&principal, &user.spec.acls);
    let outcome = match connect_admin(context, &cluster, &namespace).await {
        Ok(mut admin) => converge_user(&mut admin, &principal, &credential, &acls)
            .await
            .map_err(|source| Error::User {
                user: principal.clone(),
                source,
            }),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(converged) => {
            let message = format!("{} ACLs; credentials in place", converged.acls);
            let synced = Synced {
                acls: converged.acls,
                secret_version: secret,
            };
            write_status(&users, user, &principal, Some(&synced), "Synced", &message).await?;
            if converged.credential_set {
                let note = format!("set the SCRAM-SHA-512 credential of {principal}");
                context
                    .event(user, false, "CredentialSet", "Update", note)
                    .await;
            }
            if converged.acls_created + converged.acls_deleted > 0 {
                let note = format!(
                    "{principal}: {} ACLs created, {} deleted",
                    converged.acls_created, converged.acls_deleted
                );
                context
                    .event(user, false, "AclsUpdated", "Update", note)
                    .await;
            }
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            let reason = error.metric_label();
            let message = crate::controller::DisplayChain(&error).to_string();
            write_status(&users, user, &principal, None, reason, &message).await?;
            if error.is_transient() {
                Err(error)
            } else {
                context.event(user, true, reason, "Converge", message).await;
                context.metrics.failed("user", reason);
                // A certificate User comes back on the resync all the same: its certificate
                // is renewed before the converge.
                if user.spec.authentication.kind == AuthenticationType::Tls {
                    Ok(Action::requeue(RESYNC))
                } else {
                    Ok(Action::await_change())
                }
            }
        }
    }
}

/// The password in the User's Secret and the Secret's resource version; the Secret is created,
/// with a generated password, if there is none. `Err` (a message) when a Secret of that name
/// exists without a password.
async fn scram_secret(
    user: &User,
    context: &Context,
    namespace: &str,
) -> Result<Result<(String, String), String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let name = user.name_any();
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(kube_error::<Secret>("getting", &name))?;
    if let Some(secret) = existing {
        let password = secret
            .data
            .as_ref()
            .and_then(|data| data.get("password"))
            .and_then(|value| String::from_utf8(value.0.clone()).ok())
            .filter(|password| !password.is_empty());
        return Ok(match password {
            Some(password) => Ok((password, secret.resource_version().unwrap_or_default())),
            None => Err(format!(
                "Secret '{name}' exists without a `password` key: add one, or delete the Secret \
                 for the operator to generate it"
            )),
        });
    }
    let Some(password) = crate::cluster::credentials::generated_password() else {
        return Ok(Err("the system's random source failed".to_owned()));
    };
    let created = secrets
        .create(&PostParams::default(), &user_secret(user, &password))
        .await
        .map_err(kube_error::<Secret>("creating", &name))?;
    context
        .event(
            user,
            false,
            "SecretCreated",
            "Create",
            format!("created Secret '{name}' with a generated password"),
        )
        .await;
    Ok(Ok((
        password,
        created.resource_version().unwrap_or_default(),
    )))
}

/// The Secret of a SCRAM user: its name, password and a JAAS line for Java clients, owned by
/// the User.
pub fn user_secret(user: &User, password: &str) -> Secret {
    let name = user.name_any();
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"{name}\" password=\"{password}\";"
    );
    let data = [
        ("username", name.clone()),
        ("password", password.to_owned()),
        ("sasl.jaas.config", jaas),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), ByteString(value.into_bytes())))
    .collect();
    Secret {
        metadata: user_secret_metadata(user),
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The metadata of a User's Secret: its name, labels, and the User as owner (the Secret goes
/// with it).
pub fn user_secret_metadata(user: &User) -> ObjectMeta {
    ObjectMeta {
        name: Some(user.name_any()),
        namespace: user.namespace(),
        labels: Some(
            [
                ("app.kubernetes.io/managed-by", MANAGER),
                ("fjord.dev/cluster", user.spec.cluster.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ),
        owner_references: Some(vec![OwnerReference {
            api_version: User::api_version(&()).into_owned(),
            kind: User::kind(&()).into_owned(),
            name: user.name_any(),
            uid: user.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// Removes the user from the cluster (if the Cluster still stands) and releases the finalizer.
/// The Secret goes with the User (it is owned by it).
async fn finalize(user: &User, context: &Context, users: &Api<User>) -> Result<(), Error> {
    let namespace = user.namespace().unwrap_or_default();
    // As for a Topic: a namespace being deleted takes its Cluster (and, namespaced, the
    // operator's Role) with it; waiting on the brokers could only hang it.
    if crate::topic::reconcile::namespace_terminating(context, &namespace).await {
        tracing::info!(
            user = %user.name_any(),
            namespace,
            "namespace is being deleted: releasing the user without removing it"
        );
        return set_finalizer(users, user, FINALIZER, false).await;
    }
    let principal = user
        .status
        .as_ref()
        .and_then(|s| s.principal.clone())
        .unwrap_or_else(|| principal(user));
    let clusters: Api<Cluster> = Api::namespaced(context.client.clone(), &namespace);
    let cluster = clusters
        .get_opt(&user.spec.cluster)
        .await
        .map_err(kube_error::<Cluster>("getting", &user.spec.cluster))?;
    match cluster {
        Some(cluster) if cluster.meta().deletion_timestamp.is_none() => {
            let mut admin = connect_admin(context, &cluster, &namespace).await?;
            let scram_user = (user.spec.authentication.kind == AuthenticationType::ScramSha512)
                .then(|| user.name_any());
            let (acls, credential) = remove_user(&mut admin, &principal, scram_user.as_deref())
                .await
                .map_err(|source| Error::User {
                    user: principal.clone(),
                    source,
                })?;
            let note = format!(
                "removed {principal} from the cluster: {acls} ACLs{}",
                if credential {
                    " and its credential"
                } else {
                    ""
                }
            );
            context
                .event(user, false, "UserRemoved", "Delete", note)
                .await;
        }
        _ => {
            let note = format!(
                "Cluster '{}' is gone: releasing the user without removing it",
                user.spec.cluster
            );
            context
                .event(user, false, "ClusterGone", "Delete", note)
                .await;
        }
    }
    set_finalizer(users, user, FINALIZER, false).await
}

/// What a synced User's status records.
struct Synced {
    acls: usize,
    secret_version: Option<String>,
}

async fn write_status(
    users: &Api<User>,
    user: &User,
    principal: &str,
    synced: Option<&Synced>,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let previous = user.status.clone().unwrap_or_default();
    let generation = user.meta().generation;
    let with_secret = user.spec.authentication.kind != AuthenticationType::ServiceAccount;
    let status = UserStatus {
        observed_generation: generation,
        conditions: with_transitions(
            &previous.conditions,
            vec![condition(
                READY,
                synced.is_some(),
                reason,
                message,
                generation,
            )],
            Timestamp::now(),
        ),
        principal: Some(principal.to_owned()),
        secret: with_secret.then(|| user.name_any()),
        acls: synced.map_or(previous.acls, |s| {
            Some(i32::try_from(s.acls).unwrap_or(i32::MAX))
        }),
        // Kept until a credential is set from another version of the Secret.
        credential_secret_version: synced
            .and_then(|s| s.secret_version.clone())
            .or(previous.credential_secret_version),
    };
    let name = user.name_any();
    users
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(kube_error::<User>("writing the status of", &name))?;
    Ok(())
}
