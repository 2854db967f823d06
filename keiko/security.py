"""TLS, mutual TLS and bearer tokens: one config model and one way to apply it.

The OTLP receivers and the HTTP API share these, so a certificate or token problem is
reported and checked the same way everywhere.
"""

from __future__ import annotations

import hmac
import os
import ssl
from pathlib import Path

from pydantic import Field, model_validator

from keiko.errors import Unauthenticated
from keiko.store.config import Strict


class TLSConfig(Strict):
    """Server TLS. Set ``client_ca_file`` to require client certificates (mutual TLS)."""

    cert_file: Path = Field(description="PEM certificate chain of this server.")
    key_file: Path = Field(description="PEM private key of this server.")
    client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, clients must present a certificate it signed.",
    )

    @model_validator(mode="after")
    def _files_exist(self) -> TLSConfig:
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file {str(path)!r} does not exist or is not a file")
        return self

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext for asyncio/uvicorn servers."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca_file:
            ctx.load_verify_locations(str(self.client_ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def grpc_credentials(self) -> object:
        """grpc.ServerCredentials for this config."""
        import grpc

        key = Path(self.key_file).read_bytes()
        cert = Path(self.cert_file).read_bytes()
        ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )


class AuthConfig(Strict):
    """Bearer-token authentication: requests must carry ``Authorization: Bearer <token>``."""

    bearer_tokens: list[str] = Field(
        default_factory=list, description="Accepted tokens (prefer bearer_tokens_env or _file)."
    )
    bearer_tokens_env: str | None = Field(
        default=None, description="Name of an environment variable holding comma-separated tokens."
    )
    bearer_tokens_file: Path | None = Field(
        default=None, description="File with one accepted token per line (e.g. a mounted Secret)."
    )

    @model_validator(mode="after")
    def _sources_exist(self) -> AuthConfig:
        if self.bearer_tokens_env and self.bearer_tokens_env not in os.environ:
            raise ValueError(
                f"bearer_tokens_env: environment variable {self.bearer_tokens_env!r} is not set"
            )
        if self.bearer_tokens_file and not Path(self.bearer_tokens_file).is_file():
            raise ValueError(f"bearer_tokens_file: {str(self.bearer_tokens_file)!r} is not a file")
        return self

    def tokens(self) -> list[bytes]:
        """Every accepted token, from all three sources."""
        found = list(self.bearer_tokens)
        if self.bearer_tokens_env:
            found += os.environ.get(self.bearer_tokens_env, "").split(",")
        if self.bearer_tokens_file:
            found += Path(self.bearer_tokens_file).read_text().splitlines()
        return [t.strip().encode() for t in found if t.strip()]


class TokenCheck:
    """Checks ``Authorization`` header values against the configured tokens."""

    def __init__(self, auth: AuthConfig | None) -> None:
        self._tokens = auth.tokens() if auth else []

    @property
    def enabled(self) -> bool:
        """True when requests must carry a token."""
        return bool(self._tokens)

    def check(self, authorization: str | bytes | None) -> None:
        """Raise Unauthenticated unless ``authorization`` is ``Bearer <accepted token>``."""
        if not self._tokens:
            return
        if isinstance(authorization, str):
            authorization = authorization.encode()
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        # compare_digest against every token so the time taken does not reveal which matched
        ok = False
        for accepted in self._tokens:
            ok |= hmac.compare_digest(token.strip(), accepted)
        if not ok:
            raise Unauthenticated("invalid bearer token")
