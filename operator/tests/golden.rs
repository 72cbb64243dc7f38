//! Golden tests of the pure builders: each `tests/golden/<case>.cluster.yaml` (and the README's
//! example, `docs/examples/cluster.yaml`) rendered by `fjord-operator render` must equal the
//! committed `<case>.objects.yaml`. After an intended change, `FJORD_BLESS=1 cargo test -p
//! fjord-operator --test golden` rewrites them; review the diff like any other change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use fjord_operator::render::render;

const IMAGE: &str = "ghcr.io/fjord-dev/fjord-broker:0.1.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (input, expected output) of every case.
fn cases() -> Vec<(PathBuf, PathBuf)> {
    let golden = root().join("operator/tests/golden");
    let mut cases = vec![(
        root().join("docs/examples/cluster.yaml"),
        golden.join("example.objects.yaml"),
    )];
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".cluster.yaml"))
        .collect();
    inputs.sort();
    for input in inputs {
        let name = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".cluster.yaml", "");
        cases.push((input, golden.join(format!("{name}.objects.yaml"))));
    }
    cases
}

#[test]
fn rendered_objects_match_the_golden_files() {
    let bless = std::env::var_os("FJORD_BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 3, "golden cases missing: {cases:?}");
    for (input, expected) in cases {
        let manifest = std::fs::read_to_string(&input).unwrap();
        let rendered = render(&manifest, IMAGE).unwrap();
        if bless {
            std::fs::write(&expected, &rendered).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&expected).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run FJORD_BLESS=1 cargo test -p fjord-operator --test golden",
                expected.display()
            )
        });
        if rendered != golden {
            let first_difference = rendered
                .lines()
                .zip(golden.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .map(|(line, (a, b))| format!("line {}: rendered `{a}`, golden `{b}`", line + 1))
                .unwrap_or_else(|| "lengths differ".into());
            panic!(
                "{} no longer renders to {} ({first_difference}); if intended, \
                 FJORD_BLESS=1 cargo test -p fjord-operator --test golden",
                input.display(),
                expected.display()
            );
        }
    }
}

/// The facts the golden files encode, asserted directly so a blessed mistake cannot hide them.
#[test]
fn the_example_cluster_becomes_one_pinned_statefulset_per_zone() {
    let manifest = std::fs::read_to_string(root().join("docs/examples/cluster.yaml")).unwrap();
    let rendered = render(&manifest, IMAGE).unwrap();
    let objects: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "Service",
            "Service",
            "StatefulSet",
            "StatefulSet",
            "StatefulSet",
            "PodDisruptionBudget"
        ]
    );
    let stateful_sets: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "StatefulSet")
        .collect();
    let mut node_id_starts = Vec::new();
    for (sts, zone) in stateful_sets
        .iter()
        .zip(["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    {
        let spec = &sts["spec"];
        assert_eq!(spec["podManagementPolicy"], "Parallel");
        assert_eq!(spec["updateStrategy"]["type"], "OnDelete");
        assert_eq!(spec["serviceName"], "events-brokers");
        let pod = &spec["template"]["spec"];
        let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0];
        assert_eq!(term["key"], "topology.kubernetes.io/zone");
        assert_eq!(term["values"][0], zone);
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap().clone();
        assert_eq!(var("FJORD_RACK")["value"], zone);
        assert_eq!(
            var("FJORD_VOTERS")["value"]
                .as_str()
                .unwrap()
                .split(',')
                .count(),
            3
        );
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let claim = &spec["volumeClaimTemplates"][0]["spec"];
        assert_eq!(claim["resources"]["requests"]["storage"], "50Gi");
        assert_eq!(claim["storageClassName"], "gp3");
        node_id_starts.push(spec["ordinals"]["start"].as_i64().unwrap());
    }
    assert_eq!(node_id_starts, [0, 100, 200]);
    let pdb = objects.last().unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let config = &objects[1]["data"];
    assert_eq!(config["FJORD_DEFAULT_PARTITIONS"], "6");
    assert_eq!(config["FJORD_AUTO_CREATE_TOPICS"], "false");
}

#[test]
fn a_config_change_changes_the_pod_template() {
    let manifest = std::fs::read_to_string(root().join("docs/examples/cluster.yaml")).unwrap();
    let changed = manifest.replace("num.partitions: \"6\"", "num.partitions: \"8\"");
    assert_ne!(manifest, changed);
    let hash = |rendered: &str| {
        rendered
            .lines()
            .find(|l| l.contains("fjord.dev/config-hash"))
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        hash(&render(&manifest, IMAGE).unwrap()),
        hash(&render(&changed, IMAGE).unwrap())
    );
}

#[test]
fn render_names_what_is_wrong_with_a_bad_manifest() {
    let not_a_cluster = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
    let error = render(not_a_cluster, IMAGE).unwrap_err();
    assert_eq!(
        error.to_string(),
        "document 0 is a ConfigMap, not a fjord.dev/v1alpha1 Cluster"
    );
    let unknown_key = std::fs::read_to_string(root().join("docs/examples/cluster.yaml"))
        .unwrap()
        .replace("num.partitions", "log.dirs");
    let error = render(&unknown_key, IMAGE).unwrap_err();
    let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        chain.contains("config 'log.dirs' is not a broker setting"),
        "{chain}"
    );
}
