"""The images pages: `/images` (the store's images) and `/images/{ref}` (digest, tags,
SBOM packages, scan result, attestations and the admission verdict)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import templates
from conveyor.service.image_details import image_detail
from conveyor.service.images import image_store, list_images

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("images", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/images", response_class=HTMLResponse)
def images_page(request: Request, principal: Reader, context: Context) -> HTMLResponse:
    images = list_images(image_store(context.project))
    return templates.TemplateResponse(
        request, "images/list.html", {"principal": principal, "images": images}
    )


@router.get("/images/{reference:path}", response_class=HTMLResponse)
def image_page(
    request: Request, principal: Reader, context: Context, reference: str
) -> HTMLResponse:
    detail = image_detail(context.project, reference)
    return templates.TemplateResponse(
        request, "images/image.html", {"principal": principal, "image": detail}
    )
