"""Who may do what on Kafka: one principal per service (per region where the service is regional) and the
ACLs that let each do its job and nothing more. One description, rendered for every way Facet is run:
the compose set-up script (``kafka-configs.sh`` SCRAM users + ``kafka-acls.sh``) and Strimzi
``KafkaUser`` resources for Kubernetes. Tests check the grants against the data-residency rules.

- ingest writes every region's events topic (it is the gateway), and the dead-letter topic;
- trainer-R reads ``facet.events.R.v1`` (its group ``facet-trainer-R``) and the models topic, writes
  updates and the dead-letter topic;
- recommender-R reads ``facet.events.R.v1`` and the models topic (no group: it reads every partition),
  writes the dead-letter topic;
- the aggregator reads updates (group ``facet-aggregator``), writes models and the dead-letter topic;
- with zones, aggregator-zone-Z reads its inbox ``facet.updates.Z.v1`` (its group) and the models topic and
  writes the updates topic and the dead-letter topic; trainers of Z's regions write Z's inbox (and still
  the updates topic, for their statistics releases);
- the topic creator (an operator job) is the only one that may create topics.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from facet.config import TopicSettings, ZoneMap

Operation = Literal["Read", "Write", "Describe", "Create", "DescribeConfigs"]
ResourceType = Literal["topic", "group", "cluster"]


class AclGrant(BaseModel, frozen=True):
    principal: str
    resource_type: ResourceType
    resource_name: str
    operation: Operation


def _topic(principal: str, topic: str, *operations: Operation) -> list[AclGrant]:
    return [AclGrant(principal=principal, resource_type="topic", resource_name=topic, operation=o)
            for o in ("Describe", *operations)]


def _group(principal: str, group: str) -> list[AclGrant]:
    return [AclGrant(principal=principal, resource_type="group", resource_name=group, operation="Read")]


def service_grants(regions: Sequence[str], topics: TopicSettings | None = None,
                   zones: ZoneMap | None = None) -> list[AclGrant]:
    topics = topics or TopicSettings()
    zones = zones or ZoneMap()
    grants: list[AclGrant] = []
    grants += [g for r in regions for g in _topic("ingest", topics.events_topic(r), "Write")]
    grants += _topic("ingest", topics.dead_letter, "Write")
    for region in regions:
        events = topics.events_topic(region)
        trainer, recommender = f"trainer-{region}", f"recommender-{region}"
        grants += _topic(trainer, events, "Read") + _group(trainer, f"facet-trainer-{region}")
        grants += _topic(trainer, topics.models, "Read") + _topic(trainer, topics.updates, "Write")
        grants += _topic(trainer, topics.dead_letter, "Write")
        grants += _topic(recommender, events, "Read") + _topic(recommender, topics.models, "Read")
        grants += _topic(recommender, topics.dead_letter, "Write")
    grants += _topic("aggregator", topics.updates, "Read") + _group("aggregator", "facet-aggregator")
    grants += _topic("aggregator", topics.models, "Write") + _topic("aggregator", topics.dead_letter, "Write")
    grants += _topic("aggregator", topics.statistics, "Write")
    # Insights reads only what the aggregator signed: models and forwarded statistics, never raw events.
    grants += _topic("insights", topics.models, "Read") + _topic("insights", topics.statistics, "Read")
    grants += _topic("insights", topics.dead_letter, "Write")
    for zone, members in zones.zones.items():
        inbox, tier = topics.zone_updates_topic(zone), f"aggregator-zone-{zone}"
        grants += _topic(tier, inbox, "Read") + _group(tier, f"facet-aggregator-zone-{zone}")
        grants += _topic(tier, topics.models, "Read") + _topic(tier, topics.updates, "Write")
        grants += _topic(tier, topics.dead_letter, "Write")
        grants += [g for r in members if r in regions for g in _topic(f"trainer-{r}", inbox, "Write")]
    everything = [topics.events_topic(r) for r in regions] + [topics.updates, topics.models, topics.statistics,
                                                              topics.dead_letter]
    everything += [topics.zone_updates_topic(zone) for zone in zones.zones]
    grants += [g for topic in everything for g in _topic("topic-creator", topic, "Create", "DescribeConfigs")]
    return grants


def principals(regions: Sequence[str], zones: ZoneMap | None = None) -> list[str]:
    return ["ingest", "aggregator", "insights", "topic-creator",
            *(f"{kind}-{r}" for r in regions for kind in ("trainer", "recommender")),
            *(f"aggregator-zone-{zone}" for zone in (zones or ZoneMap()).zones)]


def setup_script(regions: Sequence[str], topics: TopicSettings | None = None,
                 bootstrap: str = "kafka:9094", admin_config: str = "/etc/kafka/admin.properties",
                 zones: ZoneMap | None = None) -> str:
    """The shell script the compose ``kafka-setup`` job runs: one SCRAM user per principal (its password
    from ``$KAFKA_PASSWORD_<PRINCIPAL>``), then exactly the grants above. Idempotent."""
    lines = ["#!/usr/bin/env bash",
             "# Generated by `facet kafka setup-script`; edit facet/kafka/acls.py, not this.",
             "set -euo pipefail",
             f"BOOTSTRAP={shlex.quote(bootstrap)}",
             f"ADMIN={shlex.quote(admin_config)}",
             "bin=/opt/kafka/bin"]
    for principal in principals(regions, zones):
        variable = "KAFKA_PASSWORD_" + principal.upper().replace("-", "_")
        lines.append(f'"$bin/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN" --alter '
                     f"--entity-type users --entity-name {principal} "
                     f'--add-config "SCRAM-SHA-512=[iterations=8192,password=${{{variable}:?}}]"')
    for grant in service_grants(regions, topics, zones):
        flag = {"topic": "--topic", "group": "--group", "cluster": "--cluster"}[grant.resource_type]
        lines.append(f'"$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN" --add '
                     f"--allow-principal User:{grant.principal} --operation {grant.operation} "
                     f"{flag} {shlex.quote(grant.resource_name)}")
    return "\n".join(lines) + "\n"


def strimzi_users(regions: Sequence[str], cluster: str = "facet-kafka",
                  topics: TopicSettings | None = None, zones: ZoneMap | None = None) -> list[dict[str, Any]]:
    """One Strimzi ``KafkaUser`` per principal: SCRAM-SHA-512 credentials and its simple-authorization ACLs."""
    grants = service_grants(regions, topics, zones)
    users = []
    for principal in principals(regions, zones):
        acls = [{"resource": {"type": g.resource_type, "name": g.resource_name, "patternType": "literal"},
                 "operations": [g.operation]} for g in grants if g.principal == principal]
        users.append({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaUser",
            "metadata": {"name": principal, "labels": {"strimzi.io/cluster": cluster}},
            "spec": {"authentication": {"type": "scram-sha-512"},
                     "authorization": {"type": "simple", "acls": acls}},
        })
    return users
