"""The command action: run an allowlisted program, argv from config as a list (no shell),
the request as JSON on stdin. Exit 0 is done; anything else is permanent (a command that
may have half-run is not re-run by the outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from typing import Any

from alerting.delivery import Permanent
from alerting.remediation.actions import RemediationRequest, payload
from alerting.remediation.config import CommandAction
from alerting.secrets import redact

STDERR_TAIL = 500  # characters of stderr kept in the failure reason
DEFAULT_PATH = "/usr/bin:/bin"


class CommandExecutor:
    """Runs ``argv`` (config only) with the alerts on stdin."""

    def __init__(self, action: CommandAction) -> None:
        self.action = action

    def plan(self, request: RemediationRequest) -> dict[str, Any]:
        """The argv, the stdin and the environment's variable names (values may be secret)."""
        return {
            "argv": list(self.action.argv),
            "shell": False,
            "stdin": f"application/json: request {request.request_id} with "
            f"{len(request.alerts)} alerts",
            "env": sorted({"PATH", *self.action.env}),
            "timeout": self.action.timeout,
        }

    async def execute(self, request: RemediationRequest, call: dict[str, Any]) -> dict[str, Any]:
        """Run the program once in a thread; Permanent on a non-zero exit or a timeout."""
        stdin = json.dumps(payload(request)).encode()
        try:
            env = {"PATH": DEFAULT_PATH, **{k: v.resolve() for k, v in self.action.env.items()}}
        except (KeyError, OSError) as e:
            raise Permanent(f"command {self.action.name}: env: {redact(str(e))}") from None
        done = await asyncio.to_thread(self._run, stdin, env)
        if done.returncode != 0:
            tail = redact(done.stderr.decode(errors="replace")[-STDERR_TAIL:]).strip()
            raise Permanent(f"exit code {done.returncode}; stderr: {tail}")
        return {**call, "exit_code": 0}

    def _run(self, stdin: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
        try:
            process = subprocess.Popen(
                list(self.action.argv),  # a list and shell=False: nothing is parsed by a shell
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                shell=False,
                env=env,
                close_fds=True,
                start_new_session=True,  # its own process group: a timeout kills children too
            )
        except OSError as e:
            raise Permanent(f"cannot run {self.action.argv[0]}: {e}") from None
        try:
            out, err = process.communicate(stdin, timeout=self.action.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise Permanent(f"killed after the timeout of {self.action.timeout:g}s") from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    async def close(self) -> None:
        """Nothing to release."""
