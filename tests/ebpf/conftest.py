"""Shared by the eBPF tests: the ``requires_bpf`` mark skips, with the exact reason, where
the machine cannot load bcc programs (not root, bcc not importable, no tracefs, no headers).

Use it as ``@pytest.mark.requires_bpf`` (or ``pytestmark = pytest.mark.requires_bpf``), or
ask for the ``bpf`` fixture. As root under `make test` (which installs bcc and the kernel
headers and mounts tracefs) these tests run; the check is ebpf.diagnose.diagnose().
"""

from __future__ import annotations

import pytest

from ebpf.diagnose import bpf_unusable_reason

BPF_UNUSABLE = bpf_unusable_reason()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_bpf: needs root + bcc + tracefs + kernel headers (skips otherwise)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if BPF_UNUSABLE is None:
        return
    skip = pytest.mark.skip(reason=f"BPF unusable: {BPF_UNUSABLE}")
    for item in items:
        if item.get_closest_marker("requires_bpf"):
            item.add_marker(skip)


@pytest.fixture
def bpf() -> None:
    """Skip the test with the reason when BPF programs cannot be loaded here."""
    if BPF_UNUSABLE is not None:
        pytest.skip(f"BPF unusable: {BPF_UNUSABLE}")
