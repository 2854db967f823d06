/* cgroup v2 directories as they are created and removed: id -> path, for attribution.
 *
 * The agent resolves cgroup ids to paths when it collects; a cgroup created and removed
 * within one interval is gone by then. This program records each v2 cgroup's path when
 * it is created (cgroup_mkdir) and again when it is removed (cgroup_rmdir: this also
 * covers cgroups created before the agent started) in a bounded LRU hash the agent drains
 * every collect. A burst beyond MAX_WATCHED between two collects evicts the oldest entries.
 *
 * Only the v2 (default) hierarchy matters: its hierarchy id is 0 (the kernel sets it up
 * first; v1 hierarchies get 1, 2, ... as /proc/cgroups shows), and there the cgroup id is
 * the directory's inode, what bpf_get_current_cgroup_id() returns. Paths are relative to
 * the hierarchy root ("/a/b"), as the agent's own walk of the v2 mount builds them.
 */
#ifndef MAX_WATCHED
#define MAX_WATCHED 4096
#endif
#define V2_HIERARCHY 0
#define WATCH_PATH_LEN 320  /* a Kubernetes container scope path is about 200 bytes */

struct watched {
    u32 removed;  /* 1 once cgroup_rmdir saw it */
    u32 len;      /* bytes of path with the NUL; WATCH_PATH_LEN when cut short */
    char path[WATCH_PATH_LEN];
};
BPF_TABLE("lru_hash", u64, struct watched, watched, MAX_WATCHED);

static __always_inline int keiko_watch(int root, u64 id, const char *path, u32 removed)
{
    if (root != V2_HIERARCHY)
        return 0;
    struct watched w = {.removed = removed};
    int len = bpf_probe_read_kernel_str(w.path, sizeof(w.path), path);
    if (len <= 0)
        return 0;
    w.len = len;
    watched.update(&id, &w);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    return keiko_watch(args->root, args->id, (char *)args + (args->data_loc_path & 0xFFFF), 0);
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    return keiko_watch(args->root, args->id, (char *)args + (args->data_loc_path & 0xFFFF), 1);
}
