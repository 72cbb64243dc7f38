//! The CRDs: `crds/` is exactly what the Rust types generate (CI fails on drift: run `make
//! generate`), every schema is structural (what the API server demands of a v1 CRD), the CEL
//! rules refuse what they should, and the CRDs and the rendered objects pass
//! `kubernetes-validate` for Kubernetes 1.30 and the newest version it knows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fjord_operator::crd::{Cluster, DeletionPolicy, Topic, TopicSpec, User};
use fjord_operator::render::{crd_files, render};
use kube::CustomResourceExt;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_are_what_the_types_generate() {
    let files = crd_files().unwrap();
    assert_eq!(files.len(), 3);
    let mut committed: Vec<String> = std::fs::read_dir(root().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut generated: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    generated.sort();
    assert_eq!(
        committed, generated,
        "crds/ holds other files: run `make generate`"
    );
    for (name, yaml) in files {
        let on_disk = std::fs::read_to_string(root().join("crds").join(&name)).unwrap();
        assert!(
            on_disk == yaml,
            "crds/{name} differs from what operator/src/crd.rs generates: run `make generate`"
        );
    }
}

/// The rules of <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema>
/// that a generated schema can break, checked node by node. Returns every violation.
fn structural_violations(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in ["$ref", "definitions", "$defs", "$schema", "id"] {
        if node.contains_key(forbidden) {
            out.push(format!("{path}: has {forbidden}"));
        }
    }
    let escape = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for structural in [
            "type",
            "additionalProperties",
            "default",
            "nullable",
            "description",
            "title",
            "x-kubernetes-preserve-unknown-fields",
        ] {
            if node.contains_key(structural) {
                out.push(format!("{path}: {structural} inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !escape && !node.contains_key("type") {
        out.push(format!("{path}: no type"));
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if node.get("type") == Some(&Value::String("array".into())) && !node.contains_key("items") {
        out.push(format!("{path}: array without items"));
    }
    if node.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
        let items = &node["items"];
        let required: Vec<&Value> = items["required"]
            .as_array()
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        for key in node["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let defaulted = items["properties"][key.as_str().unwrap_or("")]
                .get("default")
                .is_some();
            if !required.contains(&key) && !defaulted {
                out.push(format!(
                    "{path}: list-map key {key} neither required nor defaulted"
                ));
            }
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_violations(child, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            structural_violations(
                child,
                &format!("{path}.{key}"),
                in_junctor || key == "not",
                out,
            );
        }
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (index, child) in node
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_violations(child, &format!("{path}.{junctor}[{index}]"), true, out);
        }
    }
}

fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
    assert_eq!(crd["spec"]["versions"].as_array().unwrap().len(), 1);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crd_schemas_are_structural() {
    for (kind, schema) in [
        ("Cluster", schema_of::<Cluster>()),
        ("Topic", schema_of::<Topic>()),
        ("User", schema_of::<User>()),
    ] {
        let mut violations = Vec::new();
        structural_violations(&schema, kind, false, &mut violations);
        assert!(
            violations.is_empty(),
            "{kind} schema is not structural: {violations:#?}"
        );
    }
    // The checker itself: typeless properties (a, c), a $ref and types inside anyOf are caught.
    let mut violations = Vec::new();
    let broken = serde_json::json!({
        "type": "object",
        "properties": {
            "a": {"description": "no type"},
            "b": {"$ref": "#/definitions/x", "type": "string"},
            "c": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        }
    });
    structural_violations(&broken, "broken", false, &mut violations);
    assert_eq!(violations.len(), 5, "{violations:#?}");
}

#[test]
fn crds_have_status_columns_short_names_and_the_fjord_category() {
    for (crd, short, columns) in [
        (
            Cluster::crd(),
            "fjc",
            vec![
                "Ready",
                "Brokers",
                "Controller",
                "Under-replicated",
                "Moving",
                "Bootstrap",
                "Age",
            ],
        ),
        (
            Topic::crd(),
            "fjt",
            vec!["Ready", "Cluster", "Partitions", "Replication", "Age"],
        ),
        (
            User::crd(),
            "fju",
            vec![
                "Ready",
                "Cluster",
                "Authentication",
                "Principal",
                "ACLs",
                "Age",
            ],
        ),
    ] {
        assert_eq!(crd.spec.group, "fjord.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        let names = &crd.spec.names;
        assert!(
            names
                .short_names
                .as_ref()
                .unwrap()
                .iter()
                .any(|s| s == short)
        );
        assert_eq!(names.categories.as_deref(), Some(&["fjord".to_owned()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let printed: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(printed, columns);
    }
}

fn topic(partitions: i32) -> Topic {
    let mut topic = Topic::new(
        "orders",
        TopicSpec {
            cluster: "events".into(),
            topic_name: None,
            partitions,
            replication_factor: 1,
            config: BTreeMap::new(),
            deletion_policy: DeletionPolicy::Retain,
        },
    );
    topic.metadata.namespace = Some("streaming".into());
    topic
}

#[test]
fn cel_rules_refuse_shrinking_partitions_and_changing_identities() {
    use kube::core::cel::{validate_cel, validate_cel_update};
    let old = topic(6);
    assert!(validate_cel(&old).is_ok());
    assert!(
        validate_cel_update(&topic(8), &old).is_ok(),
        "growing is allowed"
    );
    let shrink = validate_cel_update(&topic(4), &old).unwrap_err();
    assert!(
        format!("{shrink:?}").contains("partitions can only grow"),
        "{shrink:?}"
    );

    let mut renamed = topic(6);
    renamed.spec.topic_name = Some("orders-v2".into());
    assert!(
        validate_cel_update(&renamed, &old).is_err(),
        "topicName is immutable"
    );
    let mut moved = topic(6);
    moved.spec.cluster = "other".into();
    assert!(
        validate_cel_update(&moved, &old).is_err(),
        "cluster is immutable"
    );

    let manifest = std::fs::read_to_string(root().join("docs/examples/cluster.yaml")).unwrap();
    let cluster: Cluster = serde_yaml::from_str(&manifest).unwrap();
    if let Err(error) = validate_cel(&cluster) {
        panic!("{error:?}");
    }
    let mut reclassed = cluster.clone();
    reclassed.spec.storage.storage_class_name = Some("standard".into());
    let error = validate_cel_update(&reclassed, &cluster).unwrap_err();
    assert!(
        format!("{error:?}").contains("storageClassName is immutable"),
        "{error:?}"
    );
    let mut both = cluster.clone();
    both.spec.replicas = Some(3);
    assert!(validate_cel(&both).is_err(), "replicas with zones");
    let mut unzoned = cluster.clone();
    unzoned.spec.zones.clear();
    let error = validate_cel_update(&unzoned, &cluster).unwrap_err();
    assert!(
        format!("{error:?}").contains("cannot gain them, nor lose all of them"),
        "{error:?}"
    );
    let mut secured = cluster.clone();
    secured.spec.listeners.authentication = Some(fjord_operator::crd::ListenerAuthentication {
        kind: fjord_operator::crd::ListenerAuthenticationType::ScramSha512,
        service_accounts: None,
    });
    let error = validate_cel_update(&secured, &cluster).unwrap_err();
    assert!(
        format!("{error:?}")
            .contains("listeners.authentication is chosen when the Cluster is created"),
        "{error:?}"
    );
    let mut tls = cluster.clone();
    tls.spec.listeners.tls = Some(fjord_operator::crd::ListenerTls::default());
    assert!(
        validate_cel_update(&tls, &cluster).is_err(),
        "TLS added later"
    );
    assert!(validate_cel_update(&tls, &tls).is_ok());
    let mut certificates = tls.clone();
    certificates.spec.listeners.client_certificates =
        Some(fjord_operator::crd::ClientCertificates { port: 9094 });
    assert!(
        validate_cel(&certificates).is_err(),
        "client certificates without logins"
    );
    certificates.spec.listeners.authentication =
        Some(fjord_operator::crd::ListenerAuthentication {
            kind: fjord_operator::crd::ListenerAuthenticationType::ScramSha512,
            service_accounts: None,
        });
    if let Err(error) = validate_cel(&certificates) {
        panic!("{error:?}");
    }
    let mut fewer = cluster.clone();
    fewer.spec.zones.remove(0);
    assert!(
        validate_cel_update(&fewer, &cluster).is_ok(),
        "removing one zone is allowed"
    );
}

#[test]
fn cel_rules_check_a_users_authentication_and_resources() {
    use kube::core::cel::{validate_cel, validate_cel_update};
    let example = |file: &str| -> User {
        serde_yaml::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap()
    };
    let scram = example("docs/examples/user.yaml");
    let account = example("docs/examples/user-service-account.yaml");
    let certificate = example("docs/examples/user-tls.yaml");
    for user in [&scram, &account, &certificate] {
        if let Err(error) = validate_cel(user) {
            panic!("{error:?}");
        }
    }
    let mut nameless = scram.clone();
    nameless.spec.acls[0].resource.name = None;
    assert!(validate_cel(&nameless).is_err(), "a topic needs a name");
    let mut named_cluster = account.clone();
    named_cluster.spec.acls[1].resource.name = Some("kafka-cluster".into());
    assert!(
        validate_cel(&named_cluster).is_err(),
        "the cluster has none"
    );
    let mut no_account = account.clone();
    no_account.spec.authentication.service_account = None;
    assert!(
        validate_cel(&no_account).is_err(),
        "serviceAccount needs one"
    );
    let mut stray_account = scram.clone();
    stray_account.spec.authentication.service_account = Some("x".into());
    assert!(validate_cel(&stray_account).is_err(), "scram takes none");
    let error = validate_cel_update(&account, &scram).unwrap_err();
    assert!(
        format!("{error:?}").contains("authentication is immutable"),
        "{error:?}"
    );
    let mut more = scram.clone();
    more.spec.acls.pop();
    assert!(
        validate_cel_update(&more, &scram).is_ok(),
        "ACLs change freely"
    );
}

/// The validator `make deps` installs (tests/k8s/requirements.txt); its absence fails the test,
/// as a missing client does in the compatibility tests.
fn kubernetes_validate() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("kubernetes-validate"))
        .find(|path| path.is_file())
        .expect("kubernetes-validate is not installed: `make deps` installs it (tests/k8s/requirements.txt)")
}

/// Runs kubernetes-validate --strict on `files` for one Kubernetes version; the output on
/// failure.
fn validate(tool: &Path, version: Option<&str>, files: &[PathBuf]) -> Result<String, String> {
    let mut command = Command::new(tool);
    command.arg("--strict");
    if let Some(version) = version {
        command.args(["-k", version]);
    }
    let output = command
        .args(files)
        .output()
        .expect("running kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn crds_and_rendered_objects_pass_kubernetes_validate() {
    let tool = kubernetes_validate();
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let example = std::fs::read_to_string(root().join("docs/examples/cluster.yaml")).unwrap();
    let rendered = dir.path().join("example-objects.yaml");
    std::fs::write(
        &rendered,
        render(&example, "ghcr.io/fjord-dev/fjord-broker:0.1.0").unwrap(),
    )
    .unwrap();
    files.push(rendered);
    for entry in std::fs::read_dir(root().join("operator/tests/golden")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".objects.yaml") {
            files.push(path);
        }
    }
    for version in [Some("1.30.0"), None] {
        let report = validate(&tool, version, &files).unwrap_or_else(|report| panic!("{report}"));
        // 2 CRDs + 8 objects of the example at least, every one reported as passed.
        assert!(
            report.matches(" passed for resource ").count() >= 10,
            "{report}"
        );
        assert!(!report.contains("did not validate"), "{report}");
    }

    // The check can fail: a StatefulSet with a string for replicas and an unknown field.
    let bad = dir.path().join("bad.yaml");
    let broken = render(&example, "img").unwrap().replacen(
        "  replicas: 1\n",
        "  replicas: one\n  replicaz: 1\n",
        1,
    );
    std::fs::write(&bad, broken).unwrap();
    assert!(validate(&tool, Some("1.30.0"), &[bad]).is_err());
}

/// Malformed and negative quantities are refused by the API server when the Cluster is applied:
/// `storage.size` by a CEL rule (a quantity greater than zero) and a pattern, the quantities of
/// `resources` by a pattern (the API server's grammar without the minus sign).
#[test]
fn the_schema_refuses_malformed_and_negative_quantities() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::core::cel::{validate_cel, validate_cel_update};
    let manifest = std::fs::read_to_string(root().join("docs/examples/cluster.yaml")).unwrap();
    let cluster: Cluster = serde_yaml::from_str(&manifest).unwrap();
    for size in ["banana", "-1Gi", "0", "0Gi"] {
        let mut bad = cluster.clone();
        bad.spec.storage.size = Quantity(size.into());
        let error = validate_cel(&bad).expect_err(size);
        assert!(
            format!("{error:?}").contains("storage size must be a quantity greater than zero"),
            "{size}: {error:?}"
        );
    }
    // A Cluster created with an invalid size before the schema refused it: the size may be
    // corrected (no volume was ever made with it), while a valid size stays immutable.
    let mut invalid = cluster.clone();
    invalid.spec.storage.size = Quantity("banana".into());
    let mut corrected = cluster.clone();
    corrected.spec.storage.size = Quantity("20Gi".into());
    if let Err(error) = validate_cel_update(&corrected, &invalid) {
        panic!("{error:?}");
    }
    let error = validate_cel_update(&corrected, &cluster).unwrap_err();
    assert!(
        format!("{error:?}").contains("storage size is immutable"),
        "{error:?}"
    );
    for size in ["50Gi", "1Ti", "500M", "1e9"] {
        let mut good = cluster.clone();
        good.spec.storage.size = Quantity(size.into());
        if let Err(error) = validate_cel(&good) {
            panic!("{size}: {error:?}");
        }
    }

    let schema = schema_of::<Cluster>();
    let spec = &schema["properties"]["spec"]["properties"];
    let patterns = [
        &spec["storage"]["properties"]["size"],
        &spec["resources"]["properties"]["requests"]["additionalProperties"],
        &spec["resources"]["properties"]["limits"]["additionalProperties"],
    ];
    for node in patterns {
        assert_eq!(node["x-kubernetes-int-or-string"], true, "{node}");
        let pattern = regex::Regex::new(node["pattern"].as_str().expect("a pattern")).unwrap();
        for good in ["1", "500m", "2Gi", "1.5", ".5", "1e3", "+4k"] {
            assert!(pattern.is_match(good), "{good} refused by {pattern}");
        }
        for bad in ["lots", "banana", "-1Gi", "-1", "1 Gi", "1gb", ""] {
            assert!(!pattern.is_match(bad), "{bad} accepted by {pattern}");
        }
    }
}
