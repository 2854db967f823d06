/* Run-queue latency per cgroup: time from wakeup (or preemption) until the task runs.
 *
 * Attribution without reading task_struct (the kernel headers bcc compiles against need
 * not match the running kernel's layout): at sched_switch the current task is still
 * `prev`, so bpf_get_current_cgroup_id() is prev's cgroup. The delay of `next` is parked
 * in a per-CPU slot and recorded at next's own switch-out on this CPU, where it is the
 * current task and its cgroup is exact.
 */
#ifndef MAX_PIDS
#define MAX_PIDS 65536  /* tasks waiting in a run queue at once, not all tasks */
#endif
#define SLOTS 32        /* 2^31 us = 36 min; longer waits land in the last slot */
#define TASK_STATE_MASK 0xff  /* report bits; a preempted prev shows only 0x100 (R+) */

struct cgroup_sched {
    u64 slots[SLOTS];   /* log2 buckets of the run-queue delay in microseconds */
    u64 total_us;
    u64 switches;       /* context switches away from the cgroup's tasks */
};

struct parked {
    u32 pid;
    u32 pad;
    u64 delay_us;
};

/* LRU: a task woken while still running, that then exits, leaves a stamp nobody
 * consumes; eviction bounds those without a delete on every switch-out. */
BPF_TABLE("lru_hash", u32, u64, enqueued, MAX_PIDS);
BPF_PERCPU_ARRAY(parked, struct parked, 1);
BPF_HASH(runq, u64, struct cgroup_sched, MAX_CGROUPS);

static __always_inline int enqueue(u32 pid)
{
    u64 now = bpf_ktime_get_ns();
    if (pid)
        enqueued.update(&pid, &now);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup) { return enqueue(args->pid); }

TRACEPOINT_PROBE(sched, sched_wakeup_new) { return enqueue(args->pid); }

TRACEPOINT_PROBE(sched, sched_switch)
{
    u32 prev = args->prev_pid, next = args->next_pid, zero = 0;
    struct parked *p = parked.lookup(&zero);
    if (!p)
        return 0;
    if (prev) {
        u64 cgroup = bpf_get_current_cgroup_id();
        struct cgroup_sched empty = {}, *c = runq.lookup_or_try_init(&cgroup, &empty);
        if (c) {
            __sync_fetch_and_add(&c->switches, 1);
            if (p->pid == prev) {
                u32 slot = keiko_log2(p->delay_us);
                if (slot >= SLOTS)
                    slot = SLOTS - 1;
                __sync_fetch_and_add(&c->slots[slot], 1);
                __sync_fetch_and_add(&c->total_us, p->delay_us);
            }
        }
        /* Preempted: back in the queue now. (A sleeper gets a fresh stamp at wakeup, so
         * a stale one is always overwritten before a switch-in could read it.) */
        if ((args->prev_state & TASK_STATE_MASK) == 0)
            enqueue(prev);
    }
    p->pid = 0;
    u64 *ts = enqueued.lookup(&next);
    if (next && ts) {
        p->pid = next;
        p->delay_us = (bpf_ktime_get_ns() - *ts) / 1000;
        enqueued.delete(&next);
    }
    return 0;
}
