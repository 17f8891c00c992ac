"""`conveyor keys`, `conveyor image`: signing keys and the images in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption
from conveyor.errors import ExitCode

keys_app = typer.Typer(
    help="Signing keys (ed25519) for provenance, SBOM and scan attestations.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor keys generate", "write .conveyor/keys/conveyor.key and .pub"),
        ("conveyor keys generate release --dir keys", "a key named release in ./keys"),
        ("conveyor keys generate -o json", "the key id and paths, for a script"),
    ),
)
image_app = typer.Typer(
    help="Images in the project's store: list, inspect, verify.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor image ls", "the images, newest first"),
        ("conveyor image inspect shop:1a2b3c4d", "annotations, config, layers, evidence"),
        ("conveyor image verify sha256:3738ca", "the admission policy; exit 1 if refused"),
        ("conveyor image verify shop:v1 -o json", "each check, for a script"),
        ("conveyor image base", "build (or show) Conveyor's Python base image"),
    ),
)
ImageArgument = typer.Argument(
    help="shop@sha256:<digest>, shop:<tag>, or a unique digest or start of one (sha256:1a2b3c)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(image_app, name="image")


@keys_app.command("generate")
def generate(
    name: Annotated[str, typer.Argument(help="The key's name.")] = "conveyor",
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write NAME.key (0600) and NAME.pub.")
    ] = Path(".conveyor/keys"),
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Generate an ed25519 key pair. Pin the .pub in images.admission.trusted_keys."""
    from conveyor.supply.keys import generate_keypair

    pair = generate_keypair(directory, name)
    if output is OutputFormat.JSON:
        emit_json(
            {
                "key_id": pair.key_id,
                "private_key": str(pair.private_path.resolve()),
                "public_key": str(pair.public_path.resolve()),
            }
        )
        return
    console.print(f"key id {pair.key_id}")
    console.print(f"  private: {pair.private_path}  [dim](keep it out of git)[/]")
    console.print(f"  public:  {pair.public_path}  [dim](commit it; trust it in conveyor.yml)[/]")


@image_app.command("ls")
def image_ls(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """List the images in the store, newest first."""
    from conveyor.service.images import image_store, list_images
    from conveyor.service.project import Project

    images = list_images(image_store(Project.locate(spec)))
    if output is OutputFormat.JSON:
        emit_json(images)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("image", "tags", "revision", "created", "size"):
        table.add_column(column)
    for image in images:
        table.add_row(
            escape(f"{image.repository}@{image.digest[:19]}"),
            escape(", ".join(image.tags)),
            image.revision[:12],
            image.created,
            f"{image.size / 1e6:.1f} MB",
        )
    console.print(table)


@image_app.command("base")
def image_base(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Build (or show, when cached) Conveyor's Python base image: Python from Debian 12's
    own packages, the default base of `build-image`. Needs apt's lists (apt-get update)."""
    from conveyor.service.images import python_base
    from conveyor.service.project import Project
    from conveyor.supply.oci.debian_base import PYTHON_VERSION

    built = python_base(Project.locate(spec))
    if output is OutputFormat.JSON:
        emit_json(
            {
                "image": built.reference,
                "python": PYTHON_VERSION,
                "cached": built.cached,
                "packages": list(built.packages),
            }
        )
        return
    how = "from the cache" if built.cached else "built"
    console.print(f"{escape(built.reference)}  [dim]({how})[/]")
    console.print(f"  Python {PYTHON_VERSION} on Debian 12, {len(built.packages)} packages:")
    console.print("  " + escape(" ".join(built.packages)), soft_wrap=True)


@image_app.command("inspect")
def image_inspect(
    image: Annotated[str, ImageArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.JSON,
) -> None:
    """Print an image's manifest annotations, config, layers and attached evidence (JSON,
    whatever -o says: accepted so that scripts may pass -o json to every command)."""
    del output
    from conveyor.service.images import find_image, image_store, inspect_image
    from conveyor.service.project import Project

    store = image_store(Project.locate(spec))
    emit_json(inspect_image(store, find_image(store, image)))


@image_app.command("verify")
def image_verify(
    image: Annotated[str, ImageArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> int:
    """Check an image against the admission policy: signatures, provenance, SBOM, scan."""
    from conveyor.service.images import find_image, image_store, verify_image
    from conveyor.service.project import Project

    project = Project.locate(spec)
    digest, decision = verify_image(project, find_image(image_store(project), image))
    if output is OutputFormat.JSON:
        emit_json({"digest": digest, "admitted": decision.admitted, "checks": decision.checks})
    else:
        for check in decision.checks:
            mark = "[green]✓[/]" if check.passed else "[bold red]✗[/]"
            console.print(f"{mark} {check.name.value}: {escape(check.detail)}")
        verdict = "[green]admitted[/]" if decision.admitted else "[bold red]refused[/]"
        console.print(f"{escape(digest)}: {verdict}")
    if not decision.admitted:
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))  # every failed check is listed above
    return int(ExitCode.OK)
