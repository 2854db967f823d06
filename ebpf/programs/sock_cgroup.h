/* The cgroup v2 id of a socket: sk->sk_cgrp_data.cgroup->kn->id.
 *
 * A socket keeps the cgroup of the task that created it, and an accepted socket is cloned
 * from its listener, so this names the owning container even where the tracepoint fires
 * in softirq or timer context (whose "current" task is whoever was running). The member
 * offsets come from the running kernel's BTF as -D macros (ebpf/btf.py): the headers bcc
 * compiles against may belong to another kernel version. Returns 0 when unknown.
 */
static __always_inline u64 sock_cgroup_id(const void *sk)
{
    void *cgrp = NULL, *kn = NULL;
    u64 id = 0;
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&cgrp, sizeof(cgrp), (const char *)sk + OFF_SOCK_CGRP_DATA + OFF_SKCD_CGROUP);
    if (!cgrp)
        return 0;
    bpf_probe_read_kernel(&kn, sizeof(kn), (const char *)cgrp + OFF_CGROUP_KN);
    if (!kn)
        return 0;
    bpf_probe_read_kernel(&id, sizeof(id), (const char *)kn + OFF_KERNFS_NODE_ID);
    return id;
}

/* A TCP endpoint with its owner: the series key of both TCP probes (no padding holes). */
struct endpoint_t {
    u64 cgroup;
    u8 addr[16];    /* IPv4 in the first 4 bytes, or IPv6 */
    u16 port;
    u8 v6;
    u8 side;        /* 0: addr:port is the remote peer; 1: it is the local (listening) side */
    u32 pad;
};
