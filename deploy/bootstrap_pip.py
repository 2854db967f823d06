#!/usr/bin/env python3
"""Install pip into a virtualenv made with ``python3 -m venv --without-pip``.

Debian's python3 ships without ensurepip (it is in the python3-venv package), so a user
who cannot install packages cannot make a normal virtualenv. `make` then creates one
without pip and runs this script with the virtualenv's python: it fetches pip's wheel
from PyPI, checks its sha256 against PyPI's metadata, and installs pip from the wheel
itself (a pip wheel can run itself).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

INDEX = "https://pypi.org/pypi/pip/json"


def main() -> int:
    with urllib.request.urlopen(INDEX, timeout=60) as resp:
        meta = json.load(resp)
    wheel = next(f for f in meta["urls"] if f["packagetype"] == "bdist_wheel")
    # Mirrors of PyPI may give the file's address relative to the metadata's.
    with urllib.request.urlopen(urljoin(INDEX, wheel["url"]), timeout=300) as resp:
        data = resp.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        print(f"error: {wheel['filename']} does not match PyPI's sha256", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        path.write_bytes(data)
        cmd = [sys.executable, f"{path}/pip", "install", "-q", "--no-index", str(path)]
        return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
