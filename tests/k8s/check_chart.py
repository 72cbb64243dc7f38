#!/usr/bin/env python3
"""Offline checks of the Helm chart charts/fjord-operator, with no cluster and no helm binary.

Lints and renders the chart with the Helm SDK (PyPI helm-python-sdk), for several value sets,
asserts what each rendering must contain, validates every rendered object against the Kubernetes
schemas of 1.30 and of the newest release kubernetes-validate knows, lints the chart's plain YAML
with yamllint, and checks that the chart's CRD copies and versions match the repository.

    python3 -m pip install -r tests/k8s/requirements.txt
    python3 tests/k8s/check_chart.py --rules rules.json [--out rendered.yaml]

Prints one line per check and a closing `chart: N passed, N failed`; exits 1 when any failed.
`--rules` is a JSON file `{"rules": [...], "leaseRules": [...]}` of the RBAC rules the chart
must grant (operator/tests/chart.rs writes it from the operator's `rbac` table and runs this
script). `--out` writes the default rendering (one multi-document YAML file).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fjord-operator"
YAMLLINT_CONFIG = ROOT / "tests" / "k8s" / "yamllint.yaml"
RELEASE = "fjord-operator"
NAMESPACE = "fjord-system"
OLDEST_KUBERNETES = "1.30.0"
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
          "app.kubernetes.io/managed-by", "helm.sh/chart")

# The operator's permissions (fjord_operator::rbac), in the chart's order, read from --rules:
# operator/tests/chart.rs writes them from the Rust table, so the code stays the one source.
RULES: list[dict[str, Any]] = []
LEASE_RULES: list[dict[str, Any]] = []
FINALIZER_RULES: list[dict[str, Any]] = []

# Value sets the chart is linted, rendered and validated with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced-watch": {"watchNamespaces": ["team-a", "team-b"]},
    "crds-off": {"crds": {"enabled": False}},
    "monitoring": {
        "replicaCount": 2,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "networkPolicy": {"enabled": True},
    },
}

# Values the chart must refuse: schema violations (lint and render) and combinations its
# templates reject with `fail` (render only: `helm lint` turns `fail` into a log line).
REFUSED: dict[str, tuple[dict[str, Any], bool, str]] = {
    "misspelt top-level key": ({"replicaCounts": 2}, True, "replicaCounts"),
    "misspelt nested key": ({"crds": {"keepp": True}}, True, "keepp"),
    "wrong type": ({"metrics": {"port": "8080"}}, True, "port"),
    "unknown log format": ({"logFormat": "xml"}, True, "logFormat"),
    "replicas without leader election": (
        {"replicaCount": 2, "leaderElection": {"enabled": False}}, False, "leaderElection"),
    "ServiceMonitor without Service": (
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        False, "metrics.service.enabled"),
}


class CheckFailed(Exception):
    """One check's failure, with the message to print."""


def fail(message: str) -> None:
    raise CheckFailed(message)


def expect(condition: bool, message: str) -> None:
    if not condition:
        fail(message)


class Report:
    """Runs checks, prints one line each, and counts."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, body: Callable[[], str | None]) -> None:
        try:
            detail = body()
        except CheckFailed as error:
            self.failed += 1
            print(f"FAIL {name}: {error}", flush=True)
        except Exception:  # a crash of the check itself is a failure too, with its trace
            self.failed += 1
            print(f"FAIL {name}: unexpected error\n{traceback.format_exc()}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)


# --- tools ----------------------------------------------------------------------------------


def import_tools() -> tuple[Any, Any]:
    """helm_python and yaml (PyYAML, which yamllint and kubernetes-validate depend on)."""
    try:
        import helm_python
        import yaml
    except ImportError as error:
        sys.exit(f"check_chart: {error}; install the pinned tools first:\n"
                 f"  python3 -m pip install -r tests/k8s/requirements.txt")
    # The Helm SDK logs through Go's default logger (e.g. every `fail` during lint); send its
    # records to Python logging and show only errors.
    logging.basicConfig(level=logging.ERROR, format="helm: %(message)s")
    helm_python.enable_logging(logging.ERROR)
    return helm_python, yaml


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs a Python tool's command line with this interpreter (where requirements.txt went)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def workspace_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    try:
        import tomllib
        return str(tomllib.loads(text)["workspace"]["package"]["version"])
    except ImportError:  # Python < 3.11: the one line is enough
        section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
        match = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
        if not match:
            fail("no version in [workspace.package] of Cargo.toml")
        return match.group(1)


# --- rendering ------------------------------------------------------------------------------


def render(helm: Any, yaml: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`, in template order."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE,
                                 is_install=True)
    objects = []
    for template in sorted(manifests):
        if not template.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(manifests[template]):
            if document is None:
                continue
            expect(isinstance(document, dict), f"{template} renders a non-object: {document!r}")
            objects.append(document)
    return objects


def dump(yaml: Any, objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(obj, sort_keys=False) for obj in objects)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    expect(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- what every rendering must hold ---------------------------------------------------------


def assert_common(objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        labels = obj.get("metadata", {}).get("labels", {})
        missing = [label for label in LABELS if label not in labels]
        expect(not missing, f"{name} lacks labels {missing}")

    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    expect(spec.get("automountServiceAccountToken") is True, "the operator needs its API token")
    pod_security = spec.get("securityContext", {})
    expect(pod_security.get("runAsNonRoot") is True and pod_security.get("runAsUser") == 65532,
           f"pod securityContext not restricted: {pod_security}")
    (container,) = spec["containers"]
    security = container.get("securityContext", {})
    for key, wanted in [("runAsNonRoot", True), ("allowPrivilegeEscalation", False),
                        ("readOnlyRootFilesystem", True), ("capabilities", {"drop": ["ALL"]}),
                        ("seccompProfile", {"type": "RuntimeDefault"})]:
        expect(security.get(key) == wanted, f"container securityContext.{key} is "
                                            f"{security.get(key)!r}, not {wanted!r}")
    expect(container.get("args") == ["run"], f"args: {container.get('args')}")
    expect(any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", [])),
           "no writable /tmp on the read-only root filesystem")
    env = env_of(container)
    expect(env.get("POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}, "POD_NAME")
    expect(env.get("POD_NAMESPACE") == {"fieldRef": {"fieldPath": "metadata.namespace"}},
           "POD_NAMESPACE")
    expect(env.get("FJORD_METRICS_LISTEN") == "0.0.0.0:8080", "FJORD_METRICS_LISTEN")
    expect(env.get("FJORD_LEADER_ELECTION") == "true", "FJORD_LEADER_ELECTION")
    expect(env.get("FJORD_LOG_FORMAT") == "json" and env.get("RUST_LOG") == "info", "logging env")
    watch = values.get("watchNamespaces")
    expect(env.get("FJORD_WATCH_NAMESPACES") == (",".join(watch) if watch else None),
           f"FJORD_WATCH_NAMESPACES is {env.get('FJORD_WATCH_NAMESPACES')!r}")
    expect(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
    expect(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")

    # Leader election: a Role for Leases in the release namespace, bound to the operator.
    lease_roles = [r for r in of_kind(objects, "Role") if r["rules"] == LEASE_RULES]
    expect(len(lease_roles) == 1 and lease_roles[0]["metadata"]["namespace"] == NAMESPACE,
           "expected one Lease Role in the release namespace")
    for obj in objects:
        rules = obj.get("rules", [])
        expect(obj.get("kind") not in ("ClusterRole",) or LEASE_RULES[0] not in rules,
               "Leases must not be granted cluster-wide")
    service_account = spec["serviceAccountName"]
    expect(one(objects, "ServiceAccount")["metadata"]["name"] == service_account,
           "the Deployment runs as the chart's ServiceAccount")
    # Both modes: the cluster-wide rules that release a Topic in a namespace being deleted.
    finalizer_roles = [r for r in of_kind(objects, "ClusterRole") if r["rules"] == FINALIZER_RULES]
    expect(len(finalizer_roles) == 1, "expected one ClusterRole with the finalizer rules")
    finalizer_bindings = [b for b in of_kind(objects, "ClusterRoleBinding")
                          if finalizer_roles and b["roleRef"] == {
                              "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": finalizer_roles[0]["metadata"]["name"]}]
    expect(len(finalizer_bindings) == 1, "the finalizer ClusterRole is bound once")
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        expect(binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account,
                                        "namespace": NAMESPACE}],
               f"{binding['kind']}/{binding['metadata']['name']} binds {binding['subjects']}")


def assert_default(objects: list[dict[str, Any]], values: dict[str, Any]) -> str:
    assert_common(objects, values)
    (cluster_role,) = [r for r in of_kind(objects, "ClusterRole") if r["rules"] != FINALIZER_RULES]
    expect(cluster_role["rules"] == RULES,
           f"ClusterRole rules differ:\n{json.dumps(cluster_role['rules'], indent=1)}")
    expect(len(of_kind(objects, "ClusterRoleBinding")) == 2, "two ClusterRoleBindings")
    expect(any(b["roleRef"]["name"] == cluster_role["metadata"]["name"]
               for b in of_kind(objects, "ClusterRoleBinding")), "ClusterRoleBinding")
    expect(len(of_kind(objects, "Role")) == 1, "only the Lease Role is namespaced")
    crds = of_kind(objects, "CustomResourceDefinition")
    names = sorted(crd["metadata"]["name"] for crd in crds)
    expect(names == ["clusters.fjord.dev", "topics.fjord.dev", "users.fjord.dev"], f"CRDs: {names}")
    for crd in crds:
        annotations = crd["metadata"].get("annotations", {})
        expect(annotations.get("helm.sh/resource-policy") == "keep",
               f"{crd['metadata']['name']} lacks helm.sh/resource-policy: keep")
    expect(not of_kind(objects, "ServiceMonitor"), "a ServiceMonitor by default")
    expect(not of_kind(objects, "NetworkPolicy"), "a NetworkPolicy by default")
    one(objects, "Service")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    version = workspace_version()
    broker_image = env_of(container).get("FJORD_BROKER_IMAGE")
    expect(broker_image == f"ghcr.io/fjord-dev/fjord-broker:{version}",
           f"FJORD_BROKER_IMAGE is {broker_image}")
    expect(container["image"] == f"ghcr.io/fjord-dev/fjord-operator:{version}",
           f"image {container['image']}")
    return f"{len(objects)} objects, ClusterRole with {len(RULES)} rules, CRDs kept"


def assert_namespaced(objects: list[dict[str, Any]], values: dict[str, Any]) -> str:
    assert_common(objects, values)
    cluster_wide = [r["rules"] for r in of_kind(objects, "ClusterRole")]
    expect(cluster_wide == [FINALIZER_RULES] and len(of_kind(objects, "ClusterRoleBinding")) == 1,
           "a namespaced watch grants nothing cluster-wide but the finalizer rules, found "
           f"{cluster_wide}")
    roles = [r for r in of_kind(objects, "Role") if r["rules"] == RULES]
    expect(sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"],
           "expected a Role with exactly the operator's rules in team-a and team-b, found one in "
           f"{[r['metadata'].get('namespace') for r in roles]}")
    bindings = [b for b in of_kind(objects, "RoleBinding")
                if b["metadata"]["namespace"] != NAMESPACE]
    expect(sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"],
           "one RoleBinding per watched namespace")
    for binding in bindings:
        expect(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": roles[0]["metadata"]["name"]}, "RoleBinding roleRef")
    return "2 Roles, 2 RoleBindings, cluster-wide only the finalizer rules"


def assert_crds_off(objects: list[dict[str, Any]], values: dict[str, Any]) -> str:
    assert_common(objects, values)
    expect(not of_kind(objects, "CustomResourceDefinition"),
           "CRDs rendered with crds.enabled=false")
    return "no CustomResourceDefinition"


def assert_monitoring(objects: list[dict[str, Any]], values: dict[str, Any]) -> str:
    assert_common(objects, values)
    expect(one(objects, "Deployment")["spec"]["replicas"] == 2, "replicaCount 2")
    monitor = one(objects, "ServiceMonitor")
    expect(monitor["metadata"]["labels"].get("release") == "prometheus", "ServiceMonitor labels")
    service = one(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    expect(selector.items() <= service["metadata"]["labels"].items(),
           "the ServiceMonitor selects the metrics Service")
    policy = one(objects, "NetworkPolicy")["spec"]
    expect(policy["policyTypes"] == ["Ingress", "Egress"], "policy types")
    expect([p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [8080],
           "ingress only to the metrics port")
    egress_ports = sorted({p["port"] for rule in policy["egress"] for p in rule["ports"]})
    expect(egress_ports == [53, 443, 6443, 9092, 9644], f"egress ports {egress_ports}")
    return "ServiceMonitor, NetworkPolicy, 2 replicas"


ASSERTIONS = {
    "default": assert_default,
    "namespaced-watch": assert_namespaced,
    "crds-off": assert_crds_off,
    "monitoring": assert_monitoring,
}


def check_service_monitor(monitor: dict[str, Any]) -> None:
    """The ServiceMonitor is not a built-in kind kubernetes-validate knows: its shape by hand."""
    expect(monitor.get("apiVersion") == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    endpoints = monitor.get("spec", {}).get("endpoints")
    expect(isinstance(endpoints, list) and len(endpoints) == 1, "ServiceMonitor spec.endpoints")
    endpoint = endpoints[0]
    expect(endpoint.get("port") == "metrics" and endpoint.get("path") == "/metrics",
           f"ServiceMonitor endpoint {endpoint}")
    expect(re.fullmatch(r"[0-9]+(ms|s|m|h)", str(endpoint.get("interval"))) is not None,
           f"ServiceMonitor interval {endpoint.get('interval')!r}")
    allowed = {"port", "path", "interval", "scheme", "scrapeTimeout", "honorLabels"}
    expect(set(endpoint) <= allowed, f"unexpected endpoint fields {set(endpoint) - allowed}")


def kubernetes_validate(yaml: Any, objects: list[dict[str, Any]], version: str | None) -> str:
    built_in = [obj for obj in objects if obj.get("kind") != "ServiceMonitor"]
    for monitor in of_kind(objects, "ServiceMonitor"):
        check_service_monitor(monitor)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rendered.yaml"
        path.write_text(dump(yaml, built_in))
        args = ["--strict"] + (["-k", version] if version else []) + [str(path)]
        result = run_tool("kubernetes_validate", *args)
    passed = result.stdout.count(" passed for resource ")
    problems = [line for line in result.stdout.splitlines() if not line.startswith("INFO ")]
    expect(result.returncode == 0 and passed == len(built_in),
           f"{passed}/{len(built_in)} objects passed:\n" + "\n".join(problems))
    return f"{passed} objects" + (f", ServiceMonitor checked by shape"
                                  if of_kind(objects, "ServiceMonitor") else "")


def check_versions(helm: Any) -> str:
    cargo = workspace_version()
    with helm.Chart.load(CHART) as chart:
        metadata = chart.metadata
    for key in ("version", "appVersion"):
        expect(str(metadata.get(key)) == cargo,
               f"Chart.yaml {key} is {metadata.get(key)}, Cargo.toml's workspace version {cargo}")
    return f"{cargo}; Helm SDK {helm.helm_sdk_version()}"


def check_crd_copies() -> str:
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    expect(source == copies, f"crds/ has {source}, the chart's files/crds/ has {copies}")
    for name in source:
        expect((ROOT / "crds" / name).read_bytes()
               == (CHART / "files" / "crds" / name).read_bytes(),
               f"charts/fjord-operator/files/crds/{name} differs from crds/{name}: "
               "cp crds/*.yaml charts/fjord-operator/files/crds/")
    return f"{len(source)} files"


def check_yamllint() -> str:
    files = [CHART / "Chart.yaml", CHART / "values.yaml",
             *sorted((CHART / "files" / "crds").glob("*.yaml"))]
    relative = [str(f.relative_to(ROOT)) for f in files]
    result = run_tool("yamllint", "--strict", "-c", str(YAMLLINT_CONFIG), *relative)
    expect(result.returncode == 0, "\n" + result.stdout)
    return f"{len(files)} files"


def workspace_rust_version() -> str:
    match = re.search(r'^rust-version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(),
                      re.MULTILINE)
    expect(match is not None, "no rust-version in Cargo.toml")
    return match.group(1)


# Kubernetes fields passed through as they are: the schema may name more than values.yaml sets.
PASS_THROUGH = {"resources"}


def check_schema_covers_values(helm: Any) -> str:
    """Every default value has a schema entry with a type, and every schema entry a default."""
    with helm.Chart.load(CHART) as chart:
        values, schema = chart.values, chart.schema
    expect(schema is not None, "the chart has no values.schema.json")
    expect(schema.get("additionalProperties") is False, "the schema's top level is open")
    described = 0

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        nonlocal described
        expect("type" in node or "$ref" in node, f"{path or 'values'} has no type in the schema")
        expect("description" in node or "$ref" in node or not path,
               f"{path} has no description in the schema")
        described += 1
        properties = node.get("properties")
        if not isinstance(value, dict) or properties is None:
            return
        for key in sorted(set(value) | set(properties)):
            where = f"{path}.{key}" if path else key
            expect(key in properties, f"values.yaml has {where}, the schema does not")
            if key not in value and (key == "global" or path in PASS_THROUGH):
                continue
            expect(key in value, f"the schema has {where}, values.yaml does not")
            walk(value[key], properties[key], where)

    walk(values, schema, "")
    return f"{described} entries"


def check_dockerfiles() -> str:
    version, rust = workspace_version(), workspace_rust_version()
    for crate in ("broker", "operator"):
        text = (ROOT / crate / "Dockerfile").read_text()
        binary = f"fjord-{crate}"
        for needle in (f"rust:{rust}-bookworm AS build", f"ARG VERSION={version}\n",
                       f"--locked -p {binary} --target x86_64-unknown-linux-gnu",
                       "gcr.io/distroless/cc-debian12:nonroot", "USER 65532:65532",
                       f'ENTRYPOINT ["/{binary}"]', f"ghcr.io/fjord-dev/{binary}:<version>"):
            expect(needle in text, f"{crate}/Dockerfile lacks {needle.strip()!r}")
    return f"rust {rust}, version {version}"


def check_lint(helm: Any, values: dict[str, Any]) -> str:
    for kube_version in (f"v{OLDEST_KUBERNETES}", None):
        result = helm.lint(CHART, copy.deepcopy(values), strict=True, namespace=NAMESPACE,
                           kube_version=kube_version)
        problems = [m for m in result["messages"] if m["severity"] >= 2]
        expect(not result["errors"] and not problems,
               json.dumps(result["errors"] + problems, indent=2))
    return f"strict, Kubernetes {OLDEST_KUBERNETES} and the SDK's default"


def check_rendered_crds(yaml: Any, objects: list[dict[str, Any]]) -> str:
    """The template only adds labels and the keep annotation to the CRDs it reads."""
    for crd in of_kind(objects, "CustomResourceDefinition"):
        plural = crd["spec"]["names"]["plural"]
        source = yaml.safe_load((ROOT / "crds" / f"fjord.dev_{plural}.yaml").read_text())
        expect({k: v for k, v in crd.items() if k != "metadata"}
               == {k: v for k, v in source.items() if k != "metadata"},
               f"{crd['metadata']['name']}: the rendered CRD differs from crds/")
        expect(crd["metadata"]["name"] == source["metadata"]["name"], "CRD name")
    return "equal to crds/ but for labels and the keep annotation"


def check_refused(helm: Any, yaml: Any, values: dict[str, Any], schema: bool, needle: str) -> str:
    try:
        render(helm, yaml, values)
    except helm.HelmError as error:
        expect(needle in str(error), f"refused, but the message does not name {needle!r}: {error}")
    else:
        fail(f"rendered {values}")
    if not schema:
        return "render refuses it"
    result = helm.lint(CHART, copy.deepcopy(values), strict=True, namespace=NAMESPACE)
    expect(any(needle in error for error in result["errors"]), f"helm lint accepted {values}")
    return "render and lint refuse it"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, required=True,
                        help='JSON {"rules": [...], "leaseRules": [...], "finalizerRules": [...]}: '
                             'the RBAC the chart must grant')
    parser.add_argument("--out", type=Path,
                        help="write the default rendering (multi-document YAML) here")
    args = parser.parse_args()
    expected = json.loads(args.rules.read_text())
    RULES[:] = expected["rules"]
    LEASE_RULES[:] = expected["leaseRules"]
    FINALIZER_RULES[:] = expected["finalizerRules"]

    helm, yaml = import_tools()
    try:
        from kubernetes_validate.utils import latest_version
        newest = latest_version()
    except ImportError:
        newest = "newest"
    report = Report()

    report.check("versions: Chart version and appVersion equal Cargo.toml's workspace version",
                 lambda: check_versions(helm))
    report.check("CRDs: charts/fjord-operator/files/crds equal crds/ byte for byte",
                 check_crd_copies)
    report.check("yamllint: Chart.yaml, values.yaml, files/crds", check_yamllint)
    report.check("values.schema.json describes every value in values.yaml",
                 lambda: check_schema_covers_values(helm))
    report.check("Dockerfiles: Rust toolchain, version and image names match Cargo.toml",
                 check_dockerfiles)

    for name, values in VALUE_SETS.items():
        report.check(f"helm lint [{name}]", lambda values=values: check_lint(helm, values))
        rendered: list[dict[str, Any]] = []

        def assertions(values: dict[str, Any] = values, name: str = name) -> str:
            rendered.extend(render(helm, yaml, values))
            return ASSERTIONS[name](rendered, values)

        report.check(f"render [{name}]", assertions)
        if not rendered:
            continue
        for version in (OLDEST_KUBERNETES, None):
            report.check(f"kubernetes-validate --strict {version or newest} [{name}]",
                         lambda version=version: kubernetes_validate(yaml, rendered, version))
        if name == "default":
            report.check("render [default]: CRDs as in crds/",
                         lambda: check_rendered_crds(yaml, rendered))
            if args.out:
                def write_out() -> str:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(dump(yaml, rendered))
                    return str(args.out)

                report.check("write the default rendering (--out)", write_out)

    for label, (values, schema, needle) in REFUSED.items():
        report.check(f"refused: {label}",
                     lambda values=values, schema=schema, needle=needle:
                     check_refused(helm, yaml, values, schema, needle))

    print(f"chart: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
