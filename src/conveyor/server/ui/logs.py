"""A job's log page: the tail first (64 KiB, whatever the log's size: a 50 MB log opens
as fast as a small one), earlier parts on demand, live lines while the job runs, and the
whole log as a plain-text download. Logs are stored masked (engine/joblog.py writes the
live file through the masker, the blob is that file): every byte shown here comes from
server/logs.py, which reads only those two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from markupsafe import Markup, escape

from conveyor.engine.joblog import LOG_SEPARATOR
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.logs import MAX_RANGE, TAIL_BYTES, log_source, read_range
from conveyor.server.ui import format as _format  # noqa: F401 (registers the filters)
from conveyor.server.ui import templates
from conveyor.server.ui.ansi import to_html

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("runs", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]
DOWNLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Window:
    """Whole log lines between two byte offsets."""

    start: int
    end: int
    size: int  # the log's size when read
    finished: bool
    data: bytes


def window(
    context: ServerContext, run_id: int, job_id: str, start: int | None, stop: int | None
) -> Window:
    """The whole lines within [start, stop) (stop None: the log's end; start None: the
    last TAIL_BYTES before stop). A line cut by either bound is left out, except a single
    line longer than the window, which is shown cut rather than not at all."""
    if stop is None or start is None:
        size = read_range(context, run_id, job_id, None, 0).size
        stop = size if stop is None else min(stop, size)
        start = max(0, stop - TAIL_BYTES) if start is None else start
    start = max(0, min(start, stop))
    probe = max(0, start - 1)  # one byte before: is `start` at a line's beginning?
    piece = read_range(context, run_id, job_id, probe, min(stop - probe, MAX_RANGE))
    data, begin = piece.data, piece.offset
    if probe < start and data:
        cut = data.find(b"\n")
        if cut >= 0:
            data, begin = data[cut + 1 :], begin + cut + 1
    at_end = piece.finished and begin + len(data) >= piece.size
    if not at_end:
        last = data.rfind(b"\n")
        if last >= 0:
            data = data[: last + 1]
    return Window(begin, begin + len(data), piece.size, piece.finished, data)


def render_lines(data: bytes) -> Markup:
    """Log records as HTML lines: the elapsed time, then the text with ANSI colours."""
    out: list[str] = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        parts = raw.split(LOG_SEPARATOR, 2)
        if len(parts) == 3:
            elapsed, stream, text = parts
            css = "ln err" if stream == "stderr" else "ln"
            out.append(
                f'<span class="{css}"><span class="t">{escape(elapsed)}</span> {to_html(text)}'
                "</span>\n"
            )
        else:  # not a record (an older log): the text alone
            out.append(f'<span class="ln">{to_html(raw)}</span>\n')
    return Markup("".join(out))  # noqa: S704 (text escaped: escape() and to_html)


def log_base(run_id: int, job_id: str) -> str:
    return f"/runs/{run_id}/jobs/{quote(job_id, safe='')}/log"


@router.get("/runs/{run_id}/jobs/{job_id}/log", response_class=HTMLResponse)
def log_page(
    request: Request,
    principal: Reader,
    context: Context,
    *,
    run_id: int,
    job_id: str,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    job = context.store.get_job(run_id, job_id)
    shown = window(context, run_id, job_id, None, end)
    base = log_base(run_id, job_id)
    return templates.TemplateResponse(
        request,
        "runs/log.html",
        {
            "principal": principal,
            "job": job,
            "window": shown,
            "lines": render_lines(shown.data),
            "base": base,
            "earlier": f"{base}?end={shown.start}" if shown.start > 0 else None,
            "topic": f"log:{run_id}:{job_id}",
            "live": end is None and not shown.finished,
        },
    )


@router.get("/runs/{run_id}/jobs/{job_id}/log/range")
def log_range(
    _principal: Reader,
    context: Context,
    run_id: int,
    job_id: str,
    offset: Annotated[int, Query(ge=0)],
    length: Annotated[int, Query(ge=0, le=MAX_RANGE)] = TAIL_BYTES,
) -> JSONResponse:
    """Whole lines within [offset, offset + length) as rendered HTML, for log.js."""
    shown = window(context, run_id, job_id, offset, offset + length)
    return JSONResponse(
        {
            "start": shown.start,
            "end": shown.end,
            "size": shown.size,
            "finished": shown.finished,
            "html": str(render_lines(shown.data)),
        }
    )


@router.get("/runs/{run_id}/jobs/{job_id}/log.txt")
def log_download(
    _principal: Reader, context: Context, run_id: int, job_id: str
) -> StreamingResponse:
    """The whole log as the job printed it (masked), one line each, without the elapsed
    and stream columns; streamed, never read whole."""
    path, _finished = log_source(context, run_id, job_id)
    name = f"run-{run_id}-{job_id}.log".replace('"', "_").replace("/", "_")
    return StreamingResponse(
        _plain_text(path),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{quote(name, safe="")}"'},
    )


def _plain_text(path: Path | None) -> Iterator[bytes]:
    if path is None:
        return
    with path.open("rb") as handle:
        batch: list[bytes] = []
        size = 0
        for record in handle:
            parts = record.split(LOG_SEPARATOR.encode(), 2)
            line = parts[2] if len(parts) == 3 else record
            batch.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
            if size >= DOWNLOAD_CHUNK:
                yield b"".join(batch)
                batch, size = [], 0
        if batch:
            yield b"".join(batch)
