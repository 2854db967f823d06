/* Process lifecycle per cgroup: execs, exits, OOM kills.
 *
 * oom:mark_victim runs in the context of whoever hit the OOM (often not the victim), and
 * the victim's cgroup cannot be read without task_struct layouts. The victim always goes
 * through do_exit, where it is the current task: mark_victim parks its pid and the exit
 * tracepoint attributes the kill to the exiting task's own cgroup.
 *
 * Deaths by signal need task_struct.exit_code: its offset comes from the running kernel's
 * BTF as TASK_EXIT_CODE (the headers bcc compiles against may be another kernel's); without
 * it the program counts no signals.
 */
#ifndef MAX_OOM_VICTIMS
#define MAX_OOM_VICTIMS 1024  /* victims picked and not yet exited */
#endif

BPF_HASH(execs, u64, u64, MAX_CGROUPS);
BPF_HASH(exits, u64, u64, MAX_CGROUPS);
BPF_HASH(oom_kills, u64, u64, MAX_CGROUPS);
BPF_HASH(oom_victims, u32, u8, MAX_OOM_VICTIMS);

struct death {
    u64 cgroup;
    u32 sig;
    u32 pad;
};
BPF_HASH(signaled, struct death, u64, MAX_CGROUPS);

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 cgroup = bpf_get_current_cgroup_id();
    execs.atomic_increment(cgroup);
    return 0;
}

TRACEPOINT_PROBE(oom, mark_victim)
{
    u32 pid = args->pid;
    u8 yes = 1;
    oom_victims.update(&pid, &yes);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid(), cgroup = bpf_get_current_cgroup_id();
    u32 pid = (u32)id;
    if (oom_victims.lookup(&pid)) {
        oom_victims.delete(&pid);
        oom_kills.atomic_increment(cgroup);
    }
    if (pid != id >> 32)  /* only the thread group leader: one exit per process */
        return 0;
    exits.atomic_increment(cgroup);
#ifdef TASK_EXIT_CODE
    int code = 0;  /* set before the tracepoint: the signal number, or status << 8 */
    bpf_probe_read_kernel(&code, sizeof(code), (void *)bpf_get_current_task() + TASK_EXIT_CODE);
    if (code & 0x7f) {
        struct death death = {.cgroup = cgroup, .sig = code & 0x7f};
        signaled.atomic_increment(death);
    }
#endif
    return 0;
}
