"""`conveyor k8s render|apply ENV IMAGE`: a Kubernetes environment's objects (Argo
Rollouts' Rollout and AnalysisTemplates, Services, a Gateway API HTTPRoute), rendered for
an admitted image, and applied by server-side apply (docs/kubernetes.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

k8s_app = typer.Typer(
    help="Kubernetes environments: Argo Rollouts objects, rendered and applied.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor k8s render production shop@sha256:3738ca...", "YAML for `kubectl apply -f -`"),
        ("conveyor k8s render staging shop:latest -o json", "the same as a v1 List"),
        ("conveyor k8s apply production shop@sha256:3738ca...", "server-side apply, then status"),
    ),
)
EnvArgument = typer.Argument(help="The environment's name in conveyor.yml, e.g. production.")
ImageArgument = typer.Argument(help="repository@sha256:... or repository:tag in the image store.")


def register(app: typer.Typer) -> None:
    app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def render(
    environment: Annotated[str, EnvArgument],
    image: Annotated[str, ImageArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The objects of ENV's release of IMAGE; refused for an image the admission policy
    does not admit. Nothing is sent anywhere."""
    from conveyor.service.kubernetes import render_release
    from conveyor.service.project import Project

    manifests = render_release(Project.locate(spec), environment, image)
    if output is OutputFormat.JSON:
        emit_json({"apiVersion": "v1", "kind": "List", "items": manifests})
        return
    _write_yaml(manifests)


@k8s_app.command("apply")
def apply(
    environment: Annotated[str, EnvArgument],
    image: Annotated[str, ImageArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Apply the objects to the cluster of ENV's kubeconfig and context (server-side
    apply, field manager `conveyor`), then show the Rollout's status."""
    from conveyor.service.kubernetes import apply_release
    from conveyor.service.project import Project

    applied = apply_release(Project.locate(spec), environment, image)
    status = applied.status
    if output is OutputFormat.JSON:
        emit_json(
            {
                "release": applied.release.release_id,
                "applied": [_name(o) for o in applied.objects],
                "rollout": status.as_json(),
            }
        )
        return
    for item in applied.objects:
        console.print(f"applied {_name(item)}")
    step = "-" if status.current_step_index is None else status.current_step_index
    weight = "-" if status.canary_weight is None else f"{status.canary_weight}%"
    console.print(
        f"Rollout/{status.name}: {status.phase or 'not seen by Argo Rollouts yet'}, "
        f"step {step}/{status.steps}, canary weight {weight}"
        + (f" ({status.message})" if status.message else "")
    )


def _name(item: dict[str, Any]) -> str:
    meta = item.get("metadata", {})
    return f"{item.get('kind', '?')}/{meta.get('namespace', '')}/{meta.get('name', '?')}"


def _write_yaml(manifests: list[dict[str, Any]]) -> None:
    import yaml

    sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False))
