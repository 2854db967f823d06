/* Failed syscalls per (cgroup, syscall number, errno).
 *
 * raw_syscalls:sys_exit fires for every syscall on the machine, so the common path (a
 * success) is one compare and return; only failures touch the map.
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

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    long ret = args->ret;
    if (ret >= 0 || ret < -MAX_ERRNO)
        return 0;
    struct failure key = {
        .cgroup = bpf_get_current_cgroup_id(),
        .nr = (u32)args->id,
        .err = (u32)-ret,
    };
    failed.atomic_increment(key);
    return 0;
}
