/* ci/trace/cutrace.c — a CUPTI injection library: every kernel's device start and end time, to a
 * CSV file, for ci/trace/steps.py. Not part of nyxaudit (a development tool for the GPU machine;
 * CI never builds it). ci/trace/run builds and uses it:
 *   gcc -shared -fPIC -o libcutrace.so cutrace.c -I$CUDA/include -L$CUPTI -lcupti -lpthread
 *   CUDA_INJECTION64_PATH=libcutrace.so CUTRACE_OUT=trace.csv program ...
 * The CUDA driver loads the library at its initialisation and calls InitializeInjection, which
 * turns on CUPTI's concurrent-kernel activity records (start and end as the GPU stamps them; the
 * kernels still overlap as they would untraced, programmatic dependent launch included). A thread
 * flushes the records every 200 ms and at exit. Columns: dev, stream, start, end (ns, the GPU's
 * clock), queued, submitted (0 unless CUTRACE_LAT=1), grid x, grid y, block x, mangled name. */
#include <cupti.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static FILE *out;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long nrec, ndropped;

static void CUPTIAPI buf_requested(uint8_t **buf, size_t *size, size_t *maxrec)
{
    *size = 8 << 20;
    *buf = aligned_alloc(8, *size);
    *maxrec = 0;
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t sid, uint8_t *buf, size_t size,
                                   size_t valid)
{
    (void)size;
    CUpti_Activity *r = NULL;
    pthread_mutex_lock(&mu);
    while (buf && cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
            r->kind != CUPTI_ACTIVITY_KIND_KERNEL)
            continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
        fprintf(out, "%u,%u,%llu,%llu,%llu,%llu,%d,%d,%d,%s\n", k->deviceId, k->streamId,
                (unsigned long long)k->start, (unsigned long long)k->end,
                (unsigned long long)k->queued, (unsigned long long)k->submitted, k->gridX,
                k->gridY, k->blockX, k->name ? k->name : "?");
        nrec++;
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, sid, &dropped) == CUPTI_SUCCESS)
        ndropped += (long)dropped;
    pthread_mutex_unlock(&mu);
    free(buf);
}

static void *flusher(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        cuptiActivityFlushAll(0);
    }
    return NULL;
}

static void finish(void)
{
    cuptiActivityFlushAll(1);
    pthread_mutex_lock(&mu);
    if (out) {
        fclose(out);
        out = NULL;
        fprintf(stderr, "cutrace: %ld kernel records, %ld dropped\n", nrec, ndropped);
    }
    pthread_mutex_unlock(&mu);
}

int InitializeInjection(void)
{
    const char *path = getenv("CUTRACE_OUT");
    out = fopen(path ? path : "cutrace.csv", "w");
    if (!out) {
        fprintf(stderr, "cutrace: cannot write %s\n", path ? path : "cutrace.csv");
        return 0;
    }
    fprintf(out, "dev,stream,start,end,queued,submitted,gx,gy,bx,name\n");
    if (cuptiActivityRegisterCallbacks(buf_requested, buf_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "cutrace: CUPTI refused the kernel activity records\n");
        return 0;
    }
    if (getenv("CUTRACE_LAT"))
        cuptiActivityEnableLatencyTimestamps(1);
    atexit(finish);
    pthread_t th;
    if (pthread_create(&th, NULL, flusher, NULL) == 0)
        pthread_detach(th);
    return 1;
}
