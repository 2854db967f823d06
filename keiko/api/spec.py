"""The OpenAPI document that describes this API (keiko/api/openapi.yaml), served as is."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@cache
def spec_text() -> str:
    """openapi.yaml as shipped in the package."""
    return files("keiko.api").joinpath("openapi.yaml").read_text()


def load_spec() -> dict[str, Any]:
    """openapi.yaml parsed."""
    doc: dict[str, Any] = yaml.safe_load(spec_text())
    return doc


async def openapi(request: Request) -> Response:
    """The API's OpenAPI 3.1 document."""
    return Response(spec_text(), media_type="application/yaml")


ROUTES = [Route("/api/v1/openapi.yaml", openapi, methods=["GET"])]
