"""Nodes: what keiko's eBPF agent sees in the kernel, per node, namespace and pod."""

from __future__ import annotations

from dashboards.panels.promql import increase, quantile, rate
from dashboards.spec import Board, Panel, Query, Row, Variable

NODE = 'node=~"$node"'
SEL = 'node=~"$node", namespace=~"$namespace"'
WHO = "namespace, pod"

VARIABLES = (
    Variable(
        "node",
        "Node",
        "label_values(keiko_ebpf_probe_up, node)",
        "The `node` label of keiko_ebpf_probe_up: keiko's eBPF agent runs once per node (a "
        "DaemonSet); deploy/'s ServiceMonitor sets `node` from the pod's node name "
        "(__meta_kubernetes_pod_node_name); without the Prometheus Operator add the same "
        "relabeling (or a static `node` label) to the scrape config.",
    ),
    Variable(
        "namespace",
        "Namespace",
        'label_values(keiko_ebpf_sched_switches_total{node=~"$node"}, namespace)',
        "The `namespace` label of keiko_ebpf_sched_switches_total: the Kubernetes namespace of "
        "the pod whose cgroup the kernel event belongs to (empty for host processes).",
    ),
)

SCHEDULING = Row(
    "Scheduling",
    (
        Panel(
            "stat",
            "eBPF probes loaded",
            "keiko_ebpf_probe_up: 1 per probe loaded and collecting on the node.",
            (Query(f"keiko_ebpf_probe_up{{{NODE}}}", "{{node}} {{probe}}"),),
            width=6,
        ),
        Panel(
            "timeseries",
            "Run-queue delay p99 by pod",
            "Time runnable tasks waited for a CPU (keiko_ebpf_runq_latency_seconds, the "
            "runqlat probe): CPU saturation or throttling shows here before latency does.",
            (
                Query(
                    quantile(0.99, "keiko_ebpf_runq_latency_seconds", SEL, WHO),
                    "{{namespace}}/{{pod}}",
                ),
            ),
            unit="s",
            width=9,
        ),
        Panel(
            "timeseries",
            "Context switches by pod",
            "keiko_ebpf_sched_switches_total: switches away from the pod's tasks per second.",
            (Query(rate("keiko_ebpf_sched_switches_total", SEL, WHO), "{{namespace}}/{{pod}}"),),
            unit="ops",
            width=9,
        ),
    ),
)

TCP = Row(
    "TCP",
    (
        Panel(
            "timeseries",
            "TCP connects and accepts",
            "keiko_ebpf_tcp_connects_total (outgoing) and keiko_ebpf_tcp_accepts_total "
            "(incoming) per second, by pod.",
            (
                Query(
                    rate("keiko_ebpf_tcp_connects_total", SEL, WHO),
                    "connects {{namespace}}/{{pod}}",
                ),
                Query(
                    rate("keiko_ebpf_tcp_accepts_total", SEL, WHO), "accepts {{namespace}}/{{pod}}"
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "timeseries",
            "TCP connect latency p99 by remote",
            "keiko_ebpf_tcp_connect_latency_seconds: SYN sent to ESTABLISHED, by remote endpoint.",
            (
                Query(
                    quantile(0.99, "keiko_ebpf_tcp_connect_latency_seconds", SEL, "remote"),
                    "{{remote}}",
                ),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "TCP connection lifetime p50 by local endpoint",
            "keiko_ebpf_tcp_lifetime_seconds: ESTABLISHED to CLOSE, by local endpoint.",
            (Query(quantile(0.5, "keiko_ebpf_tcp_lifetime_seconds", SEL, "local"), "{{local}}"),),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "TCP retransmits",
            "keiko_ebpf_tcp_retransmits_total per second by pod and endpoint (tcpretrans): "
            "loss or congestion on the path.",
            (
                Query(
                    rate("keiko_ebpf_tcp_retransmits_total", SEL, "namespace, pod, remote"),
                    "{{namespace}}/{{pod}} → {{remote}}",
                    may_be_empty="no segment was retransmitted (rare on a healthy network "
                    "and on loopback)",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "timeseries",
            "TCP connect failures and resets",
            "keiko_ebpf_tcp_connect_failures_total (connects that never got ESTABLISHED), "
            "keiko_ebpf_tcp_resets_sent_total and keiko_ebpf_tcp_resets_received_total.",
            (
                Query(
                    rate("keiko_ebpf_tcp_connect_failures_total", SEL, "remote"),
                    "failed connect → {{remote}}",
                    may_be_empty="no connect failed",
                ),
                Query(
                    rate("keiko_ebpf_tcp_resets_sent_total", SEL, WHO),
                    "RST sent {{namespace}}/{{pod}}",
                    may_be_empty="no reset was sent",
                ),
                Query(
                    rate("keiko_ebpf_tcp_resets_received_total", SEL, WHO),
                    "RST received {{namespace}}/{{pod}}",
                    may_be_empty="no reset was received",
                ),
            ),
            unit="ops",
            width=16,
        ),
    ),
)

DISK_SYSCALLS = Row(
    "Disk, syscalls, processes",
    (
        Panel(
            "timeseries",
            "Disk I/O latency p99 by device",
            "keiko_ebpf_block_latency_seconds: block request issue to completion (biolatency).",
            (
                Query(
                    quantile(0.99, "keiko_ebpf_block_latency_seconds", SEL, "device"), "{{device}}"
                ),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "Disk I/O by device and operation",
            "keiko_ebpf_block_requests_total (IOPS) and keiko_ebpf_block_bytes_total (bytes/s).",
            (
                Query(
                    rate("keiko_ebpf_block_requests_total", SEL, "device, op"),
                    "{{device}} {{op}} IOPS",
                ),
                Query(
                    rate("keiko_ebpf_block_bytes_total", SEL, "device, op"), "{{device}} {{op}} B/s"
                ),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Failed syscalls (top 10)",
            "keiko_ebpf_syscalls_failed_total per second by syscall and errno: EAGAIN is mostly "
            "normal; a rise in ECONNREFUSED, ENOENT or EACCES usually is not.",
            (
                Query(
                    f"topk(10, {rate('keiko_ebpf_syscalls_failed_total', SEL, 'syscall, errno')})",
                    "{{syscall}} {{errno}}",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "timeseries",
            "OOM kills",
            "keiko_ebpf_oom_kills_total: processes the OOM killer chose, by pod and container "
            "(counted when the victim exits).",
            (
                Query(
                    increase("keiko_ebpf_oom_kills_total", SEL, "namespace, pod, container"),
                    "{{namespace}}/{{pod}} {{container}}",
                    may_be_empty="no process was OOM-killed in the time range",
                ),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Process execs, exits and deaths by signal",
            "keiko_ebpf_process_execs_total, keiko_ebpf_process_exits_total and "
            "keiko_ebpf_process_signaled_total (by signal) per second.",
            (
                Query(rate("keiko_ebpf_process_execs_total", SEL), "execs"),
                Query(rate("keiko_ebpf_process_exits_total", SEL), "exits"),
                Query(
                    rate("keiko_ebpf_process_signaled_total", SEL, "signal"),
                    "killed by {{signal}}",
                    may_be_empty="no process died of a signal",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "timeseries",
            "Agent cost: collect time p99, folded points",
            "keiko_ebpf_collect_duration_seconds (reading, attributing and bounding every "
            "probe once) and keiko_ebpf_folded_series_total (points folded into 'other' by "
            "the cardinality bounds, by label).",
            (
                Query(
                    quantile(0.99, "keiko_ebpf_collect_duration_seconds", NODE, "node"),
                    "collect p99 {{node}}",
                ),
                Query(rate("keiko_ebpf_folded_series_total", NODE, "label"), "folded {{label}}/s"),
            ),
            width=8,
        ),
    ),
)

BOARD = Board(
    uid="keiko-nodes",
    title="keiko / Nodes (eBPF)",
    description="Kernel-level signals from keiko's eBPF node agent: scheduling delay, TCP, "
    "retransmits, disk latency, failed syscalls, OOM kills. Variables: node = `node` of "
    "keiko_ebpf_probe_up; namespace = `namespace` of keiko_ebpf_sched_switches_total.",
    rows=(SCHEDULING, TCP, DISK_SYSCALLS),
    variables=VARIABLES,
    tags=("keiko", "ebpf"),
)
