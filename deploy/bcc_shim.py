#!/usr/bin/env python3
"""Make Debian's ``bcc`` module (package python3-bpfcc) importable from keiko's virtualenv.

Only ``bcc`` itself: a directory holding one symlink to it is added to the virtualenv's
path with a .pth file, not all of /usr/lib/python3/dist-packages (whose other packages
would shadow the virtualenv's). The PyPI package named ``bcc`` is unrelated: never
install it. Run with the virtualenv's python; does nothing where bcc is not installed.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc")


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    shim = site / "_keiko_debian_bcc"
    pth = site / "keiko-debian-bcc.pth"
    if not DEBIAN_BCC.is_dir():
        pth.unlink(missing_ok=True)
        print(
            "bcc shim: Debian's python3-bpfcc is not installed; eBPF probes will be "
            "unavailable (keiko uses its cgroupfs/procfs fallback)",
            file=sys.stderr,
        )
        return 0
    shim.mkdir(exist_ok=True)
    link = shim / "bcc"
    if not link.is_symlink() or link.resolve() != DEBIAN_BCC.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(DEBIAN_BCC)
    pth.write_text(f"{shim}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
