"""Fixtures of the deployment tests (helpers are in kube_objects.py)."""

from __future__ import annotations

import pytest
from kube_objects import KUBE, OVERLAYS, Obj, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """Overlay name -> its objects, rendered offline by ``kubectl kustomize`` once."""
    return {name: render(KUBE / "overlays" / name) for name in OVERLAYS}
