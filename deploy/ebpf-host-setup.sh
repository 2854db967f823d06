#!/usr/bin/env bash
# Prepare this host for keiko's bcc probes (run as root; idempotent):
#  - kernel headers where bcc looks for them: /lib/modules/$(uname -r)/{build,source}.
#    Only when they are missing: a host with its own headers keeps them. Kernels without a
#    matching headers package (e.g. custom VM kernels) compile tracepoint programs against
#    Debian's linux-headers-amd64, which is what this links.
#  - tracefs mounted on /sys/kernel/tracing.
set -euo pipefail
kver=$(uname -r)
mod=/lib/modules/$kver
if [ ! -e "$mod/build/include" ]; then
  arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$arch_dir" ] && [ -n "$common_dir" ]; then
    mkdir -p "$mod"
    ln -sfn "$arch_dir" "$mod/build"
    ln -sfn "$common_dir" "$mod/source"
    echo "ebpf: linked $mod/build -> $arch_dir, $mod/source -> $common_dir"
  else
    echo "ebpf: no kernel headers under /usr/src (apt-get install linux-headers-amd64)" >&2
  fi
fi
if [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs tracefs /sys/kernel/tracing && echo "ebpf: mounted tracefs on /sys/kernel/tracing"
fi
