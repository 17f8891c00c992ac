"""`conveyor server`: the control plane (docs/server.md): REST API, web UI, forge webhooks
and the run queue, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.output import console, examples
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.server.context import ServerContext

HostOption = typer.Option("--host", help="The address to listen on.")
PortOption = typer.Option("--port", help="The port to listen on.")
WorkersOption = typer.Option(
    "--workers", min=1, help="Queued runs that run at once, each in a process of its own."
)
PublicUrlOption = typer.Option(
    "--public-url",
    help="The URL people and forges reach the server at (links in commit statuses and "
    "login links); default: http://HOST:PORT.",
)
NoWatchOption = typer.Option(
    "--no-watch",
    help="Do not sample the environments continuously (docs/monitoring.md#continuous-watch).",
)
PrometheusSdOption = typer.Option(
    "--prometheus-sd",
    help="Write Prometheus file-based service discovery of the metrics endpoints here.",
)
NoAdoptOption = typer.Option(
    "--no-adopt",
    help="Do not carry on deploys whose controller died (docs/scaling.md#several-control-planes).",
)
AdminOption = typer.Option(
    "--admin",
    help="The admin whose one-time login link is printed; made an admin user when the "
    "users file has none yet (default: admin).",
)


def register(app: typer.Typer) -> None:
    app.command(
        "server",
        epilog=examples(
            ("conveyor server", "serve this project on http://127.0.0.1:8080"),
            (
                "conveyor server --host 0.0.0.0 --public-url https://ci.example.org",
                "behind a proxy",
            ),
        ),
    )(server)


def server(
    host: Annotated[str, HostOption] = "127.0.0.1",
    port: Annotated[int, PortOption] = 8080,
    public_url: Annotated[str | None, PublicUrlOption] = None,
    workers: Annotated[int, WorkersOption] = 2,
    spec: Annotated[Path | None, SpecOption] = None,
    admin: Annotated[str | None, AdminOption] = None,
    no_watch: Annotated[bool, NoWatchOption] = False,
    prometheus_sd: Annotated[Path | None, PrometheusSdOption] = None,
    no_adopt: Annotated[bool, NoAdoptOption] = False,
) -> None:
    """Serve the REST API, the web UI and the forge webhooks, and run queued pipelines."""
    import uvicorn

    from conveyor.server.app import create_app
    from conveyor.server.context import ServerContext
    from conveyor.server.controllers import configure_adoption
    from conveyor.server.queue import configure_workers, resume
    from conveyor.server.watch import WatchSettings, configure_watch
    from conveyor.service.project import Project
    from conveyor.store.queue import pending

    project = Project.locate(spec)
    if not project.spec_path.is_file():
        raise ConveyorError(
            f"no conveyor.yml at {project.spec_path}",
            hint="run it in the project's folder, or name the file with -f",
        )
    url = public_url or f"http://{host}:{port}"
    context = ServerContext.open(project, url)
    configure_workers(context, workers)
    sd = prometheus_sd.resolve() if prometheus_sd else None
    configure_watch(context, WatchSettings(enabled=not no_watch, prometheus_sd=sd))
    configure_adoption(context, enabled=not no_adopt)
    try:
        console.print(f"Conveyor serves {project.directory.name} at {url}", highlight=False)
        _print_login_link(context, admin)
        resume(context)  # what a killed server left claimed is queued again
        waiting = len(pending(context.store.engine))
        console.print(
            f"{waiting} queued run{'s' if waiting != 1 else ''} resumed; {workers} at a time",
            highlight=False,
        )
        uvicorn.run(create_app(context), host=host, port=port, log_level="warning")
    finally:
        context.close()


def _print_login_link(context: ServerContext, admin: str | None) -> None:
    """The first admin's one-time login link (valid 1 h), made at every start."""
    from conveyor.server.login import first_admin_link

    user, link = first_admin_link(context, admin)
    console.print(f"Log in as {user}: {link}", highlight=False, soft_wrap=True)
