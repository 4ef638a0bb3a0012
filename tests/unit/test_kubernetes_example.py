"""examples/kubernetes/: every manifest is valid against Kubernetes' own OpenAPI schemas (strict:
unknown fields are errors), and the pieces fit together: the Deployment's config, env, files,
probes and ports are the ones the mirror uses."""

import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from authmirror.config import load_config
from authmirror.licenses import parse_licenses

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[dict]:
    docs = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def one(kind: str, name: str | None = None) -> dict:
    [found] = [d for d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_check_catches_mistakes():
    deployment = one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in EXAMPLE.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_deployment_runs_replicas_with_probes_and_resources():
    deployment = one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    [container] = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and {"cpu", "memory"} <= set(container["resources"]["limits"])
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for other in (one("Service")["spec"]["selector"], one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert other.items() <= labels.items()
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and hpa["minReplicas"] >= 2
    assert one("PodDisruptionBudget")["spec"]["minAvailable"] < spec["replicas"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert one("Service")["spec"]["ports"][0]["targetPort"] in port_names


def test_the_mounted_config_is_a_working_authmirror_config(tmp_path, monkeypatch):
    """Lay the ConfigMap and Secrets out as the pod sees them, then load the config as the mirror does."""
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    root = tmp_path / "pod"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True)
        if "configMap" in source:
            files = one("ConfigMap", source["configMap"]["name"])["data"]
        elif "secret" in source:
            files = one("Secret", source["secret"]["secretName"])["stringData"]
        else:
            continue
        for name, content in files.items():
            (target / name).write_text(content)
    for ref in container["envFrom"]:
        for name, content in one("Secret", ref["secretRef"]["name"])["stringData"].items():
            monkeypatch.setenv(name, content)

    config_arg = container["args"][container["args"].index("-c") + 1]
    config_path = root / config_arg.lstrip("/")
    text = config_path.read_text()
    # The config names files by their path in the pod; here they live under `root`.
    config_path.write_text(re.sub(r"(file:\s*)/", lambda m: f"{m.group(1)}{root}/", text))
    config = load_config(config_path)

    assert config.listen.port in {p["containerPort"] for p in container["ports"]}
    assert str(config.listen.port) == deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
    assert config.pull_log == Path("-")  # one stream per replica, with the pod's logs
    assert config.metrics.enabled
    registry = config.registries()[0]
    assert registry.password is not None and registry.password.value == os.environ["VENDOR_PASS"]
    assert config.licenses.file is not None and parse_licenses(yaml.safe_load(config.licenses.file.read_text()))
    assert config.token.signing_key.startswith("file:") and Path(config.token.signing_key[5:]).exists()
