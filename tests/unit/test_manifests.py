import pytest

from authmirror.manifests import ManifestError, images_in_manifests

EVERY_KIND = """
apiVersion: v1
kind: Pod
metadata: {name: pod}
spec:
  initContainers: [{name: init, image: "reg.example.com/init:1"}]
  containers: [{name: main, image: "reg.example.com/app:1"}]
  ephemeralContainers: [{name: debug, image: "reg.example.com/debug:1"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: deploy}
spec:
  template:
    spec:
      containers: [{name: web, image: "reg.example.com/web:2"}, {name: sidecar, image: "reg.example.com/app:1"}]
---
# a comment-only document and an empty one are skipped
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec: {template: {spec: {containers: [{name: db, image: "reg.example.com/db:3"}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec: {template: {spec: {containers: [{name: agent, image: "reg.example.com/agent:4"}]}}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec: {template: {spec: {containers: [{name: rs, image: "reg.example.com/rs:5"}]}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec: {template: {spec: {containers: [{name: migrate, image: "reg.example.com/migrate:6"}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec: {jobTemplate: {spec: {template: {spec: {containers: [{name: backup, image: "reg.example.com/backup:7"}]}}}}}
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: listed}
    spec: {containers: [{name: listed, image: "reg.example.com/listed:8"}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: rollout}
spec: {template: {spec: {containers: [{name: canary, image: "reg.example.com/canary:9"}]}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config}
data: {image: "not-an-image:1"}
"""


def test_every_workload_kind_and_container_field():
    found = images_in_manifests(EVERY_KIND)
    assert [f.image for f in found] == [
        "reg.example.com/init:1",
        "reg.example.com/app:1",
        "reg.example.com/debug:1",
        "reg.example.com/web:2",
        "reg.example.com/db:3",
        "reg.example.com/agent:4",
        "reg.example.com/rs:5",
        "reg.example.com/migrate:6",
        "reg.example.com/backup:7",
        "reg.example.com/listed:8",
        "reg.example.com/canary:9",
    ]
    app = next(f for f in found if f.image == "reg.example.com/app:1")
    assert [u.describe() for u in app.uses] == ["Pod/pod containers[main]", "Deployment/deploy containers[sidecar]"]
    init = found[0].uses[0]
    assert (init.field, init.document) == ("initContainers", 1)
    assert found[2].uses[0].field == "ephemeralContainers"
    assert next(f for f in found if "backup" in f.image).uses[0].kind == "CronJob"


def test_not_yaml_is_a_clear_error():
    with pytest.raises(ManifestError, match="deploy.yaml is not valid YAML"):
        images_in_manifests("kind: Pod\n  spec: [", "deploy.yaml")


def test_nothing_found_in_non_workloads():
    assert images_in_manifests("kind: Service\nmetadata: {name: s}\nspec: {ports: []}\n") == []
