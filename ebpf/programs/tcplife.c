/* TCP connection lifecycle on sock:inet_sock_set_state: connects, failed connects, accepts,
 * connect latency and connection lifetime per (cgroup, endpoint).
 *
 * Client side: SYN_SENT is entered inside connect(), so the current task is the connecting
 * one and its cgroup owns the connection; SYN_SENT -> ESTABLISHED is the connect latency,
 * SYN_SENT -> CLOSE a failed connect (refused or timed out). Server side: SYN_RECV ->
 * ESTABLISHED is an accept; it runs in softirq context, so the owner is the socket's own
 * cgroup (cloned from the listener's). Any ESTABLISHED socket that reaches CLOSE adds its
 * lifetime. Sizes: MAX_CONNECTIONS sockets in flight, MAX_REMOTE_ENDPOINTS series; a full
 * map refuses the new entry and counts it in drops[].
 */
#include "sock_cgroup.h"

#define S_ESTABLISHED 1
#define S_SYN_SENT 2
#define S_SYN_RECV 3
#define S_CLOSE 7
#define LAT_SLOTS 27   /* us: up to 2^26 us (67 s), the last slot holds the rest */
#define LIFE_SLOTS 32  /* ms: up to 2^31 ms (24 days) */
#define DROP_SOCKS 0
#define DROP_STATS 1

struct conn_t {
    struct endpoint_t ep;
    u64 ts_ns;          /* SYN_SENT time, then ESTABLISHED time */
    u64 established;
};

struct stats_t {
    u64 connects, failed, accepts, latency_us_total, closed;
    u64 latency_us[LAT_SLOTS];
    u64 lifetime_ms[LIFE_SLOTS];
};

BPF_HASH(socks, u64, struct conn_t, MAX_CONNECTIONS);
BPF_HASH(stats, struct endpoint_t, struct stats_t, MAX_REMOTE_ENDPOINTS);
BPF_ARRAY(zero, struct stats_t, 1);  /* the initial value: too big for the BPF stack */
BPF_ARRAY(drops, u64, 2);

static __always_inline void count_drop(int which)
{
    u64 *n = drops.lookup(&which);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline struct stats_t *stats_of(struct endpoint_t *ep)
{
    int i = 0;
    struct stats_t *init = zero.lookup(&i), *s;
    if (!init)
        return NULL;
    s = stats.lookup_or_try_init(ep, init);
    if (!s)
        count_drop(DROP_STATS);
    return s;
}

static __always_inline u32 slot(u64 v, u32 slots)
{
    u32 s = keiko_log2(v);
    return s < slots ? s : slots - 1;
}

static __always_inline void on_syn_sent(struct endpoint_t *remote, u64 sk)
{
    struct conn_t c = {};
    c.ep = *remote;
    c.ep.cgroup = bpf_get_current_cgroup_id();
    c.ts_ns = bpf_ktime_get_ns();
    if (socks.update(&sk, &c))
        count_drop(DROP_SOCKS);
}

static __always_inline void on_accept(struct endpoint_t *local, u64 sk)
{
    struct conn_t c = {};
    struct stats_t *s;
    c.ep = *local;
    c.ep.cgroup = sock_cgroup_id((const void *)sk);
    c.ep.side = 1;
    c.ts_ns = bpf_ktime_get_ns();
    c.established = 1;
    s = stats_of(&c.ep);
    if (s)
        __sync_fetch_and_add(&s->accepts, 1);
    if (socks.update(&sk, &c))
        count_drop(DROP_SOCKS);
}

static __always_inline void on_connected(u64 sk)
{
    struct conn_t *c = socks.lookup(&sk);
    struct stats_t *s;
    u64 now = bpf_ktime_get_ns(), us;
    if (!c)
        return;
    us = (now - c->ts_ns) / 1000;
    c->ts_ns = now;
    c->established = 1;
    s = stats_of(&c->ep);
    if (!s)
        return;
    __sync_fetch_and_add(&s->connects, 1);
    __sync_fetch_and_add(&s->latency_us_total, us);
    __sync_fetch_and_add(&s->latency_us[slot(us, LAT_SLOTS)], 1);
}

static __always_inline void on_close(u64 sk)
{
    struct conn_t *c = socks.lookup(&sk);
    struct stats_t *s;
    if (!c)
        return;
    s = stats_of(&c->ep);
    if (s && c->established) {
        u64 ms = (bpf_ktime_get_ns() - c->ts_ns) / 1000000;
        __sync_fetch_and_add(&s->closed, 1);
        __sync_fetch_and_add(&s->lifetime_ms[slot(ms, LIFE_SLOTS)], 1);
    } else if (s && !c->ep.side) {
        __sync_fetch_and_add(&s->failed, 1);
    }
    socks.delete(&sk);
}

/* The tracepoint's args exist only inside TRACEPOINT_PROBE: copy an address out here. */
#define FILL_ENDPOINT(ep, a4, a6, p) do {                          \
        (ep).port = (p);                                           \
        if (args->family == 10 /* AF_INET6 */) {                   \
            (ep).v6 = 1;                                           \
            bpf_probe_read_kernel((ep).addr, 16, (a6));            \
        } else {                                                   \
            bpf_probe_read_kernel((ep).addr, 4, (a4));             \
        }                                                          \
    } while (0)

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    struct endpoint_t ep = {};
    u64 sk = (u64)args->skaddr;
    int old = args->oldstate, new = args->newstate;
    if (args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    if (new == S_SYN_SENT) {
        FILL_ENDPOINT(ep, args->daddr, args->daddr_v6, args->dport);
        on_syn_sent(&ep, sk);
    } else if (new == S_ESTABLISHED && old == S_SYN_SENT) {
        on_connected(sk);
    } else if (new == S_ESTABLISHED && old == S_SYN_RECV) {
        FILL_ENDPOINT(ep, args->saddr, args->saddr_v6, args->sport);
        on_accept(&ep, sk);
    } else if (new == S_CLOSE) {
        on_close(sk);
    }
    return 0;
}
