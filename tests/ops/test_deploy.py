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
    if document.get("apiVersion", "").startswith("kafka.strimzi.io/"):
        return  # a custom resource: test_kafka_users_grant_exactly_the_acls checks these
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_generated_base_is_current() -> None:
    generator = _load_generator(K8S / "generate.py")
    for name, documents in generator.manifests().items():
        on_disk = [d for d in yaml.safe_load_all((K8S / "base" / name).read_text()) if d]
        assert on_disk == documents, f"deploy/kubernetes/base/{name} is stale: run deploy/kubernetes/generate.py"
    users = [d for d in yaml.safe_load_all((K8S / "overlays" / "prod" / "kafka-users.yaml").read_text()) if d]
    assert users == generator.kafka_users(), "overlays/prod/kafka-users.yaml is stale: run generate.py"


@pytest.mark.parametrize("overlay", ["dev", "prod", "zones"])
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
                     "GRAFANA_ADMIN_PASSWORD", "FACET_MODEL_SIGNING_KEY", "FACET_MODEL_PUBLIC_KEYS",
                     "FACET_RECOMMENDER_API_KEYS", "KAFKA_PASSWORD_TRAINER_US"):
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


REGIONS = ("us", "eu", "uk", "in", "jp", "ae", "br")


def test_kafka_grants_keep_each_region_to_itself() -> None:
    from facet.config import TopicSettings
    from facet.kafka.acls import service_grants

    topics = TopicSettings()
    grants = service_grants(REGIONS, topics)
    events = {topics.events_topic(r): r for r in REGIONS}
    for grant in grants:
        if grant.resource_type != "topic" or grant.resource_name not in events:
            continue
        region = events[grant.resource_name]
        if grant.operation == "Read":
            assert grant.principal in (f"trainer-{region}", f"recommender-{region}"), grant
        if grant.operation == "Write":
            assert grant.principal == "ingest", grant
    writers = {(g.principal, g.resource_name) for g in grants if g.operation == "Write"}
    assert {p for p, topic in writers if topic == topics.models} == {"aggregator"}
    assert {p for p, topic in writers if topic == topics.updates} == {f"trainer-{r}" for r in REGIONS}
    # Statistics reach insights only signed by the aggregator, and insights reads nothing raw.
    assert {p for p, topic in writers if topic == topics.statistics} == {"aggregator"}
    assert {g.resource_name for g in grants if g.principal == "insights" and g.operation == "Read"} == {
        topics.models, topics.statistics}
    assert {g.principal for g in grants if g.operation == "Create"} == {"topic-creator"}
    assert not [g for g in grants if g.resource_type == "cluster"], "no service administers the cluster"


def test_compose_setup_script_and_kafka_users_are_current() -> None:
    from facet.kafka.acls import setup_script

    assert (ROOT / "deploy" / "compose" / "kafka-setup.sh").read_text() == setup_script(REGIONS), (
        "run `facet kafka setup-script > deploy/compose/kafka-setup.sh`")


def test_compose_kafka_is_tls_scram_and_acl_only() -> None:
    from facet.kafka.acls import principals

    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broker = document["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in broker["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) <= {"SSL", "SASL_SSL"}, "no listener runs PLAINTEXT"
    assert broker["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert broker["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert broker["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    users = set()
    for name, service in document["services"].items():
        environment = service.get("environment") or {}
        if "FACET_KAFKA_SASL_USERNAME" not in environment:
            continue
        users.add(environment["FACET_KAFKA_SASL_USERNAME"])
        assert environment.get("FACET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL") == "SASL_SSL"
        expected = name.replace("topics", "topic-creator")
        assert environment["FACET_KAFKA_SASL_USERNAME"] == expected, f"{name} must use its own principal"
        if name.startswith(("trainer-", "recommender-", "insights")):
            assert "PUBLIC_KEYS" in "".join(environment), f"{name} must verify model broadcasts"
    assert users == set(principals(REGIONS))
    assert "FACET_AGGREGATOR_MODEL_SIGNING_KEY" in document["services"]["aggregator"]["environment"]


async def test_sasl_ssl_client_settings_render_for_aiokafka() -> None:
    import certifi
    from facet.config import KafkaSettings
    from facet.kafka.clients import make_producer

    settings = KafkaSettings(bootstrap_servers="kafka:9092", security_protocol="SASL_SSL",
                             sasl_mechanism="SCRAM-SHA-512", sasl_username="trainer-us",
                             sasl_password="secret", ssl_cafile=certifi.where())
    options = settings.client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "trainer-us" and options["ssl_context"] is not None
    producer = make_producer(settings, settings.federation_servers())  # aiokafka accepts the options
    assert producer.client._security_protocol == "SASL_SSL"
    await producer.stop()  # never started: nothing to flush, but closes it
    with pytest.raises(ValueError, match="SASL"):
        KafkaSettings(bootstrap_servers="kafka:9092", security_protocol="SASL_SSL")


def test_kafka_users_grant_exactly_the_acls() -> None:
    from facet.kafka.acls import service_grants

    users = [d for d in yaml.safe_load_all((K8S / "overlays" / "prod" / "kafka-users.yaml").read_text()) if d]
    granted = {(u["metadata"]["name"], acl["resource"]["type"], acl["resource"]["name"], op)
               for u in users for acl in u["spec"]["authorization"]["acls"] for op in acl["operations"]}
    assert granted == {(g.principal, g.resource_type, g.resource_name, g.operation) for g in service_grants(REGIONS)}
    assert all(u["spec"]["authentication"]["type"] == "scram-sha-512" for u in users)


ZONES = "apac:jp,in,ae;emea:eu,uk;americas:us,br"


def _merged_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """What `docker compose -f base -f override` does with the keys the zone file uses: services and their
    environment maps merge, a volume with the same container path is replaced, other keys are replaced."""
    merged = copy.deepcopy(base)
    for name, service in override.get("services", {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in service.items():
            if key == "environment" and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            elif key == "volumes" and key in target:
                paths = {v.split(":")[1]: v for v in value}
                target[key] = [paths.pop(v.split(":")[1], v) for v in target[key]] + list(paths.values())
            elif key == "depends_on" and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    merged.setdefault("volumes", {}).update(override.get("volumes", {}))
    return merged


def test_the_compose_zone_tier_is_valid_and_each_zone_has_its_principal_and_regions() -> None:
    from facet.config import ZoneMap
    from facet.kafka.acls import principals, setup_script

    zones = ZoneMap.parse(ZONES)
    override = yaml.safe_load(_interpolate((ROOT / "deploy" / "compose" / "zones.yml").read_text()))
    merged = _merged_compose(_compose(), override)
    compose = PyCompose.from_json(json.dumps(merged))
    assert {f"aggregator-zone-{z}" for z in zones.zones} <= set(compose.service_names())
    services = merged["services"]
    for zone, regions in zones.zones.items():
        tier = services[f"aggregator-zone-{zone}"]
        assert tier["command"] == ["--zone", zone]
        assert tier["environment"]["FACET_KAFKA_SASL_USERNAME"] == f"aggregator-zone-{zone}"
        assert "FACET_AGGREGATOR_MODEL_TRUST__PUBLIC_KEYS" in tier["environment"], "a zone verifies broadcasts"
        for region in regions:
            assert services[f"trainer-{region}"]["environment"]["FACET_TRAINER_ZONE"] == zone
            assert services[f"trainer-{region}"]["environment"]["FACET_KAFKA_SASL_USERNAME"] == f"trainer-{region}"
    users = {s["environment"]["FACET_KAFKA_SASL_USERNAME"] for s in services.values()
             if isinstance(s.get("environment"), dict) and "FACET_KAFKA_SASL_USERNAME" in s["environment"]}
    assert users == set(principals(REGIONS, zones))
    assert services["topics"]["environment"]["FACET_ZONES"] == ZONES
    assert "/etc/kafka/kafka-setup.sh" in " ".join(services["kafka-setup"]["volumes"])
    assert (ROOT / "deploy" / "compose" / "kafka-setup-zones.sh").read_text() == setup_script(
        REGIONS, zones=zones), "run `facet kafka setup-script --zones ... > deploy/compose/kafka-setup-zones.sh`"


def test_the_kubernetes_zone_overlay_is_current_valid_and_grants_exactly_the_zoned_acls() -> None:
    from facet.config import ZoneMap
    from facet.kafka.acls import service_grants

    generator = _load_generator(K8S / "generate.py")
    overlay = K8S / "overlays" / "zones"
    tier = [d for d in yaml.safe_load_all((overlay / "zone-tier.yaml").read_text()) if d]
    assert tier == generator.zone_tier(), "overlays/zones is stale: run deploy/kubernetes/generate.py"
    assert yaml.safe_load((overlay / "kustomization.yaml").read_text()) == generator.zones_kustomization()
    for document in tier:
        _validate(document)
    assert ZoneMap(zones=generator.ZONES) == ZoneMap.parse(ZONES)
    # prod's KafkaUsers, with the overlay's new users added and its patched ACL lists applied.
    users = {d["metadata"]["name"]: d for d in yaml.safe_load_all(
        (K8S / "overlays" / "prod" / "kafka-users.yaml").read_text()) if d}
    users.update({d["metadata"]["name"]: d for d in yaml.safe_load_all((overlay / "zone-users.yaml").read_text())
                  if d})
    for patch in generator.zones_kustomization()["patches"]:
        if patch["target"]["kind"] == "KafkaUser":
            (operation,) = yaml.safe_load(patch["patch"])
            users[patch["target"]["name"]]["spec"]["authorization"]["acls"] = operation["value"]
    granted = {(u["metadata"]["name"], acl["resource"]["type"], acl["resource"]["name"], op)
               for u in users.values() for acl in u["spec"]["authorization"]["acls"] for op in acl["operations"]}
    expected = service_grants(REGIONS, zones=ZoneMap.parse(ZONES))
    assert granted == {(g.principal, g.resource_type, g.resource_name, g.operation) for g in expected}
    zoned_trainers = {p["target"]["name"] for p in generator.zones_kustomization()["patches"]
                      if p["target"]["kind"] == "Deployment"}
    assert zoned_trainers == {f"trainer-{r}" for r in REGIONS}
