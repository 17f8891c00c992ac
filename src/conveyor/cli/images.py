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
    from conveyor.vcs.git import ignored_by_git

    _ignore_in_state_dir(directory)
    pair = generate_keypair(directory, name)
    private_ignored = ignored_by_git(pair.private_path)
    public_ignored = ignored_by_git(pair.public_path)
    if output is OutputFormat.JSON:
        emit_json(
            {
                "key_id": pair.key_id,
                "private_key": str(pair.private_path.resolve()),
                "public_key": str(pair.public_path.resolve()),
                "private_key_ignored_by_git": private_ignored,
                "public_key_ignored_by_git": public_ignored,
            }
        )
        return
    console.print(f"key id {pair.key_id}")
    private = escape(str(pair.private_path))
    console.print(f"  private: {private}  [dim]({_private_advice(private_ignored)})[/]")
    advice = escape(_public_advice(pair.public_path, public_ignored))
    console.print(f"  public:  {escape(str(pair.public_path))}  [dim]({advice})[/]")


def _ignore_in_state_dir(directory: Path) -> None:
    """Keys written into the state folder before any run: its .gitignore first, so the
    private key is never committed by accident."""
    from conveyor.service.project import Project

    project = Project.locate()
    if directory.resolve().is_relative_to(project.state_dir.resolve()):
        project.ensure_state_dir()


def _private_advice(ignored: bool | None) -> str:
    if ignored is False:
        return "[bold red]git does not ignore it[/]: add it to .gitignore, never commit it"
    return "git-ignored; keep it secret" if ignored else "keep it out of git"


def _public_advice(public: Path, ignored: bool | None) -> str:
    """What to do with the public key: commit it where it is, or (in the git-ignored
    state folder) a copy of it, with the exact commands."""
    trust = "and list it in images.admission.trusted_keys"
    if ignored is None:
        return f"commit it with the project {trust}"
    if not ignored:
        return f"commit it: `git add {public}` {trust}"
    copy = Path("keys") / public.name
    return (
        f"git ignores {public.parent}/: commit a copy, `mkdir -p keys && cp {public} "
        f"{copy} && git add {copy}`, and list {copy} in images.admission.trusted_keys"
    )


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
