//! CreateAcls, DescribeAcls and DeleteAcls: the ACL bindings in the cluster metadata (see
//! [`crate::security::acl`]). As in Kafka: without an authorizer each answers SECURITY_DISABLED;
//! creating and deleting need ALTER on the cluster and describing DESCRIBE, or
//! CLUSTER_AUTHORIZATION_FAILED; a malformed binding or filter is INVALID_REQUEST with a message,
//! and the others in the request are still served.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::{Context, str_bytes};
use crate::cluster::MetadataRecord;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, ResourceType};

/// Why a whole request is refused: no authorizer, or the client may not do `operation` on the
/// cluster.
fn refused(ctx: &Context, operation: Operation) -> Option<(ResponseError, &'static str)> {
    if !ctx.authorizing() {
        return Some((
            ResponseError::SecurityDisabled,
            "No authorizer is configured on the broker (--authorizer)",
        ));
    }
    (!ctx.authorized_cluster(operation)).then_some((
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed",
    ))
}

pub(super) async fn create(ctx: &Context, request: CreateAclsRequest) -> CreateAclsResponse {
    let failed = |error: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(ctx, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| failed(error, message.to_owned()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_codes(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let bindings: Vec<AclBinding> = parsed.iter().filter_map(|b| b.clone().ok()).collect();
    let committed = if bindings.is_empty() {
        Ok(())
    } else {
        ctx.commit(vec![MetadataRecord::CreateAcls { bindings }])
            .await
    };
    let results = parsed
        .into_iter()
        .map(|binding| match (binding, &committed) {
            (Err(problem), _) => failed(ResponseError::InvalidRequest, problem),
            (Ok(_), Err((error, message))) => failed(*error, message.clone()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub(super) fn describe(ctx: &Context, request: &DescribeAclsRequest) -> DescribeAclsResponse {
    let failed = |error: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(ctx, Operation::Describe) {
        return failed(error, message.to_owned());
    }
    let filter = match AclFilter::from_codes(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(problem) => return failed(ResponseError::InvalidRequest, problem),
    };
    // Bindings grouped by the resource (pattern) they are about, as Kafka answers them.
    let mut resources: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for binding in ctx.image().acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((
                binding.resource_type,
                binding.resource_name.as_str(),
                binding.pattern,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(binding.principal.clone()))
                    .with_host(str_bytes(binding.host.clone()))
                    .with_operation(binding.operation.code())
                    .with_permission_type(binding.permission.code()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub(super) async fn delete(ctx: &Context, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let failed = |error: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(ctx, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(error, message.to_owned()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let image = ctx.image();
    let matched: Vec<Result<Vec<&AclBinding>, String>> = request
        .filters
        .iter()
        .map(|f| {
            let filter = AclFilter::from_codes(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )?;
            Ok(image.acls.iter().filter(|b| filter.matches(b)).collect())
        })
        .collect();
    let mut bindings: Vec<AclBinding> = matched
        .iter()
        .flatten()
        .flatten()
        .map(|b| (*b).clone())
        .collect();
    bindings.sort();
    bindings.dedup();
    let committed = if bindings.is_empty() {
        Ok(())
    } else {
        ctx.commit(vec![MetadataRecord::DeleteAcls { bindings }])
            .await
    };
    let results = matched
        .into_iter()
        .map(|matched| match (matched, &committed) {
            (Err(problem), _) => failed(ResponseError::InvalidRequest, problem),
            (Ok(_), Err((error, message))) => failed(*error, message.clone()),
            (Ok(bindings), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(str_bytes(b.resource_name.clone()))
                            .with_pattern_type(b.pattern.code())
                            .with_principal(str_bytes(b.principal.clone()))
                            .with_host(str_bytes(b.host.clone()))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
