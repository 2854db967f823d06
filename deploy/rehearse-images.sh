#!/usr/bin/env bash
# Build keiko's two images from the committed tree and run them as the single-node overlay
# runs them, then `keiko demo` (from the analysis image) against them: the images build,
# start under the pod's restrictions and keep an incident's data. Needs a Docker daemon,
# kubectl (renders the overlay) and, for the probes, a host that `make test` set up.
#
#   deploy/rehearse-images.sh                 # base image python:3.11.13-slim-bookworm
#   deploy/rehearse-images.sh --local-base    # no registry: a Debian bookworm base made
#                                             # with debootstrap (Debian's python3.11)
#
# Not part of `make test` (no Docker daemon on CI; the build takes minutes). What it does
# not reproduce is said as it goes: Docker releases that do not know CAP_BPF / CAP_PERFMON
# get CAP_SYS_ADMIN instead, and capabilities this host cannot grant are left out.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/keiko-rehearsal.XXXXXX)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml")
BASE=python:3.11.13-slim-bookworm
NAME=keiko-rehearsal
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker daemon (docker info fails)"
command -v kubectl >/dev/null || die "kubectl not found (it renders deploy/kubernetes)"

if [ "${1:-}" = "--local-base" ]; then
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
  say "base image from debootstrap: Debian's python3.11, not $BASE's"
  BASE=keiko-rehearsal/python:3.11-bookworm
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  ln -sf python3 "$WORK/rootfs/usr/bin/python"  # the python image's name for it
  # the host's CA bundle: a registry reached through a TLS-inspecting proxy needs its CA
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$WORK/rootfs" -c . | docker import - "$BASE" >/dev/null
fi

say "building keiko:$VERSION and keiko-agent:$VERSION from HEAD ($(git -C "$ROOT" rev-parse --short HEAD))"
mkdir "$WORK/context"
git -C "$ROOT" archive HEAD | tar -x -C "$WORK/context"
# the legacy builder reads .dockerignore at the context's root only
cp "$WORK/context/deploy/Dockerfile.dockerignore" "$WORK/context/.dockerignore"
for target in agent analysis; do
  tag=$([ $target = agent ] && echo keiko-agent || echo keiko):$VERSION
  docker build --network host -f "$WORK/context/deploy/Dockerfile" --target $target \
    --build-arg PYTHON_IMAGE="$BASE" -t "$tag" "$WORK/context" >"$WORK/build-$target.log" 2>&1 \
    || { tail -30 "$WORK/build-$target.log"; die "building $target failed ($WORK/build-$target.log)"; }
  echo "built $tag"
done

say "the single-node overlay's pod: keiko-agent:$VERSION run --config (its ConfigMap)"
kubectl kustomize "$ROOT/deploy/kubernetes/overlays/single-node" >"$WORK/single-node.yaml"
python3 - "$WORK" <<'EOF'
import sys, yaml
work = sys.argv[1]
for doc in yaml.safe_load_all(open(f"{work}/single-node.yaml")):
    if doc["kind"] == "ConfigMap" and "keiko.yaml" in doc["data"]:
        open(f"{work}/keiko.yaml", "w").write(doc["data"]["keiko.yaml"])
EOF
caps=(--cap-add BPF --cap-add PERFMON --cap-add SYS_RESOURCE --cap-add SYS_PTRACE)
if ! docker run --rm "${caps[@]}" --entrypoint true "keiko-agent:$VERSION" 2>/dev/null; then
  caps=(--cap-add SYS_ADMIN --cap-add SYS_PTRACE)
  echo "this Docker cannot grant CAP_BPF/CAP_PERFMON/CAP_SYS_RESOURCE: CAP_SYS_ADMIN instead"
fi
mkdir "$WORK/data"
docker run -d --name "$NAME" --network host --read-only --tmpfs /tmp \
  --security-opt no-new-privileges --cap-drop ALL "${caps[@]}" --user 0 \
  -v "$WORK/data:/var/lib/keiko" -v "$WORK/keiko.yaml:/etc/keiko/keiko.yaml:ro" \
  -v /sys/kernel/tracing:/sys/kernel/tracing:ro -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
  -v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro -e NODE_NAME="$(hostname)" \
  "keiko-agent:$VERSION" run --config /etc/keiko/keiko.yaml >/dev/null
for _ in $(seq 60); do
  curl -fs http://127.0.0.1:8470/readyz >/dev/null 2>&1 && break
  sleep 1
done
curl -fs http://127.0.0.1:8470/readyz >/dev/null || { docker logs "$NAME" | tail -20; die "not ready in 60 s"; }
probes_up() { curl -s http://127.0.0.1:8470/metrics | grep -c '^keiko_ebpf_probe_up{.*} 1.0' || true; }
for _ in $(seq 90); do  # bcc compiles the probes after the process is ready
  [ "$(probes_up)" -ge 6 ] && break
  sleep 1
done
echo "ready; eBPF probes up: $(probes_up) of 6"

say "keiko demo (from keiko:$VERSION, non-root) against it, with a latency fault in cart"
docker run --rm --network host --read-only --tmpfs /tmp "keiko:$VERSION" demo \
  --fault cart:latency=200ms,after=35s --duration 50 | tee "$WORK/demo.log" | tail -5
grep -q "^Incident " "$WORK/demo.log" || die "no incident in the demo's output ($WORK/demo.log)"
errors=$(docker logs "$NAME" 2>&1 | grep -c '"level": "\(error\|critical\)"' || true)
[ "$errors" = 0 ] || { docker logs "$NAME" 2>&1 | grep '"level": "error"' | tail; die "$errors errors logged"; }
say "OK: both images built, the single-node pod served the demo, an incident was opened ($WORK)"
