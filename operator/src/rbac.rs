//! The Kubernetes API permissions the operator's code needs, in one table: the chart's RBAC
//! rules must equal it (`operator/tests/chart.rs`), and the scenario tests' mock API server
//! refuses, with 403 as a real one would, any call this table does not allow
//! (`operator/tests/scenarios.rs`), so neither can drift from what the code calls.

/// One RBAC rule: an API group, its resources, the verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const fn rule(
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Rule {
    Rule {
        group,
        resources,
        verbs,
    }
}

/// Rules for the watched namespaces (a ClusterRole when all namespaces are watched).
pub const RULES: &[Rule] = &[
    // Watched by the controllers; the Topic controller reads a Topic's Cluster and patches
    // the Topic's finalizers.
    rule("fjord.dev", &["clusters"], &["get", "list", "watch"]),
    rule("fjord.dev", &["topics"], &["list", "watch", "patch"]),
    // The User controller watches Users and patches their finalizers.
    rule("fjord.dev", &["users"], &["list", "watch", "patch"]),
    rule(
        "fjord.dev",
        &["clusters/status", "topics/status", "users/status"],
        &["patch"],
    ),
    // Children carry `blockOwnerDeletion: true` owner references to their Cluster (a User's
    // Secret to its User); where the OwnerReferencesPermissionEnforcement admission plugin
    // runs, setting one needs this.
    rule(
        "fjord.dev",
        &["clusters/finalizers", "users/finalizers"],
        &["update"],
    ),
    // Secrets by name, never listed or watched: a SCRAM User's (read, or created with a
    // generated password; a rotated one is picked up at the User's next resync); a Cluster's
    // operator credentials and CA (created once), and its brokers' certificate (replaced when
    // it is renewed); a listener Secret's CA, read.
    rule("", &["secrets"], &["get", "create", "update"]),
    // Children of a Cluster: watched (owned), server-side applied (which creates them the
    // first time); StatefulSets of removed zones are deleted.
    rule(
        "apps",
        &["statefulsets"],
        &["list", "watch", "create", "patch", "delete"],
    ),
    rule(
        "",
        &["services", "configmaps", "serviceaccounts"],
        &["list", "watch", "create", "patch"],
    ),
    rule(
        "policy",
        &["poddisruptionbudgets"],
        &["list", "watch", "create", "patch"],
    ),
    // Broker pods: readiness moves the rolling restart on, one is deleted per step, and the
    // brokers' admin API is called through the API server's pod proxy: /v1/status and the
    // pre-restart check read (get), a leadership drain or a drain asked for (create: a POST), a
    // drain ended (delete).
    rule("", &["pods"], &["list", "watch", "delete"]),
    rule("", &["pods/proxy"], &["get", "create", "delete"]),
    // Scale-in with `storage.deleteClaim`: a drained, removed broker's volume claim.
    rule("", &["persistentvolumeclaims"], &["delete"]),
    rule("events.k8s.io", &["events"], &["create", "patch"]),
];

/// Rules granted cluster-wide in both modes (a ClusterRole of their own): what releasing a
/// Topic's or a User's finalizer in a namespace being deleted needs. A namespace's deletion removes the Roles
/// in it (in namespaced mode, the operator's own) before it reaches the Topics; a finalizer that
/// needed those Roles to go would hold the namespace in Terminating forever. Reading a namespace
/// tells that it is terminating; patching a Topic releases the finalizer.
///
/// With them, the API server's service-account issuer (its OpenID discovery document and
/// token-signing keys), which the operator publishes to Clusters whose clients log in with
/// service-account tokens: non-resource URLs, granted only cluster-wide. (Kubernetes grants
/// every service account these through `system:service-account-issuer-discovery` by default;
/// the chart does not rely on that.)
pub const FINALIZER_RULES: &[Rule] = &[
    rule("", &["namespaces"], &["get"]),
    rule("fjord.dev", &["topics", "users"], &["patch"]),
    rule("", ISSUER_DISCOVERY_URLS, &["get"]),
];

/// The API server's service-account issuer endpoints. In a [`Rule`], resources that start
/// with `/` are non-resource URLs (`nonResourceURLs` in RBAC).
pub const ISSUER_DISCOVERY_URLS: &[&str] =
    &["/.well-known/openid-configuration", "/openid/v1/jwks"];

/// Rules in the operator's own namespace (a Role): the leader Lease.
pub const LEADER_ELECTION_RULES: &[Rule] = &[rule(
    "coordination.k8s.io",
    &["leases"],
    &["get", "create", "update"],
)];

/// The (group, resource, verb) a request needs, from its method, path and query, the way the
/// API server's authorizer sees it (a non-resource URL read: `("", path, "get")`); `None` for
/// a request no rule grants.
pub fn required(method: &str, path: &str, query: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        // A non-resource URL: the path itself, read with `get`.
        _ if method == "GET" => return Some((String::new(), path.to_owned(), "get".to_owned())),
        _ => return None,
    };
    let rest = match rest {
        // A namespaced resource; `namespaces/<name>` alone is the Namespace itself.
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, subresource, ..] => (format!("{resource}/{subresource}"), true),
        _ => return None,
    };
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group.to_owned(), resource, verb.to_owned()))
}

impl Rule {
    /// As an RBAC `PolicyRule` (JSON): `nonResourceURLs` for URL rules.
    pub fn policy_rule(&self) -> serde_json::Value {
        if self
            .resources
            .iter()
            .all(|resource| resource.starts_with('/'))
        {
            serde_json::json!({"nonResourceURLs": self.resources, "verbs": self.verbs})
        } else {
            serde_json::json!({
                "apiGroups": [self.group],
                "resources": self.resources,
                "verbs": self.verbs,
            })
        }
    }
}

/// Whether `rules` allow `verb` on `group`/`resource`.
pub fn allows(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
    rules
        .iter()
        .any(|r| r.group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, query: &str) -> (String, String, String) {
        required(method, path, query).unwrap_or_default()
    }

    #[test]
    fn requests_map_to_what_the_authorizer_checks() {
        let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            req(
                "PATCH",
                "/apis/apps/v1/namespaces/ns/statefulsets/events-a",
                "fieldManager=x"
            ),
            t("apps", "statefulsets", "patch")
        );
        assert_eq!(
            req("GET", "/api/v1/namespaces/ns/pods", "labelSelector=a%3Db"),
            t("", "pods", "list")
        );
        assert_eq!(
            req("GET", "/api/v1/pods", "watch=true&resourceVersion=1"),
            t("", "pods", "watch")
        );
        assert_eq!(
            req(
                "GET",
                "/api/v1/namespaces/ns/pods/events-a-0:9644/proxy/v1/status",
                ""
            ),
            t("", "pods/proxy", "get")
        );
        assert_eq!(
            req(
                "PATCH",
                "/apis/fjord.dev/v1alpha1/namespaces/ns/topics/orders/status",
                ""
            ),
            t("fjord.dev", "topics/status", "patch")
        );
        assert_eq!(
            req("GET", "/api/v1/namespaces/team-a", ""),
            t("", "namespaces", "get")
        );
        assert!(allows(FINALIZER_RULES, "", "namespaces", "get"));
        assert!(allows(RULES, "", "pods/proxy", "get"));
        assert_eq!(
            req(
                "POST",
                "/api/v1/namespaces/ns/pods/events-a-0:9644/proxy/v1/brokers/0/leadership-drain",
                ""
            ),
            t("", "pods/proxy", "create")
        );
        assert!(allows(RULES, "", "pods/proxy", "create"));
        assert!(!allows(RULES, "", "pods", "get"));
        assert!(!allows(RULES, "", "secrets", "list"));
        // Non-resource URLs: the issuer's, granted cluster-wide only.
        assert_eq!(
            req("GET", "/openid/v1/jwks", ""),
            t("", "/openid/v1/jwks", "get")
        );
        assert!(allows(FINALIZER_RULES, "", "/openid/v1/jwks", "get"));
        assert!(!allows(RULES, "", "/openid/v1/jwks", "get"));
        assert!(!allows(FINALIZER_RULES, "", "/version", "get"));
        assert!(allows(
            LEADER_ELECTION_RULES,
            "coordination.k8s.io",
            "leases",
            "update"
        ));
    }
}
