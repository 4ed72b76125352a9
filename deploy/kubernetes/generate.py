"""Writes the kustomize base in deploy/kubernetes/base from one description of the services.

The regions and the per-service shapes live here, in one place; `python deploy/kubernetes/generate.py`
rewrites base/. A test checks that base/ is current and that every rendered manifest validates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REGIONS = ("us", "eu", "uk", "in", "jp", "ae", "br")
EVENT_PARTITIONS = 4  # trainers never scale beyond the partition count of their topic
IMAGE = "ghcr.io/facet/facet"
PORT = 8080
BASE = Path(__file__).with_name("base")
PROD = Path(__file__).parent / "overlays" / "prod"
ZONES_OVERLAY = Path(__file__).parent / "overlays" / "zones"
#: The optional zone tier (overlays/zones): each zone's aggregator takes its regions' updates.
ZONES = {"apac": ("jp", "in", "ae"), "emea": ("eu", "uk"), "americas": ("us", "br")}

COMMON_LABELS = {"app.kubernetes.io/part-of": "facet"}


def labels(component: str, region: str | None = None) -> dict[str, str]:
    result = {"app.kubernetes.io/name": component, **COMMON_LABELS}
    if region:
        result["facet.io/region"] = region
    return result


def probes(startup_seconds: int = 120) -> dict[str, Any]:
    http = {"port": "http"}
    return {
        # Liveness: the consume loop turned recently (the service returns 503 when it stalls).
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **http},
            "periodSeconds": 15,
            "timeoutSeconds": 3,
            "failureThreshold": 4,
        },
        # Readiness: partitions assigned and a model loaded (or, for ingest, the producer connected).
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **http},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz", **http},
            "periodSeconds": 5,
            "failureThreshold": startup_seconds // 5,
        },
    }


def kafka_identity(principal: str) -> list[dict[str, Any]]:
    """The service's own Kafka principal (SCRAM over TLS where the overlay turns SASL_SSL on; see
    facet/kafka/acls.py for what each principal may do)."""
    return [{"name": "FACET_KAFKA_SASL_USERNAME", "value": principal},
            secret_env("FACET_KAFKA_SASL_PASSWORD", f"kafka-password-{principal}")]


def model_trust(prefix: str) -> list[dict[str, Any]]:
    """A model consumer verifies every broadcast with the aggregator's public key(s)."""
    return [secret_env(f"{prefix}MODEL_TRUST__PUBLIC_KEYS", "model-public-keys"),
            {"name": f"{prefix}MODEL_TRUST__ARTIFACT_BASE_URL", "value": "http://aggregator/v1/artifacts"}]


def container(
    name: str, args: list[str], env: list[dict[str, Any]], cpu: str, memory: str, cpu_limit: str, memory_limit: str
) -> dict[str, Any]:
    service, *service_args = args  # each service has its own image, entry point `facet-<service>`
    return {
        "name": name,
        "image": f"{IMAGE}-{service}:latest",
        "args": service_args,
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": [{"configMapRef": {"name": "facet-config"}}],
        "env": env,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "kafka-ca", "mountPath": "/etc/facet/tls", "readOnly": True}],
        **probes(),
    }


def pod_spec(
    containers: list[dict[str, Any]], extra_volumes: list[dict[str, Any]] | None = None, grace_seconds: int = 90
) -> dict[str, Any]:
    return {
        "serviceAccountName": "facet",
        "automountServiceAccountToken": False,
        # Longer than a drain: finish the batch, send the pending update, commit, leave the group.
        "terminationGracePeriodSeconds": grace_seconds,
        "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}},
                    # The CA that signed the brokers' certificates (prod overlay: SASL_SSL); optional in dev.
                    {"name": "kafka-ca", "configMap": {"name": "kafka-ca", "optional": True}},
                    *(extra_volumes or [])],
    }


def secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "facet-secrets", "key": key}}}


def deployment(
    name: str, component: str, replicas: int, spec: dict[str, Any], region: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(component, region)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(component, region)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(component, region),
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT)},
                },
                "spec": spec,
            },
        },
    }


def service(name: str, component: str, region: str | None = None, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": labels(component, region),
        "ports": [{"name": "http", "port": 80 if not headless else PORT, "targetPort": "http"}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(component, region)},
        "spec": spec,
    }


def pdb(name: str, component: str, region: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels(component, region)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels(component, region)}},
    }


def trainer_autoscaler(region: str) -> dict[str, Any]:
    """Scale on consumer lag (an external metric from the Prometheus adapter), never past the partitions."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"trainer-{region}", "labels": labels("trainer", region)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"trainer-{region}"},
            "minReplicas": 1,
            "maxReplicas": EVENT_PARTITIONS,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "facet_trainer_consumer_lag",
                            "selector": {"matchLabels": {"region": region}},
                        },
                        "target": {"type": "AverageValue", "averageValue": "5000"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def network_policies() -> list[dict[str, Any]]:
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    kafka = {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}],
    }
    scrape = {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": PORT}],
    }
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "ingest"},
            "spec": {
                "podSelector": {"matchLabels": labels("ingest")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": PORT}]}],
                "egress": [dns, kafka],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "aggregator"},
            "spec": {
                "podSelector": {"matchLabels": labels("aggregator")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    scrape,
                    {
                        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "facet"}}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    },
                ],
                "egress": [dns, kafka],
            },
        },
    ]
    to_aggregator = {
        "to": [{"podSelector": {"matchLabels": labels("aggregator")}}],
        "ports": [{"protocol": "TCP", "port": PORT}],
    }
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "insights"},
            "spec": {
                "podSelector": {"matchLabels": labels("insights")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [scrape, {"ports": [{"protocol": "TCP", "port": PORT}]}],
                "egress": [dns, kafka, to_aggregator],
            },
        }
    )
    for region in REGIONS:
        # A region's pods reach Kafka, DNS and the aggregator's model artifacts; nothing else.
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"trainer-{region}"},
                "spec": {
                    "podSelector": {"matchLabels": labels("trainer", region)},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [scrape],
                    "egress": [dns, kafka, to_aggregator],
                },
            }
        )
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"recommender-{region}"},
                "spec": {
                    "podSelector": {"matchLabels": labels("recommender", region)},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [scrape, {"ports": [{"protocol": "TCP", "port": PORT}]}],
                    "egress": [dns, kafka, to_aggregator],
                },
            }
        )
    return policies


def manifests() -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {}
    files["serviceaccount.yaml"] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "facet"},
            "automountServiceAccountToken": False,
        }
    ]
    files["configmap.yaml"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "facet-config"},
            "data": {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka-bootstrap.kafka:9092",
                "FACET_KAFKA_ENABLE_IDEMPOTENCE": "true",
                "FACET_LOG_JSON": "true",
                "FACET_HTTP_PORT": str(PORT),
                # Shopper-level DP in every trainer (README "Privacy"): epsilon 8 per shopper per day, delta
                # 1e-7. Only a development cluster may set FACET_TRAINER_PRIVACY__ENABLED=false.
                "FACET_TRAINER_PRIVACY__ENABLED": "true",
                "FACET_TRAINER_PRIVACY__EPSILON": "8",
                "FACET_TRAINER_PRIVACY__DELTA": "1e-7",
                "FACET_TRAINER_PRIVACY__PERIOD_SECONDS": "86400",
                # The insights statistics' own budget: epsilon 2 per shopper per day, one release a day.
                "FACET_TRAINER_STATISTICS__ENABLED": "true",
                "FACET_TRAINER_STATISTICS__PRIVACY__EPSILON": "2",
                "FACET_TRAINER_STATISTICS__PRIVACY__PERIOD_SECONDS": "86400",
            },
        }
    ]
    ingest = container(
        "ingest",
        ["ingest"],
        [secret_env("FACET_INGEST_API_KEY_HASHES", "ingest-api-key-hashes"), *kafka_identity("ingest")],
        "250m",
        "384Mi",
        "1",
        "768Mi",
    )
    files["ingest.yaml"] = [
        deployment("ingest", "ingest", 2, pod_spec([ingest], grace_seconds=60)),
        service("ingest", "ingest"),
        pdb("ingest", "ingest"),
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "ingest", "labels": labels("ingest")},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        },
    ]
    aggregator = container(
        "aggregator",
        ["aggregator"],
        [
            secret_env("FACET_AGGREGATOR_TRAINER_KEYS", "trainer-keys"),
            secret_env("FACET_AGGREGATOR_MODEL_SIGNING_KEY", "model-signing-key"),
            *kafka_identity("aggregator"),
            {"name": "FACET_AGGREGATOR_CHECKPOINT_DIR", "value": "/var/lib/facet/aggregator"},
            {"name": "FACET_AGGREGATOR_ARTIFACT_BASE_URL", "value": "http://aggregator/v1/artifacts"},
        ],
        "1",
        "2Gi",
        "2",
        "4Gi",
    )
    aggregator["volumeMounts"].append({"name": "state", "mountPath": "/var/lib/facet/aggregator"})
    files["aggregator.yaml"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "aggregator", "labels": labels("aggregator")},
            "spec": {
                "serviceName": "aggregator-headless",
                "replicas": 1,  # one writer of the global model
                "selector": {"matchLabels": labels("aggregator")},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {
                        "labels": labels("aggregator"),
                        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT)},
                    },
                    "spec": pod_spec([aggregator], grace_seconds=120),
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "state"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
                    }
                ],
            },
        },
        service("aggregator", "aggregator"),
        service("aggregator-headless", "aggregator", headless=True),
    ]
    trainers: list[dict[str, Any]] = []
    recommenders: list[dict[str, Any]] = []
    for region in REGIONS:
        trainer = container(
            "trainer",
            ["trainer", "--region", region],
            [secret_env("FACET_TRAINER_SIGNING_KEY", f"trainer-key-{region}"), *model_trust("FACET_TRAINER_"),
             *kafka_identity(f"trainer-{region}")],
            "500m",
            "1Gi",
            "1",
            "2Gi",
        )
        trainers += [
            deployment(f"trainer-{region}", "trainer", 1, pod_spec([trainer], grace_seconds=120), region),
            trainer_autoscaler(region),
        ]
        recommender = container(
            "recommender",
            ["recommender", "--region", region],
            [secret_env("FACET_RECOMMENDER_API_KEYS", "recommender-api-keys"), *model_trust("FACET_RECOMMENDER_"),
             *kafka_identity(f"recommender-{region}")],
            "250m",
            "1Gi",
            "1",
            "2Gi",
        )
        recommenders += [
            deployment(f"recommender-{region}", "recommender", 2, pod_spec([recommender]), region),
            service(f"recommender-{region}", "recommender", region),
            pdb(f"recommender-{region}", "recommender", region),
        ]
    files["trainers.yaml"] = trainers
    files["recommenders.yaml"] = recommenders
    # Merchandising's insights: reads models and the aggregator-signed statistics, never an events topic.
    insights = container(
        "insights",
        ["insights"],
        [secret_env("FACET_INSIGHTS_API_KEYS", "insights-api-keys"), *model_trust("FACET_INSIGHTS_"),
         *kafka_identity("insights")],
        "250m",
        "1Gi",
        "1",
        "2Gi",
    )
    files["insights.yaml"] = [
        deployment("insights", "insights", 1, pod_spec([insights])),
        service("insights", "insights"),
    ]
    files["networkpolicies.yaml"] = network_policies()
    return files


def zone_tier() -> list[dict[str, Any]]:
    """One StatefulSet per zone (its own checkpoint volume: the outbox that makes forwarding exactly-once),
    its Service and NetworkPolicy, and its Strimzi KafkaUser."""
    documents: list[dict[str, Any]] = []
    for zone in ZONES:
        name = f"aggregator-zone-{zone}"
        tier = container(
            "aggregator",
            ["aggregator", "--zone", zone],
            [secret_env("FACET_AGGREGATOR_TRAINER_KEYS", "trainer-keys"),
             secret_env("FACET_AGGREGATOR_ZONE_SIGNING_KEY", f"zone-key-{zone}"),
             *model_trust("FACET_AGGREGATOR_"), *kafka_identity(name),
             {"name": "FACET_AGGREGATOR_CHECKPOINT_DIR", "value": "/var/lib/facet/zone"}],
            "500m", "1Gi", "1", "2Gi",
        )
        tier["volumeMounts"].append({"name": "state", "mountPath": "/var/lib/facet/zone"})
        documents += [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": name, "labels": labels("aggregator-zone", zone)},
                "spec": {
                    "serviceName": name,
                    "replicas": 1,  # one writer of the zone's steps
                    "selector": {"matchLabels": labels("aggregator-zone", zone)},
                    "updateStrategy": {"type": "RollingUpdate"},
                    "template": {
                        "metadata": {
                            "labels": labels("aggregator-zone", zone),
                            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT)},
                        },
                        "spec": pod_spec([tier], grace_seconds=120),
                    },
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "state"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "10Gi"}}},
                        }
                    ],
                },
            },
            service(name, "aggregator-zone", zone, headless=True),
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name},
                "spec": {
                    "podSelector": {"matchLabels": labels("aggregator-zone", zone)},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{
                        "from": [{"namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    }],
                    "egress": [
                        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                         "ports": [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}]},
                        {"to": [{"podSelector": {"matchLabels": labels("aggregator")}}],
                         "ports": [{"protocol": "TCP", "port": PORT}]},
                    ],
                },
            },
        ]
    return documents


def zone_users() -> dict[str, dict[str, Any]]:
    """Every KafkaUser the zone tier adds or changes (zone principals; zoned trainers write their inbox)."""
    from facet.config import ZoneMap
    from facet.kafka.acls import strimzi_users

    flat = {u["metadata"]["name"]: u for u in strimzi_users(REGIONS)}
    zoned = {u["metadata"]["name"]: u for u in strimzi_users(REGIONS, zones=ZoneMap(zones=ZONES))}
    return {name: user for name, user in zoned.items() if flat.get(name) != user}


def zones_kustomization() -> dict[str, Any]:
    """The zones overlay: prod, the zone tier, each zoned trainer told its zone, and the ACL lists of the
    KafkaUsers the tier changes replaced whole (lists are not merged)."""
    patches: list[dict[str, Any]] = []
    for zone, regions in ZONES.items():
        for region in regions:
            patches.append({"target": {"kind": "Deployment", "name": f"trainer-{region}"},
                            "patch": yaml.safe_dump([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                                                      "value": {"name": "FACET_TRAINER_ZONE", "value": zone}}],
                                                    sort_keys=False)})
    changed = zone_users()
    for name, user in changed.items():
        if not name.startswith("aggregator-zone-"):  # users prod has (zoned trainers, the topic creator)
            patches.append({"target": {"group": "kafka.strimzi.io", "kind": "KafkaUser", "name": name},
                            "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/authorization/acls",
                                                      "value": user["spec"]["authorization"]["acls"]}],
                                                    sort_keys=False)})
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../prod", "zone-tier.yaml", "zone-users.yaml"],
        "patches": patches,
    }


def main() -> None:
    BASE.mkdir(exist_ok=True)
    files = manifests()
    for name, documents in files.items():
        (BASE / name).write_text(
            "# Generated by deploy/kubernetes/generate.py; edit that, not this.\n"
            + yaml.safe_dump_all(documents, sort_keys=False)
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": COMMON_LABELS, "includeSelectors": False}],
        "resources": sorted(files),
    }
    (BASE / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    (PROD / "kafka-users.yaml").write_text(
        "# Generated by deploy/kubernetes/generate.py from facet/kafka/acls.py; edit those, not this.\n"
        + yaml.safe_dump_all(kafka_users(), sort_keys=False)
    )
    header = "# Generated by deploy/kubernetes/generate.py; edit that, not this.\n"
    ZONES_OVERLAY.mkdir(exist_ok=True)
    (ZONES_OVERLAY / "zone-tier.yaml").write_text(header + yaml.safe_dump_all(zone_tier(), sort_keys=False))
    (ZONES_OVERLAY / "zone-users.yaml").write_text(header + yaml.safe_dump_all(
        [u for n, u in zone_users().items() if n.startswith("aggregator-zone-")], sort_keys=False))
    (ZONES_OVERLAY / "kustomization.yaml").write_text(header + yaml.safe_dump(zones_kustomization(),
                                                                              sort_keys=False))


def kafka_users() -> list[dict[str, Any]]:
    """Strimzi KafkaUsers for the prod overlay: one SCRAM principal per service, each with only its ACLs."""
    from facet.kafka.acls import strimzi_users

    return strimzi_users(REGIONS)


if __name__ == "__main__":
    main()
