"""Bearer tokens, TLS and mutual TLS on keiko's HTTP API."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from api_harness import run, serving
from fixtures.certs import Certs, make_certs
from fixtures.keiko import KeikoFactory

PROTECTED = [
    "/api/v1/streams",
    "/api/v1/store/stats",
    "/api/v1/streams/events/records",
    "/api/v1/openapi.yaml",
]


def statuses(
    tmp_path: Path, overrides: dict[str, object], requests: list[tuple[str, dict[str, str]]]
) -> list[int]:
    async def scenario() -> list[int]:
        async with (
            serving(tmp_path, overrides) as keiko,
            httpx.AsyncClient(base_url=keiko.api_url) as client,
        ):
            return [
                (await client.get(path, headers=headers)).status_code for path, headers in requests
            ]

    return run(scenario())


def test_bearer_token_guards_the_api_but_not_the_probes(tmp_path: Path) -> None:
    good, bad = {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer wrong"}

    async def scenario() -> None:
        overrides = {"api": {"auth": {"bearer_tokens": ["s3cret"]}}}
        async with (
            serving(tmp_path, overrides) as keiko,
            httpx.AsyncClient(base_url=keiko.api_url) as client,
        ):
            for path in PROTECTED:
                missing = await client.get(path)
                assert missing.status_code == 401, path
                assert missing.headers["www-authenticate"].startswith("Bearer")
                assert missing.json()["error"] == "unauthenticated"
                assert (await client.get(path, headers=bad)).status_code == 401
                assert (
                    await client.get(path, headers={"Authorization": "Basic czNjcmV0"})
                ).status_code == 401
                assert (await client.get(path, headers=good)).status_code == 200, path
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await client.get(path)).status_code == 200, path
            # unknown paths are refused before they are looked up: nothing to probe
            assert (await client.get("/api/v1/nothing")).status_code == 401

    run(scenario())


def test_metrics_auth_protects_metrics_too(tmp_path: Path) -> None:
    overrides = {"api": {"auth": {"bearer_tokens": ["t"]}, "metrics_auth": True}}
    got = statuses(
        tmp_path,
        overrides,
        [("/metrics", {}), ("/metrics", {"Authorization": "Bearer t"}), ("/healthz", {})],
    )
    assert got == [401, 200, 200]


def test_tokens_from_an_environment_variable_and_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEIKO_TEST_API_TOKENS", "env-one, env-two")
    token_file = tmp_path / "tokens"
    token_file.write_text("file-token\n\n")
    overrides = {
        "api": {
            "auth": {
                "bearer_tokens_env": "KEIKO_TEST_API_TOKENS",
                "bearer_tokens_file": str(token_file),
            }
        }
    }
    requests = [
        ("/api/v1/streams", {"Authorization": f"Bearer {t}"})
        for t in ("env-one", "env-two", "file-token", "env-one, env-two", "other")
    ]
    assert statuses(tmp_path, overrides, requests) == [200, 200, 200, 401, 401]


# -- TLS, end to end through `keiko run` ---------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def client_context(certs: Certs, cert: str | None = "client") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert:
        context.load_cert_chain(
            str(getattr(certs, f"{cert}_cert")), str(getattr(certs, f"{cert}_key"))
        )
    return context


def test_https_api(keiko_process: KeikoFactory, certs: Certs) -> None:
    tls = {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    kp = keiko_process({"api": {"tls": tls}}, verify=client_context(certs, None))
    assert kp.api_url.startswith("https://")
    assert f"listening: api                    {kp.api_url}" in kp.log_text()
    with kp.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
        httpx.get(kp.api_url + "/healthz", verify=ssl.create_default_context())
    with pytest.raises(httpx.TransportError):  # no plain HTTP on the TLS port
        httpx.get(kp.api_url.replace("https", "http") + "/healthz")
    assert kp.stop() == 0


def test_mutual_tls_api_requires_a_client_cert_from_the_ca(
    keiko_process: KeikoFactory, certs: Certs
) -> None:
    tls = {
        "cert_file": str(certs.server_cert),
        "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca),
    }
    kp = keiko_process({"api": {"tls": tls}}, verify=client_context(certs))
    with kp.client() as client:
        assert client.get("/readyz").json() == {"ready": True}
        assert client.get("/api/v1/streams").status_code == 200
    for context in (client_context(certs, None), client_context(certs, "other_client")):
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(kp.api_url + "/healthz", verify=context)
    assert kp.stop() == 0
