//! `fjord-operator crd` and `fjord-operator render`: the CRDs, and every object the operator
//! would apply for a Cluster manifest, printed as YAML without any Kubernetes cluster (for
//! reviews, `kubectl diff` and the golden tests).

use kube::CustomResourceExt;
use serde::Deserialize;

use crate::cluster::build::build_cluster;
use crate::cluster::validate::{SpecError, validate_cluster};
use crate::crd::{Cluster, Topic, User};

/// Stands in for the uid of a Cluster manifest that has none (one not read back from a
/// cluster): owner references need one.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Why a manifest could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading the manifest")]
    Parse(#[source] serde_yaml::Error),
    #[error("document {index} is a {kind}, not a fjord.dev/v1alpha1 Cluster")]
    NotACluster { index: usize, kind: String },
    #[error("Cluster '{name}' is invalid")]
    Invalid {
        name: String,
        #[source]
        source: SpecError,
    },
    #[error("writing YAML")]
    Serialize(#[source] serde_yaml::Error),
}

/// Both CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let files = crd_files()?;
    Ok(files
        .iter()
        .map(|(_, yaml)| yaml.as_str())
        .collect::<Vec<_>>()
        .join("---\n"))
}

/// The files of `crds/`: name and content, one CRD each.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    Ok(vec![
        crd_file::<Cluster>()?,
        crd_file::<Topic>()?,
        crd_file::<User>()?,
    ])
}

fn crd_file<K: CustomResourceExt>() -> Result<(String, String), serde_yaml::Error> {
    let crd = K::crd();
    let name = format!("{}_{}.yaml", crate::crd::GROUP, crd.spec.names.plural);
    let yaml = format!(
        "# Generated from operator/src/crd.rs by `make generate`; do not edit.\n{}",
        serde_yaml::to_string(&crd)?
    );
    Ok((name, yaml))
}

/// Every object for every Cluster in `manifest` (documents that are not Clusters are an
/// error), in apply order, as multi-document YAML.
pub fn render(manifest: &str, broker_image: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for (index, document) in serde_yaml::Deserializer::from_str(manifest).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(RenderError::Parse)?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("document without a kind")
            .to_owned();
        let api_version = value.get("apiVersion").and_then(serde_yaml::Value::as_str);
        if kind != "Cluster" || api_version != Some("fjord.dev/v1alpha1") {
            return Err(RenderError::NotACluster { index, kind });
        }
        let mut cluster: Cluster = serde_yaml::from_value(value).map_err(RenderError::Parse)?;
        cluster
            .metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned());
        cluster
            .metadata
            .uid
            .get_or_insert_with(|| PLACEHOLDER_UID.to_owned());
        let validated =
            validate_cluster(&cluster, broker_image).map_err(|source| RenderError::Invalid {
                name: cluster.metadata.name.clone().unwrap_or_default(),
                source,
            })?;
        for object in build_cluster(&validated).to_values() {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&object).map_err(RenderError::Serialize)?);
        }
    }
    Ok(out)
}
