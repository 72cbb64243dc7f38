//! The Helm chart (`charts/fjord-operator`), checked offline by `tests/k8s/check_chart.py`
//! (Helm SDK lint and render for several value sets, kubernetes-validate for 1.30 and the
//! newest version, yamllint, CRD copies equal to `crds/`, versions equal to Cargo's), with the
//! RBAC rules the chart must grant taken from the operator's own table
//! (`fjord_operator::rbac`): the chart grants exactly what the code calls, no more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use fjord_operator::rbac::{FINALIZER_RULES, LEADER_ELECTION_RULES, RULES, Rule};
use serde_json::{Value, json};

fn as_json(rules: &[Rule]) -> Vec<Value> {
    rules.iter().map(Rule::policy_rule).collect()
}

#[test]
fn the_chart_lints_renders_validates_and_grants_exactly_the_operators_rbac() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        serde_json::to_vec(&json!({
            "rules": as_json(RULES),
            "leaseRules": as_json(LEADER_ELECTION_RULES),
            "finalizerRules": as_json(FINALIZER_RULES),
        }))
        .unwrap(),
    )
    .unwrap();
    let rendered = dir.path().join("default.yaml");
    let output = Command::new("python3")
        .arg(root.join("tests/k8s/check_chart.py"))
        .arg("--rules")
        .arg(&rules)
        .arg("--out")
        .arg(&rendered)
        .output()
        .expect("running python3 tests/k8s/check_chart.py (make deps installs its packages)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains(", 0 failed"), "{report}");

    // The rendered ClusterRole, read back here too: the same rules, in the same order.
    let objects: Vec<Value> =
        serde_yaml::Deserializer::from_str(&std::fs::read_to_string(&rendered).unwrap())
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect();
    let cluster_roles: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .map(|o| &o["rules"])
        .collect();
    assert_eq!(
        cluster_roles,
        [
            &Value::Array(as_json(RULES)),
            &Value::Array(as_json(FINALIZER_RULES))
        ]
    );
    let lease_role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["rules"][0]["resources"][0] == "leases")
        .unwrap();
    assert_eq!(
        lease_role["rules"],
        Value::Array(as_json(LEADER_ELECTION_RULES))
    );
}

/// The README's Kubernetes section, as far as it runs without a cluster: the files it applies
/// exist and are what the tests validate, the chart it installs is the one checked above with
/// the same release name and namespace, and the bootstrap address it connects a client to is the
/// one the example Cluster gets.
#[test]
fn the_readmes_kubernetes_section_uses_what_the_tests_check() {
    use fjord_operator::cluster::validate::validate_cluster;
    use fjord_operator::crd::{Cluster, Topic};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Kubernetes\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Kubernetes section");
    for command in [
        "cargo run -q -p fjord-operator -- render -f docs/examples/cluster.yaml",
        "helm install fjord-operator charts/fjord-operator --namespace fjord-system --create-namespace",
        "kubectl apply -f docs/examples/cluster.yaml -f docs/examples/topic.yaml",
        "helm upgrade fjord-operator charts/fjord-operator --namespace fjord-system",
        "helm uninstall fjord-operator --namespace fjord-system",
    ] {
        assert!(
            section.contains(command),
            "README no longer says `{command}`"
        );
    }
    let script = std::fs::read_to_string(root.join("tests/k8s/check_chart.py")).unwrap();
    assert!(
        script.contains(r#"RELEASE = "fjord-operator""#)
            && script.contains(r#"NAMESPACE = "fjord-system""#)
    );

    let cluster: Cluster = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("docs/examples/cluster.yaml")).unwrap(),
    )
    .unwrap();
    let topic: Topic = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("docs/examples/topic.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(topic.spec.cluster, cluster.metadata.name.clone().unwrap());
    assert_eq!(
        fjord_broker::cluster::log_config(&topic.spec.config).err(),
        None,
        "the example Topic's config must be one Fjord's brokers accept"
    );
    assert_eq!(topic.metadata.namespace, cluster.metadata.namespace);
    let mut cluster = cluster;
    cluster.metadata.uid = Some("readme".into());
    let bootstrap = validate_cluster(&cluster, "img")
        .unwrap()
        .bootstrap_address();
    assert!(
        section.contains(&format!("-b {bootstrap} -L")),
        "README's client should use {bootstrap}"
    );
    assert!(section.contains(&format!(
        "kubectl create namespace {}",
        cluster.metadata.namespace.unwrap()
    )));
}
