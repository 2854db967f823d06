"""Every module keiko's runtime packages import comes with keiko's runtime dependencies.

The development virtualenv also holds the test extras, so a runtime import of a package
that only the extras bring (httpx once did) passes every other test and crashes `keiko run`
in the container image, where only the runtime dependencies are installed. This reads the
imports of every runtime module (ast, nothing imported) and checks each third-party one is
provided by the closure of keiko-backbone's non-extra requirements.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("keiko", "collectors", "ebpf", "analytics", "alerting")
# Debian's python3-bpfcc (never a PyPI package): the agent image installs it with apt
NOT_FROM_PYPI = {"bcc"}


def imported_top_levels() -> dict[str, str]:
    """Top-level module -> one file importing it, over every runtime module."""
    found: dict[str, str] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def runtime_closure() -> set[str]:
    """keiko-backbone's runtime requirements and theirs, recursively, with the extras each
    requirement asks for (uvicorn[standard]) but not keiko's own (test)."""
    seen: set[tuple[str, str]] = set()
    todo = [("keiko-backbone", "")]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, e) for e in ("", *req.extras)]
    return {name for name, _ in seen}


def test_every_third_party_import_is_a_runtime_dependency() -> None:
    providers = importlib.metadata.packages_distributions()
    closure = runtime_closure()
    ours = set(RUNTIME_PACKAGES)
    missing = {}
    for module, where in imported_top_levels().items():
        if module in ours or module in sys.stdlib_module_names or module in NOT_FROM_PYPI:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{where} imports {module!r}, which no installed distribution provides"
        if not dists & closure:
            missing[module] = (where, sorted(dists))
    assert not missing, f"imported but not runtime dependencies (add to pyproject): {missing}"
