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
}
