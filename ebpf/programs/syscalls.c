/* Failed syscalls per (cgroup, syscall number, errno).
 *
 * raw_syscalls:sys_exit fires for every syscall on the machine, so the common path (a
 * success) is one compare and return; only failures touch the map. As a raw tracepoint
 * (when the kernel's BTF gives REGS_SYSCALL_NR, the offset of the syscall number in
 * struct pt_regs) no trace-buffer record is built for the successes either.
 */
#ifndef MAX_FAILURE_KEYS
#define MAX_FAILURE_KEYS (MAX_CGROUPS * 16)  /* distinct (syscall, errno) pairs per cgroup */
#endif
#define MAX_ERRNO 4095  /* the kernel's IS_ERR_VALUE range: -4095..-1 */

struct failure {
    u64 cgroup;
    u32 nr;
    u32 err;
};

BPF_HASH(failed, struct failure, u64, MAX_FAILURE_KEYS);

static __always_inline void count(u32 nr, u32 err)
{
    struct failure key = {.cgroup = bpf_get_current_cgroup_id(), .nr = nr, .err = err};
    failed.atomic_increment(key);
}

#ifdef REGS_SYSCALL_NR
/* TP_PROTO(struct pt_regs *regs, long ret) */
RAW_TRACEPOINT_PROBE(sys_exit)
{
    long ret = ctx->args[1];
    if (ret >= 0 || ret < -MAX_ERRNO)
        return 0;
    u32 nr = 0;  /* little-endian: the low half of x86's long orig_ax */
    bpf_probe_read_kernel(&nr, sizeof(nr), (void *)ctx->args[0] + REGS_SYSCALL_NR);
    count(nr, (u32)-ret);
    return 0;
}
#else
TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    long ret = args->ret;
    if (ret >= 0 || ret < -MAX_ERRNO)
        return 0;
    count((u32)args->id, (u32)-ret);
    return 0;
}
#endif
