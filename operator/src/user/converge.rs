//! The Kafka side of a User: its principal, its SCRAM credential and its ACL bindings made to
//! match the spec over `KafkaAdmin`, and removed when the User is deleted.

use std::collections::BTreeSet;

use kube::ResourceExt;

use crate::crd::{
    AclOperation, AclPatternType, AclPermission, AclResourceType, AclRule, AuthenticationType, User,
};
use crate::kafka::{AclEntry, KafkaAdmin, KafkaError};

/// Kafka's name of the one CLUSTER resource.
const CLUSTER_RESOURCE: &str = "kafka-cluster";

/// The principal the brokers know `user` by: `User:<metadata.name>` for SCRAM, the token's
/// `User:system:serviceaccount:<namespace>:<name>` for a ServiceAccount.
pub fn principal(user: &User) -> String {
    match user.spec.authentication.kind {
        AuthenticationType::ScramSha512 => format!("User:{}", user.name_any()),
        // The subject of the certificate the operator issues, as the brokers name it.
        AuthenticationType::Tls => format!("User:CN={}", user.name_any()),
        AuthenticationType::ServiceAccount => format!(
            "User:system:serviceaccount:{}:{}",
            user.namespace().unwrap_or_default(),
            user.spec
                .authentication
                .service_account
                .as_deref()
                .unwrap_or_default()
        ),
    }
}

/// The bindings `rules` mean for `principal`: one per operation, each once, in order.
pub fn desired_acls(principal: &str, rules: &[AclRule]) -> Vec<AclEntry> {
    let entries: BTreeSet<AclEntry> = rules
        .iter()
        .flat_map(|rule| {
            rule.operations.iter().map(move |operation| AclEntry {
                resource_type: match rule.resource.kind {
                    AclResourceType::Topic => 2,
                    AclResourceType::Group => 3,
                    AclResourceType::Cluster => 4,
                    AclResourceType::TransactionalId => 5,
                },
                resource_name: match rule.resource.kind {
                    AclResourceType::Cluster => CLUSTER_RESOURCE.to_owned(),
                    _ => rule.resource.name.clone().unwrap_or_else(|| "*".to_owned()),
                },
                pattern_type: match rule.resource.pattern_type {
                    AclPatternType::Literal => 3,
                    AclPatternType::Prefix => 4,
                },
                principal: principal.to_owned(),
                host: rule.host.clone(),
                operation: operation_code(*operation),
                permission: match rule.permission {
                    AclPermission::Deny => 2,
                    AclPermission::Allow => 3,
                },
            })
        })
        .collect();
    entries.into_iter().collect()
}

fn operation_code(operation: AclOperation) -> i8 {
    match operation {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
        AclOperation::ClusterAction => 9,
        AclOperation::DescribeConfigs => 10,
        AclOperation::AlterConfigs => 11,
        AclOperation::IdempotentWrite => 12,
    }
}

/// The SCRAM credential a User needs on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// None (a ServiceAccount's token proves the user).
    None,
    /// SCRAM-SHA-512 for `user` with `password`: set if the cluster has none, or always with
    /// `reset` (the password changed).
    Scram {
        user: String,
        password: String,
        reset: bool,
    },
}

/// What a converge found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvergedUser {
    /// The SCRAM credential was set now.
    pub credential_set: bool,
    pub acls_created: usize,
    pub acls_deleted: usize,
    /// The bindings the user has now.
    pub acls: usize,
}

/// Makes the cluster hold `credential` and exactly `acls` for `principal`.
pub async fn converge_user(
    admin: &mut KafkaAdmin,
    principal: &str,
    credential: &Credential,
    acls: &[AclEntry],
) -> Result<ConvergedUser, KafkaError> {
    let mut converged = ConvergedUser::default();
    if let Credential::Scram {
        user,
        password,
        reset,
    } = credential
        && (*reset || !admin.has_scram_credential(user).await?)
    {
        admin.set_scram_credential(user, password).await?;
        converged.credential_set = true;
    }
    let have: BTreeSet<AclEntry> = admin.acls_of(principal).await?.into_iter().collect();
    let want: BTreeSet<AclEntry> = acls.iter().cloned().collect();
    let missing: Vec<AclEntry> = want.difference(&have).cloned().collect();
    let extra: Vec<AclEntry> = have.difference(&want).cloned().collect();
    admin.create_acls(&missing).await?;
    admin.delete_acls(&extra).await?;
    converged.acls_created = missing.len();
    converged.acls_deleted = extra.len();
    converged.acls = want.len();
    Ok(converged)
}

/// Removes everything the cluster holds for a deleted User: its ACLs and, for SCRAM, its
/// credential. Returns how many bindings went and whether a credential did.
pub async fn remove_user(
    admin: &mut KafkaAdmin,
    principal: &str,
    scram_user: Option<&str>,
) -> Result<(usize, bool), KafkaError> {
    // Brokers without an authorizer hold no ACLs (SECURITY_DISABLED): nothing to remove.
    let acls = match admin.delete_acls_of(principal).await {
        Err(error)
            if error.error_code()
                == Some(kafka_protocol::ResponseError::SecurityDisabled.code()) =>
        {
            0
        }
        other => other?,
    };
    let credential = match scram_user {
        Some(user) => admin.delete_scram_credential(user).await?,
        None => false,
    };
    Ok((acls, credential))
}
