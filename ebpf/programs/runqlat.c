/* Run-queue latency per cgroup: time from wakeup (or preemption) until the task runs.
 *
 * Raw tracepoints: no trace-buffer record is built per event (sched_switch copies two
 * comms into one), the program gets the kernel's own arguments. Tasks are keyed by their
 * task_struct address, so no task_struct field is ever read (the kernel headers bcc
 * compiles against need not match the running kernel's layout). Attribution: at
 * sched_switch the current task is still `prev`, so bpf_get_current_cgroup_id() is prev's
 * cgroup. The delay of `next` is parked in a per-CPU slot and recorded at next's own
 * switch-out on this CPU, where it is the current task and its cgroup is exact.
 */
#ifndef MAX_PIDS
#define MAX_PIDS 65536  /* tasks with a stamp entry (woken at least once, still alive) */
#endif
#define SLOTS 32        /* 2^31 us = 36 min; longer waits land in the last slot */
#define TASK_STATE_MASK 0xff  /* sleeping, stopped, dead... (0: TASK_RUNNING) */
#define TASK_DEAD 0x80        /* prev's final switch-out */

struct cgroup_sched {
    u64 slots[SLOTS];   /* log2 buckets of the run-queue delay in microseconds */
    u64 total_us;
    u64 switches;       /* context switches away from the cgroup's tasks */
};

struct parked {
    u64 task;
    u64 delay_us;
};

/* task_struct address -> ns it became runnable, 0 once it ran. A task keeps its entry
 * while it lives (stamps are written in place: no allocation per event) and it is deleted
 * at the task's final switch-out; LRU bounds whatever else is left. */
BPF_TABLE("lru_hash", u64, u64, enqueued, MAX_PIDS);
BPF_PERCPU_ARRAY(parked, struct parked, 1);
/* Per CPU: every switch adds to its cgroup's entry, and one cgroup's tasks run on many CPUs
 * at once; plain adds to CPU-local copies (summed when read) spare atomics on a shared
 * cache line. Not preallocated: MAX_CGROUPS x CPUs x 272 bytes would be reserved up front. */
BPF_F_TABLE("percpu_hash", u64, struct cgroup_sched, runq, MAX_CGROUPS, BPF_F_NO_PREALLOC);

static __always_inline void enqueue(u64 task, u64 now)
{
    u64 *ts = enqueued.lookup(&task);
    if (ts)
        *ts = now;
    else
        enqueued.update(&task, &now);
}

/* TP_PROTO(struct task_struct *p) */
RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    enqueue(ctx->args[0], bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    enqueue(ctx->args[0], bpf_ktime_get_ns());
    return 0;
}

static __always_inline void account(u64 delay_us, int ran_parked)
{
    u64 cgroup = bpf_get_current_cgroup_id();
    struct cgroup_sched empty = {}, *c = runq.lookup_or_try_init(&cgroup, &empty);
    if (!c)
        return;
    c->switches++;
    if (ran_parked) {
        u32 slot = keiko_log2(delay_us);
        if (slot >= SLOTS)
            slot = SLOTS - 1;
        c->slots[slot]++;
        c->total_us += delay_us;
    }
}

/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
 *          unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    u64 preempt = ctx->args[0], prev = ctx->args[1], next = ctx->args[2];
    u32 state = ctx->args[3], zero = 0;
    struct parked *p = parked.lookup(&zero);
    if (!p)
        return 0;
    u64 now = bpf_ktime_get_ns();
    if ((u32)bpf_get_current_pid_tgid()) {  /* prev is not this CPU's idle task */
        account(p->delay_us, p->task == prev);
        /* Preempted: back in the queue now. (A sleeper gets a fresh stamp at wakeup.) */
        if (preempt || (state & TASK_STATE_MASK) == 0)
            enqueue(prev, now);
        else if (state & TASK_DEAD)
            enqueued.delete(&prev);
    }
    p->task = 0;
    u64 *ts = enqueued.lookup(&next);
    if (ts && *ts) {
        p->task = next;
        p->delay_us = (now - *ts) / 1000;
        *ts = 0;
    }
    return 0;
}
