"""Secrets in config (apprise URLs, tokens): inline, from a file, or from an environment
variable; resolved when used, never logged, never in events or API output.

A field that takes a secret accepts a plain string (inline, fine for local tests) or
``{file: PATH}`` / ``{env: NAME}``. ``str()`` and ``repr()`` of a :class:`Secret` are
redacted; :func:`redact` scrubs resolved values out of any text before it is logged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import model_validator

from keiko.store.config import Strict

REDACTED = "<secret>"
_known: set[str] = set()  # resolved values, scrubbed from text by redact()


class Secret(Strict):
    """A secret value given inline, in a file (``file``) or in a variable (``env``)."""

    value: str | None = None
    file: Path | None = None
    env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one(self) -> Secret:
        given = [k for k in ("value", "file", "env") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give the secret inline (a string), or as {file: PATH} or {env: NAME}")
        return self

    def resolve(self) -> str:
        """The secret's value; KeyError/OSError name the variable or file that is missing."""
        if self.value is not None:
            found = self.value
        elif self.file is not None:
            found = self.file.read_text().strip()
        else:
            assert self.env is not None
            if self.env not in os.environ:
                raise KeyError(f"environment variable {self.env} is not set")
            found = os.environ[self.env]
        if found:
            _known.add(found)
        return found

    def where(self) -> str:
        """Where the secret comes from, for logs and docs (never the value)."""
        if self.file is not None:
            return f"file {self.file}"
        if self.env is not None:
            return f"${self.env}"
        return "inline"

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.where()})"


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every resolved secret and any ``user:password@`` in URLs replaced."""
    for value in sorted(_known, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
