/* overlap.cu — probe: how much the decode step's latency-bound kernels slow down while a weight
 * stream runs beside them on the same GPU, on the same SMs or on SMs of their own (green contexts).
 * That is the premise of hiding the small kernels under the products' weight reads.
 *
 * k_bg streams a 4 GiB buffer (past the L2) for a fixed wall time: B blocks of 512 threads, 4
 * 16-byte loads in flight a thread. Beside it, a chain of 400 dependent kernels under PDL,
 * replayed from a graph (6 replays), runs on another stream:
 *   one   residual add + RMSNorm of an 8,192-float row in one block (k_rmsnorm_v's shape)
 *   clu   the same in a cluster of 8 blocks (the decode sums' end: k_sum without a spin)
 *   att   k_att (34 blocks reading 2 MB of K/V from DRAM)
 *   tiny  k_tiny (16 blocks, 8,192 floats from L2)
 * Printed, a line a stream configuration: the stream's rate alone (TB/s), then each chain's µs a
 * kernel beside it ("!": the chain waited for the stream to end: its kernels found no room). */
#include "probe.cuh"

#define BG_T 512
#define TILE (128 * 1024 / 16) /* uint4 a 128 KB tile */
#define U 4                     /* loads in flight a thread */
__global__ void __launch_bounds__(BG_T, 3)
    k_bg(const uint4 *w, size_t ntiles, unsigned long long dur, unsigned long long *bytes,
         unsigned *sink)
{
    __shared__ int stop;
    const unsigned long long t0 = gtime();
    unsigned acc = 0;
    unsigned long long done = 0;
    for (size_t t = blockIdx.x;; t += gridDim.x) {
        if (threadIdx.x == 0)
            stop = gtime() - t0 > dur;
        __syncthreads();
        if (stop)
            break;
        const uint4 *p = w + (t % ntiles) * TILE + threadIdx.x;
        for (int i = 0; i < TILE / BG_T; i += U) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                v[u] = ldnc(p + (i + u) * BG_T);
#pragma unroll
            for (int u = 0; u < U; u++)
                acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
        }
        done += TILE * 16;
        __syncthreads();
    }
    if (threadIdx.x == 0)
        atomicAdd(bytes, done);
    if (acc == 0x12345678u)
        sink[0] = acc;
}

__global__ void __launch_bounds__(NT) k_one(float4 *x, const float4 *h, const float *w,
                                            float4 *out)
{
    gd_trig();
    float wv[8];
    for (int u = 0; u < 8; u++)
        wv[u] = w[4 * (threadIdx.x + u * NT)];
    gd_wait();
    __shared__ float sh[8];
    float4 v[8];
    float s = 0;
    for (int u = 0; u < 8; u++) {
        int i = threadIdx.x + u * NT;
        float4 a = x[i], b = h[i];
        v[u] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        x[i] = v[u];
    }
    for (int u = 0; u < 8; u++)
        s += sq4(v[u]);
    float inv = 1.0f / sqrtf(block_sum(s, sh) / 8192.0f + 1e-5f);
    for (int u = 0; u < 8; u++)
        out[threadIdx.x + u * NT] =
            make_float4(v[u].x * inv * wv[u], v[u].y * inv, v[u].z * inv, v[u].w * inv);
}

struct bufs {
    uint4 *w, *kv;
    float *x, *h, *wn, *out, *y2;
    unsigned long long *bytes;
    unsigned *sink;
    size_t ntiles;
};

static void bg(int blocks, cudaStream_t st, const bufs &b, unsigned long long dur)
{
    k_bg<<<blocks, BG_T, 0, st>>>(b.w, b.ntiles, dur, b.bytes, b.sink);
    CK(cudaGetLastError());
}

static const char *CHAIN[] = {"one ", "clu ", "att ", "tiny"};
#define NCHAIN 4
#define LEN 400

/* the four chains, captured from stream s1 (so on s1's SMs) */
static void build(const bufs &b, cudaStream_t s1, cudaGraphExec_t *ge)
{
    const unsigned *nw = NULL;
    unsigned *ns = NULL;
    float4 *x = (float4 *)b.x, *out = (float4 *)b.out, *y2 = (float4 *)b.y2;
    const float4 *h = (const float4 *)b.h;
    for (int m = 0; m < NCHAIN; m++) {
        cudaGraph_t gr;
        CK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeThreadLocal));
        for (int k = 0; k < LEN; k++) {
            const float4 *in = k % 2 ? y2 : out;
            float4 *o = k % 2 ? out : y2;
            if (m == 0)
                launch_pdl(k_one, 1, NT, 0, s1, x, h, (const float *)b.wn, out);
            if (m == 1)
                launch_pdl(k_sum, 8, NT, 0, s1, x, h, (const float *)b.wn, out, 0, nw, 0u, ns);
            if (m == 2)
                launch_pdl(k_att, 34, NT, 0, s1, (const uint4 *)b.kv, k % 128, in, h, o, nw, 0u,
                           ns);
            if (m == 3)
                launch_pdl(k_tiny, 16, NT, 0, s1, in, h, o, nw, 0u, ns);
        }
        CK(cudaStreamEndCapture(s1, &gr));
        CK(cudaGraphInstantiate(&ge[m], gr, 0));
        CK(cudaGraphDestroy(gr));
        CK(cudaGraphLaunch(ge[m], s1));
        CK(cudaStreamSynchronize(s1));
    }
}

/* one line: the stream alone, then each chain beside it (blocks 0: the chains alone) */
static void measure(const char *label, const bufs &b, cudaStream_t s1, cudaGraphExec_t *ge,
                    cudaStream_t s2, int blocks)
{
    const int R = 6;
    const unsigned long long DUR = 60000000ull; /* ns */
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double alone = 0;
    if (blocks) {
        CK(cudaMemsetAsync(b.bytes, 0, 8, s2));
        bg(blocks, s2, b, DUR / 3);
        CK(cudaStreamSynchronize(s2));
        unsigned long long n;
        CK(cudaMemcpy(&n, b.bytes, 8, cudaMemcpyDeviceToHost));
        alone = n / (DUR / 3 * 1e-9) / 1e12;
    }
    printf("%-16s B %3d | %5.2f |", label, blocks, alone);
    for (int m = 0; m < NCHAIN; m++) {
        if (blocks) {
            CK(cudaMemsetAsync(b.bytes, 0, 8, s2));
            bg(blocks, s2, b, DUR);
        }
        CK(cudaEventRecord(e0, s1));
        for (int r = 0; r < R; r++)
            CK(cudaGraphLaunch(ge[m], s1));
        CK(cudaEventRecord(e1, s1));
        CK(cudaStreamSynchronize(s1));
        CK(cudaStreamSynchronize(s2));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        printf(" %s %6.2f%s", CHAIN[m], ms * 1000 / R / LEN, blocks && ms * 1e6 > DUR ? "!" : " ");
    }
    printf("\n");
    fflush(stdout);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

int main()
{
    const size_t WB = (size_t)4 << 30, KVB = (size_t)256 << 20;
    bufs b;
    CK(cudaMalloc(&b.w, WB));
    CK(cudaMemset(b.w, 0x3c, WB));
    CK(cudaMalloc(&b.kv, KVB));
    CK(cudaMemset(b.kv, 0x3c, KVB));
    float **f[] = {&b.x, &b.h, &b.wn, &b.out, &b.y2};
    for (auto p : f) {
        CK(cudaMalloc(p, 8192 * 4));
        CK(cudaMemset(*p, 0, 8192 * 4));
    }
    CK(cudaMalloc(&b.bytes, 8));
    CK(cudaMalloc(&b.sink, 4));
    b.ntiles = WB / 16 / TILE;
    cudaStream_t s1, s2;
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    cudaGraphExec_t ge[NCHAIN];
    build(b, s1, ge);
    printf("SMs chain/stream B blocks | stream alone TB/s | the chains' us a kernel beside it\n");
    const int cfg[] = {0, 33, 66, 132, 264};
    for (int c : cfg)
        measure("shared 132/132", b, s1, ge, s2, c);
    const unsigned sizes[] = {16, 24, 32};
    for (unsigned nA : sizes) { /* the chains on nA SMs, the stream on the rest */
        CUstream sA, sB;
        unsigned na, nb;
        green_split(nA, &sA, &sB, &na, &nb);
        cudaGraphExec_t gg[NCHAIN];
        build(b, (cudaStream_t)sA, gg);
        char lab[32];
        snprintf(lab, sizeof lab, "split %u/%u", na, nb);
        const int bl[] = {0, (int)nb / 2, (int)nb, 2 * (int)nb};
        for (int x : bl)
            measure(lab, b, (cudaStream_t)sA, gg, (cudaStream_t)sB, x);
        for (int m = 0; m < NCHAIN; m++)
            CK(cudaGraphExecDestroy(gg[m]));
    }
    CK(cudaGetLastError());
    return 0;
}
