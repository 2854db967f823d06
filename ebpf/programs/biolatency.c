/* Block I/O latency per device (issue to driver -> completion), requests and bytes per
 * device and operation. Requests are matched by (device, sector), as bcc's biolatency. */
#ifndef MAX_INFLIGHT
#define MAX_INFLIGHT 16384  /* requests issued and not yet completed, machine-wide */
#endif
#ifndef MAX_DEVICES
#define MAX_DEVICES 1024
#endif
#define SLOTS 32

struct request {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct hist {
    u64 slots[SLOTS];  /* log2 buckets of the latency in microseconds */
    u64 total_us;
};

struct io {
    u32 dev;
    u32 op;  /* from rwbs: R, W, D (discard, secure erase), F (flush), N (other) */
};

struct io_count {
    u64 requests;
    u64 bytes;
};

BPF_HASH(issued, struct request, u64, MAX_INFLIGHT);
BPF_HASH(io_hist, u32, struct hist, MAX_DEVICES);
BPF_HASH(io_counts, struct io, struct io_count, MAX_DEVICES * 4);

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct request req = {.dev = args->dev, .sector = args->sector};
    u64 now = bpf_ktime_get_ns();
    issued.update(&req, &now);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct request req = {.dev = args->dev, .sector = args->sector};
    struct io io = {.dev = args->dev, .op = '?'};
#pragma unroll
    for (int i = 0; i < 2; i++) {  /* a leading F (preflush) may precede the operation */
        char c = args->rwbs[i];
        if (c == 'R' || c == 'W' || c == 'D' || c == 'N') {
            io.op = c;
            break;
        }
    }
    if (io.op == '?' && args->rwbs[0] == 'F')  /* "F" or "FF": a flush request */
        io.op = 'F';
    struct io_count zero = {}, *count = io_counts.lookup_or_try_init(&io, &zero);
    if (count) {
        __sync_fetch_and_add(&count->requests, 1);
        __sync_fetch_and_add(&count->bytes, (u64)args->nr_sector << 9);
    }
    u64 *start = issued.lookup(&req);
    if (!start)
        return 0;  /* issued before the probe was loaded */
    u64 us = (bpf_ktime_get_ns() - *start) / 1000;
    issued.delete(&req);
    u32 dev = args->dev, slot = keiko_log2(us);
    if (slot >= SLOTS)
        slot = SLOTS - 1;
    struct hist empty = {}, *h = io_hist.lookup_or_try_init(&dev, &empty);
    if (h) {
        __sync_fetch_and_add(&h->slots[slot], 1);
        __sync_fetch_and_add(&h->total_us, us);
    }
    return 0;
}
