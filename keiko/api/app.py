"""keiko's HTTP API: the Starlette app, assembled from the route lists of its modules.

To add an endpoint: write the handler and a ``Route`` in a module's ``ROUTES`` (or a
component's ``Context.routes``), document it in openapi.yaml, and the API test checks the
running server against that document. Every route except /healthz, /readyz and /metrics
is behind the bearer-token check when ``api.auth`` is set, components' routes included.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from keiko.api import health, spec, streams
from keiko.api.auth import BearerAuth
from keiko.api.errors import EXCEPTION_HANDLERS
from keiko.api.state import ApiState

CORE_ROUTES: list[BaseRoute] = [*health.ROUTES, *spec.ROUTES, *streams.ROUTES]


def build_app(state: ApiState, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app over ``state``, with the core routes and the components' ``extra_routes``."""
    app = Starlette(
        routes=[*CORE_ROUTES, *extra_routes],
        middleware=[Middleware(BearerAuth, state=state)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.keiko = state
    return app
