//! Kafka's ACL model and its authorisation rule, as Kafka's standard authorizer applies it: a
//! binding allows or denies a principal (or `User:*`) from a host (or `*`) an operation on
//! resources of one type, named literally (or `*`, every one) or by prefix.
//!
//! A request is allowed when the principal is a super user, or when an ALLOW binding matches and
//! no DENY binding does; without a matching binding it is denied (Kafka's
//! `allow.everyone.if.no.acl.found=false`). As in Kafka, `ALL` stands for every operation, and
//! an allowed READ, WRITE, DELETE or ALTER implies DESCRIBE, an allowed ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS.
//!
//! The numbers are the protocol's (CreateAcls, DescribeAcls, DeleteAcls).

use std::collections::BTreeSet;

/// The kinds of resource an ACL protects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub const ALL: [Self; 6] = [
        Self::Topic,
        Self::Group,
        Self::Cluster,
        Self::TransactionalId,
        Self::DelegationToken,
        Self::User,
    ];

    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The operations that apply to resources of this type (Kafka's
    /// `AclEntry.supportedOperations`): what an `authorized_operations` field reports on.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Self::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            Self::Group => &[Read, Describe, Delete],
            Self::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            Self::TransactionalId => &[Describe, Write],
            Self::DelegationToken => &[Describe],
            Self::User => &[CreateTokens, DescribeTokens],
        }
    }

    /// Kafka's name (`TOPIC`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Topic => "TOPIC",
            Self::Group => "GROUP",
            Self::Cluster => "CLUSTER",
            Self::TransactionalId => "TRANSACTIONAL_ID",
            Self::DelegationToken => "DELEGATION_TOKEN",
            Self::User => "USER",
        }
    }
}

/// How a binding names its resources.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum PatternType {
    /// The name itself, or `*` for every resource of the type.
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        [Self::Literal, Self::Prefixed]
            .into_iter()
            .find(|p| p.code() == code)
    }
}

/// What a request does to a resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    const CODES: [(Self, i8); 13] = [
        (Self::All, 2),
        (Self::Read, 3),
        (Self::Write, 4),
        (Self::Create, 5),
        (Self::Delete, 6),
        (Self::Alter, 7),
        (Self::Describe, 8),
        (Self::ClusterAction, 9),
        (Self::DescribeConfigs, 10),
        (Self::AlterConfigs, 11),
        (Self::IdempotentWrite, 12),
        (Self::CreateTokens, 13),
        (Self::DescribeTokens, 14),
    ];

    pub fn code(self) -> i8 {
        Self::CODES
            .iter()
            .find(|(op, _)| *op == self)
            .map_or(0, |(_, code)| *code)
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(op, _)| *op)
    }

    /// Kafka's name (`DESCRIBE_CONFIGS`).
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::Alter => "ALTER",
            Self::Describe => "DESCRIBE",
            Self::ClusterAction => "CLUSTER_ACTION",
            Self::DescribeConfigs => "DESCRIBE_CONFIGS",
            Self::AlterConfigs => "ALTER_CONFIGS",
            Self::IdempotentWrite => "IDEMPOTENT_WRITE",
            Self::CreateTokens => "CREATE_TOKENS",
            Self::DescribeTokens => "DESCRIBE_TOKENS",
        }
    }

    /// The operations whose ALLOW also allows this one (itself, ALL, and Kafka's implications).
    fn allowed_by(self) -> &'static [Self] {
        match self {
            Self::Describe => &[
                Self::Describe,
                Self::All,
                Self::Read,
                Self::Write,
                Self::Delete,
                Self::Alter,
            ],
            Self::DescribeConfigs => &[Self::DescribeConfigs, Self::All, Self::AlterConfigs],
            Self::All => &[Self::All],
            Self::Read => &[Self::Read, Self::All],
            Self::Write => &[Self::Write, Self::All],
            Self::Create => &[Self::Create, Self::All],
            Self::Delete => &[Self::Delete, Self::All],
            Self::Alter => &[Self::Alter, Self::All],
            Self::ClusterAction => &[Self::ClusterAction, Self::All],
            Self::AlterConfigs => &[Self::AlterConfigs, Self::All],
            Self::IdempotentWrite => &[Self::IdempotentWrite, Self::All],
            Self::CreateTokens => &[Self::CreateTokens, Self::All],
            Self::DescribeTokens => &[Self::DescribeTokens, Self::All],
        }
    }
}

/// Allow or deny.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }
}

/// One ACL.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    /// The resource's name, `*` (literal: every one) or a prefix. The cluster is `kafka-cluster`.
    pub resource_name: String,
    pub pattern: PatternType,
    /// `User:<name>`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*` for every one.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// The name Kafka gives the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

impl AclBinding {
    /// Whether this binding is about `resource_type` `name`, for `principal` from `host`.
    fn applies(
        &self,
        resource_type: ResourceType,
        name: &str,
        principal: &str,
        host: &str,
    ) -> bool {
        let resource = self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            };
        resource
            && (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == "*")
    }
}

/// A request for one operation on one resource, by whom and from where.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource_name: &'a str,
}

/// Whether `action` is allowed by `bindings`, with `super_users` allowed everything.
pub fn authorize<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding> + Clone,
    super_users: &BTreeSet<String>,
    action: &Action<'_>,
) -> bool {
    if super_users.contains(action.principal) {
        return true;
    }
    let applying = || {
        bindings.clone().into_iter().filter(|b| {
            b.applies(
                action.resource_type,
                action.resource_name,
                action.principal,
                action.host,
            )
        })
    };
    let denied = applying().any(|b| {
        b.permission == Permission::Deny
            && (b.operation == action.operation || b.operation == Operation::All)
    });
    !denied
        && applying().any(|b| {
            b.permission == Permission::Allow
                && action.operation.allowed_by().contains(&b.operation)
        })
}

/// A pattern of bindings, as DescribeAcls and DeleteAcls send it: each field `None` (Kafka's ANY,
/// or a null string) matches every value. A pattern type of MATCH matches, for a name, the
/// bindings that would apply to a resource of that name: literal ones of that name or `*`, and
/// prefixed ones the name starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// The pattern type a filter asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type, the name compared as it is.
    #[default]
    Any,
    /// Bindings that apply to the named resource (Kafka's MATCH).
    Match,
    Exactly(PatternType),
}

/// Kafka's code for ANY in a filter's resource type, pattern type, operation or permission.
const ANY: i8 = 1;
/// Kafka's code for MATCH in a filter's pattern type (0 UNKNOWN, 1 ANY, 2 MATCH, 3 LITERAL,
/// 4 PREFIXED).
const MATCH: i8 = 2;

impl AclFilter {
    /// A filter from the protocol's codes, or what is wrong with it (Kafka's INVALID_REQUEST).
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, String> {
        fn any_or<T>(code: i8, known: Option<T>, what: &str) -> Result<Option<T>, String> {
            match (code, known) {
                (ANY, _) => Ok(None),
                (_, Some(value)) => Ok(Some(value)),
                (_, None) => Err(format!("unknown {what} {code} in the ACL filter")),
            }
        }
        Ok(Self {
            resource_type: any_or(
                resource_type,
                ResourceType::from_code(resource_type),
                "resource type",
            )?,
            resource_name: resource_name.map(str::to_owned),
            pattern: match pattern {
                ANY => PatternFilter::Any,
                MATCH => PatternFilter::Match,
                code => PatternFilter::Exactly(
                    PatternType::from_code(code)
                        .ok_or_else(|| format!("unknown pattern type {code} in the ACL filter"))?,
                ),
            },
            principal: principal.map(str::to_owned),
            host: host.map(str::to_owned),
            operation: any_or(operation, Operation::from_code(operation), "operation")?,
            permission: any_or(permission, Permission::from_code(permission), "permission")?,
        })
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        let name = match (&self.resource_name, self.pattern) {
            (None, _) => true,
            (Some(name), PatternFilter::Match) => match binding.pattern {
                PatternType::Literal => {
                    binding.resource_name == *name || binding.resource_name == "*"
                }
                PatternType::Prefixed => name.starts_with(&binding.resource_name),
            },
            (Some(name), _) => binding.resource_name == *name,
        };
        let pattern = match self.pattern {
            PatternFilter::Any | PatternFilter::Match => true,
            PatternFilter::Exactly(pattern) => binding.pattern == pattern,
        };
        name && pattern
            && self
                .resource_type
                .is_none_or(|t| t == binding.resource_type)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && self.operation.is_none_or(|o| o == binding.operation)
            && self.permission.is_none_or(|p| p == binding.permission)
    }
}

impl AclBinding {
    /// A binding from the protocol's codes (CreateAcls), or what is wrong with it (Kafka's
    /// INVALID_REQUEST).
    pub fn from_codes(
        resource_type: i8,
        resource_name: &str,
        pattern: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<Self, String> {
        let resource_type = ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("invalid resource type {resource_type}"))?;
        let pattern = PatternType::from_code(pattern)
            .ok_or_else(|| format!("invalid pattern type {pattern}"))?;
        let operation = Operation::from_code(operation)
            .ok_or_else(|| format!("invalid operation {operation}"))?;
        let permission = Permission::from_code(permission)
            .ok_or_else(|| format!("invalid permission type {permission}"))?;
        if resource_name.is_empty() {
            return Err("the resource name must not be empty".to_owned());
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if pattern == PatternType::Prefixed && resource_name == "*" {
            return Err("a prefixed resource name must not be '*'".to_owned());
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "invalid principal '{principal}' (expected User:<name>)"
                ));
            }
        }
        if host.is_empty() {
            return Err("the host must be an address or '*'".to_owned());
        }
        Ok(Self {
            resource_type,
            resource_name: resource_name.to_owned(),
            pattern,
            principal: principal.to_owned(),
            host: host.to_owned(),
            operation,
            permission,
        })
    }
}

/// Whether `principal` from `host` may do `operation` on some resource of `resource_type`: an
/// ALLOW binding for it exists, and no DENY of every resource of the type (a literal `*`) does.
/// Kafka asks this of an idempotent producer without IDEMPOTENT_WRITE (KIP-679: WRITE on any
/// topic will do).
pub fn authorize_any<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding> + Clone,
    super_users: &BTreeSet<String>,
    principal: &str,
    host: &str,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if super_users.contains(principal) {
        return true;
    }
    let applying = || {
        bindings.clone().into_iter().filter(|b| {
            b.resource_type == resource_type
                && (b.principal == principal || b.principal == "User:*")
                && (b.host == host || b.host == "*")
        })
    };
    let denied_everywhere = applying().any(|b| {
        b.permission == Permission::Deny
            && b.pattern == PatternType::Literal
            && b.resource_name == "*"
            && (b.operation == operation || b.operation == Operation::All)
    });
    !denied_everywhere
        && applying().any(|b| {
            b.permission == Permission::Allow && operation.allowed_by().contains(&b.operation)
        })
}

/// The ACL authorizer of a broker (`--authorizer acl`): its super users, and the limit on how
/// often denials are logged.
#[derive(Debug)]
pub struct Authorizer {
    super_users: BTreeSet<String>,
    denials: super::LogLimit,
}

impl Authorizer {
    pub fn new(super_users: impl IntoIterator<Item = String>) -> Self {
        Self {
            super_users: super_users.into_iter().collect(),
            denials: super::LogLimit::new(20),
        }
    }

    pub fn super_users(&self) -> &BTreeSet<String> {
        &self.super_users
    }

    /// Whether `action` is allowed by `bindings`.
    pub fn allows<'a>(
        &self,
        bindings: impl IntoIterator<Item = &'a AclBinding> + Clone,
        action: &Action<'_>,
    ) -> bool {
        authorize(bindings, &self.super_users, action)
    }

    /// Logs a denied action (rate-limited: at most 20 lines a minute, with a count of those held
    /// back), as Kafka's authorizer log does.
    pub fn log_denied(&self, action: &Action<'_>) {
        if let Some(held) = self.denials.admit() {
            tracing::info!(
                principal = action.principal,
                host = action.host,
                operation = action.operation.name(),
                resource_type = action.resource_type.name(),
                resource = action.resource_name,
                held_back = held,
                "request denied"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.to_owned(),
            pattern,
            principal: principal.to_owned(),
            host: "*".to_owned(),
            operation,
            permission,
        }
    }

    fn action<'a>(
        principal: &'a str,
        operation: Operation,
        resource_type: ResourceType,
        name: &'a str,
    ) -> Action<'a> {
        Action {
            principal,
            host: "10.0.0.7",
            operation,
            resource_type,
            resource_name: name,
        }
    }

    #[test]
    fn without_a_matching_allow_everything_is_denied() {
        let none: Vec<AclBinding> = Vec::new();
        let supers = BTreeSet::from(["User:admin".to_owned()]);
        let write = |who| action(who, Operation::Write, ResourceType::Topic, "orders");
        assert!(!authorize(&none, &supers, &write("User:app")));
        assert!(
            authorize(&none, &supers, &write("User:admin")),
            "super user"
        );
    }

    #[test]
    fn literal_wildcard_and_prefixed_names_match_as_kafka_matches_them() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let acls = vec![
            binding(Topic, "orders", Literal, "User:app", Write, Allow),
            binding(Topic, "audit-", Prefixed, "User:app", Read, Allow),
            binding(Group, "*", Literal, "User:app", Read, Allow),
            binding(Topic, "audit-secret", Literal, "User:*", All, Deny),
            binding(Topic, "orders", Literal, "User:*", Describe, Allow),
        ];
        let none = BTreeSet::new();
        let can = |who, op, kind, name| authorize(&acls, &none, &action(who, op, kind, name));
        assert!(can("User:app", Write, Topic, "orders"));
        assert!(!can("User:app", Read, Topic, "orders"));
        assert!(!can("User:other", Write, Topic, "orders"));
        // WRITE implies DESCRIBE; and User:* may describe orders.
        assert!(can("User:app", Describe, Topic, "orders"));
        assert!(can("User:other", Describe, Topic, "orders"));
        assert!(can("User:app", Read, Topic, "audit-2026"));
        assert!(!can("User:app", Read, Topic, "audit"));
        // A DENY wins over an ALLOW.
        assert!(!can("User:app", Read, Topic, "audit-secret"));
        assert!(can("User:app", Read, Group, "any-group"));
        assert!(!can("User:app", Write, Group, "any-group"));
    }

    #[test]
    fn hosts_all_and_config_implications() {
        use Operation::*;
        let mut from_one_host = binding(
            ResourceType::Cluster,
            CLUSTER_NAME,
            PatternType::Literal,
            "User:ops",
            AlterConfigs,
            Permission::Allow,
        );
        from_one_host.host = "10.0.0.7".to_owned();
        let acls = vec![
            from_one_host,
            binding(
                ResourceType::Topic,
                "*",
                PatternType::Literal,
                "User:root",
                All,
                Permission::Allow,
            ),
        ];
        let none = BTreeSet::new();
        let ops = |op| action("User:ops", op, ResourceType::Cluster, CLUSTER_NAME);
        assert!(authorize(&acls, &none, &ops(AlterConfigs)));
        assert!(authorize(&acls, &none, &ops(DescribeConfigs)), "implied");
        assert!(!authorize(&acls, &none, &ops(Alter)));
        let elsewhere = Action {
            host: "10.0.0.8",
            ..ops(AlterConfigs)
        };
        assert!(!authorize(&acls, &none, &elsewhere));
        for op in [
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
        ] {
            assert!(authorize(
                &acls,
                &none,
                &action("User:root", op, ResourceType::Topic, "t")
            ));
        }
    }

    #[test]
    fn protocol_codes_go_both_ways() {
        for kind in ResourceType::ALL {
            assert_eq!(ResourceType::from_code(kind.code()), Some(kind));
        }
        for (op, code) in Operation::CODES {
            assert_eq!(Operation::from_code(code), Some(op));
            assert_eq!(op.code(), code);
        }
        assert_eq!(Operation::from_code(1), None, "ANY is for filters only");
        assert_eq!(PatternType::from_code(4), Some(PatternType::Prefixed));
        assert_eq!(Permission::from_code(3), Some(Permission::Allow));
        assert_eq!(Permission::from_code(1), None);
    }

    #[test]
    fn filters_match_as_describe_and_delete_acls_ask() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let acls = [
            binding(Topic, "orders", Literal, "User:app", Write, Allow),
            binding(Topic, "ord", Prefixed, "User:app", Read, Allow),
            binding(Topic, "*", Literal, "User:ops", Describe, Allow),
            binding(Group, "orders", Literal, "User:app", Read, Deny),
        ];
        let matching = |filter: &AclFilter| -> Vec<usize> {
            (0..acls.len())
                .filter(|i| filter.matches(&acls[*i]))
                .collect()
        };
        // ANY everything (codes 1, null strings): all.
        let any = AclFilter::from_codes(1, None, 1, None, None, 1, 1).unwrap();
        assert_eq!(matching(&any), [0, 1, 2, 3]);
        // MATCH on a name: the bindings that apply to that topic.
        let applying = AclFilter::from_codes(2, Some("orders"), 2, None, None, 1, 1).unwrap();
        assert_eq!(matching(&applying), [0, 1, 2]);
        // PREFIXED (4) is that pattern type exactly, the name as written.
        let prefixed = AclFilter::from_codes(2, Some("ord"), 4, None, None, 1, 1).unwrap();
        assert_eq!(matching(&prefixed), [1]);
        assert!(
            AclFilter::from_codes(2, Some("orders"), 4, None, None, 1, 1)
                .map(|f| matching(&f).is_empty())
                .unwrap()
        );
        // ANY pattern with a name compares it as written; LITERAL excludes prefixed ones.
        let named = AclFilter::from_codes(1, Some("ord"), 1, None, None, 1, 1).unwrap();
        assert_eq!(matching(&named), [1]);
        let literal = AclFilter::from_codes(2, None, 3, Some("User:app"), None, 1, 3).unwrap();
        assert_eq!(matching(&literal), [0]);
        assert!(AclFilter::from_codes(9, None, 1, None, None, 1, 1).is_err());
        assert!(AclFilter::from_codes(1, None, 1, None, None, 0, 1).is_err());
    }

    #[test]
    fn bindings_from_the_wire_are_checked() {
        let ok = AclBinding::from_codes(2, "orders", 3, "User:app", "*", 4, 3).unwrap();
        assert_eq!(ok.operation, Operation::Write);
        for (kind, name, pattern, principal, host, operation, permission) in [
            (1, "orders", 3, "User:app", "*", 4, 3), // ANY is no resource type
            (2, "", 3, "User:app", "*", 4, 3),       // empty name
            (4, "other", 3, "User:app", "*", 4, 3),  // the cluster has one name
            (2, "*", 4, "User:app", "*", 4, 3),      // prefixed '*'
            (2, "orders", 4, "app", "*", 4, 3),      // not a principal
            (2, "orders", 4, "User:app", "", 4, 3),  // no host
            (2, "orders", 1, "User:app", "*", 4, 3), // ANY is no pattern type
            (2, "orders", 3, "User:app", "*", 1, 3), // ANY is no operation
            (2, "orders", 3, "User:app", "*", 4, 1), // ANY is no permission
        ] {
            assert!(
                AclBinding::from_codes(kind, name, pattern, principal, host, operation, permission)
                    .is_err(),
                "{kind} {name:?} {pattern} {principal:?} {host:?} {operation} {permission}"
            );
        }
    }

    #[test]
    fn some_topic_is_enough_unless_all_are_denied() {
        use Operation::*;
        let none = BTreeSet::new();
        let write_one = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:app",
            Write,
            Permission::Allow,
        );
        let any = |acls: &[AclBinding], who| {
            authorize_any(acls, &none, who, "10.0.0.7", Write, ResourceType::Topic)
        };
        assert!(any(std::slice::from_ref(&write_one), "User:app"));
        assert!(!any(std::slice::from_ref(&write_one), "User:other"));
        let deny_all = binding(
            ResourceType::Topic,
            "*",
            PatternType::Literal,
            "User:app",
            All,
            Permission::Deny,
        );
        assert!(!any(&[write_one, deny_all], "User:app"));
    }
}
