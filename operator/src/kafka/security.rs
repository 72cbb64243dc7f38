//! The admin calls the User controller makes: SCRAM credentials (DescribeUserScramCredentials,
//! AlterUserScramCredentials) and ACLs (DescribeAcls, CreateAcls, DeleteAcls). A password never
//! leaves the operator: it sends the salted password (PBKDF2-HMAC-SHA-512 over a fresh salt), as
//! Kafka's admin client does.

use std::num::NonZeroU32;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, DeleteAclsRequest,
    DescribeAclsRequest, DescribeUserScramCredentialsRequest,
};

use super::{KafkaAdmin, KafkaError, missing, str_bytes};

/// Kafka's code for SCRAM-SHA-512 in the credential APIs.
const SCRAM_SHA_512: i8 = 2;
/// PBKDF2 iterations of the credentials the operator sets (Kafka accepts 4096 to 16384).
pub const SCRAM_ITERATIONS: u32 = 8192;
/// Kafka's ANY in an ACL filter's resource type, pattern type, operation and permission.
const ANY: i8 = 1;

/// One ACL binding, in the protocol's codes (resource type 2 = TOPIC, pattern 3 = LITERAL,
/// operation 4 = WRITE, permission 3 = ALLOW, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclEntry {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl KafkaAdmin {
    /// Whether `user` has a SCRAM-SHA-512 credential.
    pub async fn has_scram_credential(&mut self, user: &str) -> Result<bool, KafkaError> {
        let api = ApiKey::DescribeUserScramCredentials;
        let response = self
            .call(api, |_| {
                DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![UserName::default().with_name(str_bytes(user))]))
            })
            .await?;
        if response.error_code != 0 {
            return Err(self.refused(api, response.error_code, response.error_message.as_ref()));
        }
        let result = response
            .results
            .into_iter()
            .find(|r| r.user.as_str() == user)
            .ok_or_else(|| missing(api, user))?;
        match result.error_code {
            0 => Ok(result
                .credential_infos
                .iter()
                .any(|c| c.mechanism == SCRAM_SHA_512)),
            code if code == ResponseError::ResourceNotFound.code() => Ok(false),
            code => Err(self.refused(api, code, result.error_message.as_ref())),
        }
    }

    /// Sets `user`'s SCRAM-SHA-512 credential for `password` (a new salt each time).
    pub async fn set_scram_credential(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<(), KafkaError> {
        let api = ApiKey::AlterUserScramCredentials;
        let salt = random_bytes::<32>().ok_or_else(|| KafkaError::Encode {
            api,
            source: super::ProtocolError::Codec {
                reason: "the system's random source failed".to_owned(),
            },
        })?;
        let mut salted = [0u8; 64];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA512,
            NonZeroU32::new(SCRAM_ITERATIONS).unwrap_or(NonZeroU32::MIN),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(str_bytes(user))
            .with_mechanism(SCRAM_SHA_512)
            .with_iterations(i32::try_from(SCRAM_ITERATIONS).unwrap_or(i32::MAX))
            .with_salt(bytes::Bytes::copy_from_slice(&salt))
            .with_salted_password(bytes::Bytes::copy_from_slice(&salted));
        self.alter_scram(api, user, |request| {
            request.with_upsertions(vec![upsertion])
        })
        .await
        .map(|_| ())
    }

    /// Deletes `user`'s SCRAM-SHA-512 credential. `Ok(false)`: it had none.
    pub async fn delete_scram_credential(&mut self, user: &str) -> Result<bool, KafkaError> {
        let api = ApiKey::AlterUserScramCredentials;
        let deletion = ScramCredentialDeletion::default()
            .with_name(str_bytes(user))
            .with_mechanism(SCRAM_SHA_512);
        self.alter_scram(api, user, |request| request.with_deletions(vec![deletion]))
            .await
    }

    /// One AlterUserScramCredentials for `user`: `Ok(false)` if the broker found no credential
    /// to change.
    async fn alter_scram(
        &mut self,
        api: ApiKey,
        user: &str,
        build: impl FnOnce(AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsRequest,
    ) -> Result<bool, KafkaError> {
        let response = self
            .call(api, |_| build(AlterUserScramCredentialsRequest::default()))
            .await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.user.as_str() == user)
            .ok_or_else(|| missing(api, user))?;
        match result.error_code {
            0 => Ok(true),
            code if code == ResponseError::ResourceNotFound.code() => Ok(false),
            code => Err(self.refused(api, code, result.error_message.as_ref())),
        }
    }

    /// Every ACL binding of `principal`, in order.
    pub async fn acls_of(&mut self, principal: &str) -> Result<Vec<AclEntry>, KafkaError> {
        let api = ApiKey::DescribeAcls;
        let response = self
            .call(api, |_| {
                DescribeAclsRequest::default()
                    .with_resource_type_filter(ANY)
                    .with_resource_name_filter(None)
                    .with_pattern_type_filter(ANY)
                    .with_principal_filter(Some(str_bytes(principal)))
                    .with_host_filter(None)
                    .with_operation(ANY)
                    .with_permission_type(ANY)
            })
            .await?;
        if response.error_code != 0 {
            return Err(self.refused(api, response.error_code, response.error_message.as_ref()));
        }
        let mut entries: Vec<AclEntry> = response
            .resources
            .iter()
            .flat_map(|resource| {
                resource.acls.iter().map(|acl| AclEntry {
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.to_string(),
                    pattern_type: resource.pattern_type,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: acl.operation,
                    permission: acl.permission_type,
                })
            })
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Creates `entries` (one already there stays, once).
    pub async fn create_acls(&mut self, entries: &[AclEntry]) -> Result<(), KafkaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let api = ApiKey::CreateAcls;
        let creations: Vec<AclCreation> = entries
            .iter()
            .map(|e| {
                AclCreation::default()
                    .with_resource_type(e.resource_type)
                    .with_resource_name(str_bytes(&e.resource_name))
                    .with_resource_pattern_type(e.pattern_type)
                    .with_principal(str_bytes(&e.principal))
                    .with_host(str_bytes(&e.host))
                    .with_operation(e.operation)
                    .with_permission_type(e.permission)
            })
            .collect();
        let response = self
            .call(api, |_| {
                CreateAclsRequest::default().with_creations(creations)
            })
            .await?;
        if response.results.len() != entries.len() {
            return Err(missing(api, "an ACL"));
        }
        match response.results.iter().find(|r| r.error_code != 0) {
            Some(failed) => {
                Err(self.refused(api, failed.error_code, failed.error_message.as_ref()))
            }
            None => Ok(()),
        }
    }

    /// Deletes exactly `entries`; returns how many bindings the broker removed.
    pub async fn delete_acls(&mut self, entries: &[AclEntry]) -> Result<usize, KafkaError> {
        let filters = entries
            .iter()
            .map(|e| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(e.resource_type)
                    .with_resource_name_filter(Some(str_bytes(&e.resource_name)))
                    .with_pattern_type_filter(e.pattern_type)
                    .with_principal_filter(Some(str_bytes(&e.principal)))
                    .with_host_filter(Some(str_bytes(&e.host)))
                    .with_operation(e.operation)
                    .with_permission_type(e.permission)
            })
            .collect();
        self.delete_acl_filters(filters).await
    }

    /// Deletes every binding of `principal`; returns how many there were.
    pub async fn delete_acls_of(&mut self, principal: &str) -> Result<usize, KafkaError> {
        self.delete_acl_filters(vec![
            DeleteAclsFilter::default()
                .with_resource_type_filter(ANY)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(ANY)
                .with_principal_filter(Some(str_bytes(principal)))
                .with_host_filter(None)
                .with_operation(ANY)
                .with_permission_type(ANY),
        ])
        .await
    }

    async fn delete_acl_filters(
        &mut self,
        filters: Vec<DeleteAclsFilter>,
    ) -> Result<usize, KafkaError> {
        if filters.is_empty() {
            return Ok(0);
        }
        let api = ApiKey::DeleteAcls;
        let count = filters.len();
        let response = self
            .call(api, |_| DeleteAclsRequest::default().with_filters(filters))
            .await?;
        if response.filter_results.len() != count {
            return Err(missing(api, "an ACL filter"));
        }
        if let Some(failed) = response.filter_results.iter().find(|r| r.error_code != 0) {
            return Err(self.refused(api, failed.error_code, failed.error_message.as_ref()));
        }
        Ok(response
            .filter_results
            .iter()
            .map(|r| r.matching_acls.len())
            .sum())
    }
}

/// `N` bytes from the system's secure random source (`None` if it fails).
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes)
}
