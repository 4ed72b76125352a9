"""Static validation of what ops run: Kubernetes manifests, the compose file, the dashboard, the image."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.32.0"


def _load_generator(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay after kustomize when kubectl is here; otherwise the base files one by one."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], check=True,
                             capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    documents = []
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def _validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_generated_base_is_current() -> None:
    generator = _load_generator(K8S / "generate.py")
    for name, documents in generator.manifests().items():
        on_disk = [d for d in yaml.safe_load_all((K8S / "base" / name).read_text()) if d]
        assert on_disk == documents, f"deploy/kubernetes/base/{name} is stale: run deploy/kubernetes/generate.py"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_manifest_validates_strictly(overlay: str) -> None:
    documents = _rendered(overlay)
    assert len(documents) > 40
    for document in documents:
        _validate(document)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "NetworkPolicy", "ConfigMap"} <= kinds


def test_a_broken_manifest_fails_validation() -> None:
    documents = _rendered("dev")
    deployment = copy.deepcopy(next(d for d in documents if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    typo = copy.deepcopy(next(d for d in documents if d["kind"] == "Deployment"))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(typo)


def test_workloads_have_probes_resources_and_drain_time() -> None:
    for document in _rendered("prod"):
        if document["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = document["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 60
        for container in spec["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["securityContext"]["runAsNonRoot"] is True
    aggregator = next(d for d in _rendered("prod") if d["kind"] == "StatefulSet")
    assert aggregator["spec"]["replicas"] == 1 and aggregator["spec"]["volumeClaimTemplates"]
    autoscalers = [d for d in _rendered("prod") if d["kind"] == "HorizontalPodAutoscaler"
                   and d["metadata"]["name"].startswith("trainer-")]
    assert len(autoscalers) == 7
    assert all(a["spec"]["maxReplicas"] <= 4 for a in autoscalers), "never beyond the partition count"


def _interpolate(text: str) -> str:
    """What `docker compose config` does with ${VAR:-default} and ${VAR:?message} (all set here)."""
    return re.sub(r"\$\{(\w+)(?::?([-?])([^}]*))?\}",
                  lambda m: m.group(3) if m.group(2) == "-" else f"value-of-{m.group(1).lower()}", text)


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text()))
    return {k: v for k, v in document.items() if not k.startswith("x-")}


def test_compose_file_follows_the_compose_specification() -> None:
    compose = PyCompose.from_json(json.dumps(_compose()))
    names = set(compose.service_names())
    assert {"kafka", "topics", "ingest", "aggregator", "prometheus", "grafana"} <= names
    assert {f"trainer-{r}" for r in ("us", "eu", "uk", "in", "jp", "ae", "br")} <= names


@pytest.mark.parametrize(
    "mutation",
    [
        lambda d: d["services"]["ingest"].__setitem__("restart", "sometimes"),
        lambda d: d["services"]["ingest"].__setitem__("ports", ["eighty:80"]),
        lambda d: d["services"]["aggregator"].__setitem__("depends_on", {"kafka": {"condition": "when_ready"}}),
    ],
)
def test_a_broken_compose_file_is_rejected(mutation: Any) -> None:
    document = _compose()
    mutation(document)
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(document))


def test_compose_requires_secrets_and_waits_for_healthy_kafka() -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    for variable in ("FACET_INGEST_API_KEY_HASHES", "FACET_TRAINER_KEYS", "FACET_TRAINER_KEY_US",
                     "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + variable + r":\?[^}]+\}", raw), f"{variable} must be required with :?"
    document = yaml.safe_load(raw)
    kafka = document["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert document["services"]["ingest"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def _exported_metric_names() -> set[str]:
    """Names in the /metrics output of the services (the registry each service process serves)."""
    import facet.kafka.dlq  # noqa: F401
    import facet_aggregator.metrics  # noqa: F401
    import facet_ingest.metrics  # noqa: F401
    import facet_recommender.app  # noqa: F401
    import facet_trainer.metrics  # noqa: F401
    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    return set(re.findall(r"^# TYPE (\w+) ", text, re.M))


def test_dashboard_is_current_and_names_only_exported_metrics() -> None:
    generator = _load_generator(ROOT / "deploy" / "grafana" / "dashboard.py")
    on_disk = json.loads((ROOT / "deploy" / "grafana" / "facet-dashboard.json").read_text())
    assert on_disk == json.loads(json.dumps(generator.dashboard())), "run deploy/grafana/dashboard.py"
    exported = _exported_metric_names()
    named = {m for panel in on_disk["panels"] for t in panel["targets"]
             for m in re.findall(r"\bfacet_\w+", t["expr"])}
    assert named
    for metric in named:
        base = re.sub(r"_(bucket|sum|count|total)$", "", metric)
        assert metric in exported or base in exported, f"dashboard names {metric}, which no service exports"


def test_dockerfile_is_multi_stage_non_root_cpu_torch_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile and "torch==2.13.0" in dockerfile
    assert ".venv" in (ROOT / ".dockerignore").read_text()
