/* TCP retransmissions and resets per (cgroup, endpoint), on tcp:tcp_retransmit_skb,
 * tcp:tcp_send_reset and tcp:tcp_receive_reset.
 *
 * These fire mostly in softirq and timer context, where the current task is unrelated:
 * the owner is the socket's own cgroup (sock_cgroup.h). The endpoint is the remote
 * ip:port, except on sockets this program saw accepted (a server socket's peer port is
 * ephemeral, an unbounded label): those count under their local (listening) ip:port,
 * as do resets sent where no socket exists (e.g. a SYN to a closed port; cgroup 0).
 * inet_sock_set_state keeps that set of server sockets (MAX_CONNECTIONS entries).
 */
#include "sock_cgroup.h"

/* tcp_send_reset's format names enum sk_rst_reason (kernel 6.10+), which older headers
 * lack: give the generated struct an enum of our own (an enum is 4 bytes either way). */
#define sk_rst_reason keiko_sk_rst_reason
enum keiko_sk_rst_reason { KEIKO_SK_RST_REASON_ANY };

#define S_ESTABLISHED 1
#define S_SYN_RECV 3
#define S_TIME_WAIT 6
#define S_CLOSE 7
#define S_NEW_SYN_RECV 12
#define DROP_SERVERS 0
#define DROP_COUNTS 1

struct counts_t {
    u64 retransmits, resets_sent, resets_received;
};

BPF_HASH(servers, u64, u8, MAX_CONNECTIONS);
BPF_HASH(counts, struct endpoint_t, struct counts_t, MAX_REMOTE_ENDPOINTS);
BPF_ARRAY(drops, u64, 2);

static __always_inline void count_drop(int which)
{
    u64 *n = drops.lookup(&which);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline struct counts_t *counts_of(struct endpoint_t *ep)
{
    struct counts_t zero = {}, *c = counts.lookup_or_try_init(ep, &zero);
    if (!c)
        count_drop(DROP_COUNTS);
    return c;
}

/* Full sockets only: a TIME_WAIT or request socket is a smaller struct without a cgroup. */
static __always_inline u64 owner(const void *sk, int state)
{
    if (state == S_TIME_WAIT || state == S_NEW_SYN_RECV)
        return 0;
    return sock_cgroup_id(sk);
}

static __always_inline u8 is_server(const void *sk)
{
    u64 key = (u64)sk;
    return servers.lookup(&key) ? 1 : 0;
}

/* The tracepoint's args exist only inside TRACEPOINT_PROBE: this copies the endpoint out,
 * the remote one, or the local one for a server socket (ep.side set before). Copies go
 * through bpf_probe_read_kernel: a load from a ctx pointer picked at run time is refused
 * by the verifier. */
#define FILL_ENDPOINT(ep)                                                          \
    do {                                                                           \
        int v6__ = args->family == 10 /* AF_INET6 */;                              \
        (ep).v6 = v6__;                                                            \
        bpf_probe_read_kernel(&(ep).port, 2, (ep).side ? (void *)&args->sport     \
                                                       : (void *)&args->dport);    \
        if ((ep).side)                                                             \
            bpf_probe_read_kernel((ep).addr, v6__ ? 16 : 4,                        \
                                  v6__ ? (void *)args->saddr_v6 : (void *)args->saddr); \
        else                                                                       \
            bpf_probe_read_kernel((ep).addr, v6__ ? 16 : 4,                        \
                                  v6__ ? (void *)args->daddr_v6 : (void *)args->daddr); \
    } while (0)

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    u64 sk = (u64)args->skaddr;
    u8 one = 1;
    if (args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    if (args->newstate == S_ESTABLISHED && args->oldstate == S_SYN_RECV) {
        if (servers.update(&sk, &one))
            count_drop(DROP_SERVERS);
    } else if (args->newstate == S_CLOSE) {
        servers.delete(&sk);
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    struct endpoint_t ep = {};
    struct counts_t *c;
    ep.side = is_server(args->skaddr);
    FILL_ENDPOINT(ep);
    ep.cgroup = owner(args->skaddr, args->state);
    c = counts_of(&ep);
    if (c)
        __sync_fetch_and_add(&c->retransmits, 1);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    struct endpoint_t ep = {};
    struct counts_t *c;
    ep.side = is_server(args->skaddr);
    FILL_ENDPOINT(ep);
    ep.cgroup = sock_cgroup_id(args->skaddr);
    c = counts_of(&ep);
    if (c)
        __sync_fetch_and_add(&c->resets_received, 1);
    return 0;
}

/* Its addresses are struct sockaddr_in / sockaddr_in6 (28 bytes each). */
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    struct endpoint_t ep = {};
    struct counts_t *c;
    u8 sa[28];
    u64 sk = (u64)args->skaddr;
    u16 port;
    /* Without a socket the peer's port is ephemeral: count under our (local) side. */
    ep.side = !sk || is_server(args->skaddr);
    if (ep.side)
        bpf_probe_read_kernel(sa, sizeof(sa), args->saddr);
    else
        bpf_probe_read_kernel(sa, sizeof(sa), args->daddr);
    ep.v6 = *(u16 *)sa == 10 /* AF_INET6 */;
    port = *(u16 *)(sa + 2);
    ep.port = (port >> 8) | (port << 8);  /* network order in a sockaddr */
    if (ep.v6)
        __builtin_memcpy(ep.addr, sa + 8, 16);
    else
        __builtin_memcpy(ep.addr, sa + 4, 4);
    ep.cgroup = owner(args->skaddr, args->state);
    c = counts_of(&ep);
    if (c)
        __sync_fetch_and_add(&c->resets_sent, 1);
    return 0;
}
