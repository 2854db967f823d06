"""A throwaway network namespace joined to the root namespace by a veth pair.

Only the pair's own /30 is configured (10.203.N.1 here, 10.203.N.2 inside); deleting the
namespace at the end deletes its veth end and with it the pair. nftables rules go into a
table inside the namespace, so nothing outside it changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


class NetnsUnavailable(Exception):
    """`ip netns` (or nft) cannot be used here; the message says why."""


@dataclass(frozen=True)
class Netns:
    name: str
    host_addr: str  # the root namespace's end
    addr: str  # the namespace's end

    def argv(self, argv: Sequence[str]) -> list[str]:
        """argv to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str]) -> None:
        _run(self.argv(argv))

    def drop_input(self, port: int, tenths: int) -> None:
        """Drop ``tenths``/10 of the TCP segments arriving for ``port`` (receiving side:
        the sender then retransmits; a drop on output would only make it retry)."""
        nft = ["nft"]
        self.run([*nft, "add", "table", "inet", "t"])
        self.run([*nft, "add chain inet t inp { type filter hook input priority 0 ; }"])
        rule = f"add rule inet t inp tcp dport {port} numgen random mod 10 < {tenths} drop"
        self.run([*nft, rule])


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise NetnsUnavailable(f"{' '.join(argv)}: {done.stderr.strip()}")


@contextmanager
def veth_netns() -> Iterator[Netns]:
    """A namespace ``keiko-t-<pid>`` with a veth to this one; removed even on failure."""
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise NetnsUnavailable(f"{tool} is not installed")
    pid = os.getpid()
    name, host_if, ns_if = f"keiko-t-{pid}", f"kt{pid}h", f"kt{pid}n"
    subnet = f"10.203.{pid % 250}"
    ns = Netns(name, f"{subnet}.1", f"{subnet}.2")
    _run(["ip", "netns", "add", name])
    try:
        _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if])
        _run(["ip", "link", "set", ns_if, "netns", name])
        _run(["ip", "addr", "add", f"{ns.host_addr}/30", "dev", host_if])
        _run(["ip", "link", "set", host_if, "up"])
        ns.run(["ip", "addr", "add", f"{ns.addr}/30", "dev", ns_if])
        ns.run(["ip", "link", "set", ns_if, "up"])
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
