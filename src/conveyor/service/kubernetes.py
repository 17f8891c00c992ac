"""Kubernetes environments under the CLI: render an admitted release's objects, apply them,
read the Rollout back (deploy/kubernetes/, docs/kubernetes.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.deploy.kubernetes.apply import RolloutStatus
from conveyor.deploy.kubernetes.render import KubeRelease, Manifest, render
from conveyor.deploy.rollout import release_name
from conveyor.service.environments import environment_spec
from conveyor.service.images import image_store, parse_ref, resolve, verify_image
from conveyor.service.project import Project
from conveyor.supply.oci.model import ImageRef


@dataclass(frozen=True)
class Applied:
    release: KubeRelease
    objects: list[dict[str, Any]]  # as the API server answered them
    status: RolloutStatus


def kube_release(project: Project, name: str, image: str) -> KubeRelease:
    """Environment `name`'s release of `image` (repository@digest or :tag), with the
    admission policy's verdict on its digest (the same check `conveyor deploy` makes)."""
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    pipeline = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline
    spec = environment_spec(project, name, pipeline.environments)
    ref = parse_ref(image)
    digest = resolve(image_store(project), ref)
    admission = None
    if pipeline.images.admission is not None:
        pinned = ImageRef(name=ref.name, digest=digest)
        admission = verify_image(project, pinned, pipeline.images)[1]
    return KubeRelease(
        project=pipeline.name or project.directory.name,
        environment=name,
        spec=spec,
        repository=ref.name,
        digest=digest,
        release_id=release_name(name, ref.name, digest),
        admission=admission,
    )


def render_release(project: Project, name: str, image: str) -> list[Manifest]:
    return render(kube_release(project, name, image))


def apply_release(project: Project, name: str, image: str) -> Applied:
    """Render (refused for an unadmitted image), apply each object by server-side apply,
    and read the Rollout's status back."""
    from conveyor.deploy.kubernetes.apply import apply_all, connect, rollout_status

    release = kube_release(project, name, image)
    manifests = render(release)
    settings = release.settings
    client = connect(settings.kubeconfig, settings.context)
    with client:
        objects = apply_all(client, manifests)
        status = rollout_status(client, settings.namespace, release.name)
    return Applied(release, objects, status)
