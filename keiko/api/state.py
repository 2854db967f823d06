"""What the API's handlers share: the store, telemetry, auth and the process's lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from keiko.config import ApiConfig
from keiko.security import TokenCheck
from keiko.store.base import Store
from keiko.telemetry import Telemetry


@dataclass
class ApiState:
    """Reached from handlers as ``request.app.state.keiko`` (see :func:`state_of`)."""

    store: Store
    telemetry: Telemetry
    config: ApiConfig
    auth: TokenCheck = field(init=False)
    components_started: bool = False  # set by the process once every component runs
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # ends live streams
    heartbeat: float = 15.0  # seconds between SSE heartbeat comments

    def __post_init__(self) -> None:
        self.auth = TokenCheck(self.config.auth)

    def reconfigure(self, config: ApiConfig) -> None:
        """Take the parts of a reloaded `api:` section that apply without a restart."""
        self.auth = TokenCheck(config.auth)
        self.config = config


def state_of(request: Request) -> ApiState:
    """The ApiState of the app serving ``request``."""
    state: ApiState = request.app.state.keiko
    return state
