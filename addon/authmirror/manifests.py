"""Every container image a set of Kubernetes manifests will pull.

Reads multi-document YAML streams (what `helm template` and `kubectl get -o yaml` print) and
`List` objects, and finds the pod spec of each workload kind — Pod, Deployment, StatefulSet,
DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, PodTemplate — then the `image` of its
containers, initContainers and ephemeralContainers. Other kinds (custom resources such as Argo
Rollouts) are searched for anything shaped like a pod spec, so their images are not missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml

from .errors import ConfigError

CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
# kind -> path from the object to its pod spec
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class ManifestError(ConfigError):
    """Manifests that cannot be read (not YAML); a usage problem (exit 2)."""

    def __init__(self, message: str):
        super().__init__("", message)


@dataclass(frozen=True)
class ImageUse:
    """One container that uses an image: where it was found."""

    kind: str
    name: str  # metadata.name of the workload
    container: str
    field: str  # containers | initContainers | ephemeralContainers
    document: int  # 1-based position in the stream

    def describe(self) -> str:
        return f"{self.kind}/{self.name} {self.field}[{self.container}]"


@dataclass
class FoundImage:
    image: str
    uses: list[ImageUse] = field(default_factory=list)


def images_in_manifests(text: str, source: str = "manifests") -> list[FoundImage]:
    """Distinct images in order of first appearance, each with where it is used."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(f"{source} is not valid YAML: {e}") from None
    found: dict[str, FoundImage] = {}
    for number, document in enumerate(documents, start=1):
        for obj in _objects(document):
            for use, image in _images_of(obj, number):
                found.setdefault(image, FoundImage(image)).uses.append(use)
    return list(found.values())


def _objects(document: Any) -> Iterator[dict]:
    """The Kubernetes objects of one document: the document itself, or a List's items."""
    if not isinstance(document, dict):
        return
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(document.get("items"), list):
        for item in document["items"]:
            yield from _objects(item)
    else:
        yield document


def _images_of(obj: dict, document: int) -> Iterator[tuple[ImageUse, str]]:
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = str(metadata.get("name") or "?")
    path = POD_SPEC_PATHS.get(kind)
    specs = [_dig(obj, path)] if path else list(_pod_specs(obj.get("spec")))
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        for field_name in CONTAINER_FIELDS:
            for container in spec.get(field_name) or []:
                if isinstance(container, dict) and isinstance(container.get("image"), str) and container["image"].strip():
                    use = ImageUse(kind or "?", name, str(container.get("name") or "?"), field_name, document)
                    yield use, container["image"].strip()


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _pod_specs(node: Any, depth: int = 0) -> Iterator[dict]:
    """Anything shaped like a pod spec (a mapping with a `containers` list) in a custom resource."""
    if depth > 12:
        return
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
            return
        for value in node.values():
            yield from _pod_specs(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _pod_specs(value, depth + 1)
