"""Config of the eBPF node agent (the `probes.ebpf` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keiko.store.config import Strict
from keiko.units import Duration

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ProbesConfig(BaseModel):
    """Which probes run. Probes added later (any registered name) may be listed too."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    runqlat: bool = Field(default=True, description="Run-queue latency and context switches.")
    biolatency: bool = Field(default=True, description="Block I/O latency per device.")
    syscalls: bool = Field(default=True, description="Failed syscalls by syscall and errno.")
    proc: bool = Field(default=True, description="Process exec, exit and OOM kills.")
    tcplife: bool = Field(
        default=True, description="TCP connects, accepts, connect latency, lifetimes, edges."
    )
    tcpretrans: bool = Field(default=True, description="TCP retransmissions and resets.")

    @model_validator(mode="after")
    def _extras_are_bools(self) -> ProbesConfig:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected true or false, got {value!r}")
        return self

    def enabled(self) -> dict[str, bool]:
        """Probe name -> on/off, the named fields and any extra names."""
        return {k: bool(v) for k, v in self.model_dump().items()}


class MapsConfig(Strict):
    """Sizes of the BPF maps (kernel memory is reserved for them when a probe loads)."""

    max_cgroups: int = Field(
        default=10240, gt=0, description="Entries of per-cgroup maps (histograms, counters)."
    )
    max_connections: int = Field(
        default=65536,
        gt=0,
        description="TCP connections tracked at once (connect start times, lifetimes).",
    )
    max_remote_endpoints: int = Field(
        default=16384,
        gt=0,
        description="Entries of per (cgroup, remote address) maps; beyond, new pairs are lost "
        "until the next collect empties the map.",
    )


class CardinalityConfig(Strict):
    """Bounds on exported series: beyond them, series are folded into one labelled "other"."""

    max_cgroups: int = Field(
        default=2000,
        gt=0,
        description="Distinct cgroups (containers, pods, services) per metric; later ones are "
        'folded into cgroup "other" and counted in keiko_ebpf_folded_series_total.',
    )
    max_remote_endpoints: int = Field(
        default=1000,
        gt=0,
        description='Distinct remote endpoints per metric; later ones become "other".',
    )
    idle_expiry: Duration = Field(
        default=600.0,
        gt=0,
        description="A series not seen for this long frees its slot (pods come and go).",
    )


class KubernetesConfig(Strict):
    """Pod names and namespaces from the Kubernetes API (cgroup paths hold only pod UIDs)."""

    enabled: Literal["auto"] | bool = Field(
        default="auto",
        description="auto: when running in a pod (KUBERNETES_SERVICE_HOST is set); true, false.",
    )
    api_server: str = Field(
        default="",
        description="API server URL; empty: https://$KUBERNETES_SERVICE_HOST:"
        "$KUBERNETES_SERVICE_PORT (the in-cluster address).",
    )
    token_file: Path = Field(
        default=SERVICE_ACCOUNT / "token",
        description="Service-account token (re-read on every request: tokens are rotated).",
    )
    ca_file: Path | None = Field(
        default=SERVICE_ACCOUNT / "ca.crt",
        description="CA bundle that signed the API server's certificate; null: system CAs.",
    )
    node_name: str = Field(
        default="",
        description="This node's name (list only its pods); empty: $NODE_NAME (set it from "
        "spec.nodeName in the DaemonSet), else the host name.",
    )
    refresh: Duration = Field(
        default=30.0, gt=0, description="How often the pod list is fetched again."
    )


class FallbackConfig(Strict):
    """Metrics read from cgroupfs and procfs when BPF cannot be used on this node."""

    enabled: bool = Field(
        default=True,
        description="Where BPF is unusable, collect CPU, memory and disk per cgroup and network "
        "per host interface from cgroupfs/procfs instead.",
    )


class EbpfConfig(Strict):
    """The eBPF node agent: bcc programs on kernel tracepoints, per container and pod."""

    enabled: bool = Field(default=True, description="Run the eBPF node agent.")
    interval: Duration = Field(
        default=10.0, gt=0, description="How often the probes' maps are read and written out."
    )
    probes: ProbesConfig = Field(
        default_factory=ProbesConfig,
        description="Probes to run (name: true/false); registered probes not named here run "
        "too, unknown names are refused at start. `keiko ebpf check` lists them.",
    )
    maps: MapsConfig = Field(default_factory=MapsConfig, description="BPF map sizes.")
    cardinality: CardinalityConfig = Field(
        default_factory=CardinalityConfig, description="Series bounds."
    )
    kubernetes: KubernetesConfig = Field(
        default_factory=KubernetesConfig, description="Pod metadata from the Kubernetes API."
    )
    fallback: FallbackConfig = Field(
        default_factory=FallbackConfig, description="cgroupfs/procfs metrics without BPF."
    )
