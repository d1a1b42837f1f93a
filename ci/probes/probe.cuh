/* probe.cuh — the pieces the one-GPU timing probes share (ci/probes/*.cu, built and run by
 * ci/probes/run on a GPU machine, never by meson or CI): error checks, PDL's two instructions, the
 * global timer, a read that skips L1, a 256-thread block sum and a PDL launch. */
#ifndef NY_PROBE_CUH
#define NY_PROBE_CUH

#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <cuda.h>
#include <cuda_runtime.h>
namespace cg = cooperative_groups;

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_) {                                                                                  \
            printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CU(x)                                                                                      \
    do {                                                                                           \
        CUresult r_ = (x);                                                                         \
        if (r_) {                                                                                  \
            const char *m_;                                                                        \
            cuGetErrorString(r_, &m_);                                                             \
            printf("%s:%d %s\n", __FILE__, __LINE__, m_);                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

__device__ __forceinline__ void gd_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void gd_trig()
{
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
__device__ __forceinline__ unsigned long long gtime()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ uint4 ldnc(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* The probes build with plain nvcc, without the project's configured headers (engine/cuda's pull
 * in meson's generated ny_config.h), so they carry their own copies of two small engine pieces:
 * cuda_norm.cuh's fixed-order block sum and cuda_int.cuh's PDL launch. */
#define NT 256 /* threads of the small kernels' blocks */
__device__ __forceinline__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    if (l == 0)
        sh[w] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < NT / 32; i++)
        t += sh[i];
    __syncthreads();
    return t;
}
__device__ __forceinline__ float sq4(float4 v)
{
    return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
}

/* ---- the decode step's latency-bound kernels, small stand-ins -------------------------------
 * Each waits for its input by PDL (wcnt NULL) or until *wcnt >= wtarget (a counter the producer's
 * blocks add to: the probes' cross-stream handoff), and adds 1 to *sig (if not NULL) when a block
 * is done. */
__device__ __forceinline__ unsigned ld_acq(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void wait_in(const unsigned *cnt, unsigned target)
{
    if (!cnt) {
        gd_wait();
        return;
    }
    if (threadIdx.x == 0)
        while (ld_acq(cnt) < target)
            ;
    __syncthreads();
}
__device__ __forceinline__ void signal_out(unsigned *cnt)
{
    __syncthreads();
    if (cnt && threadIdx.x == 0)
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt) : "memory");
}

/* a decode sum's end: residual add + RMSNorm of an 8,192-float row in a cluster of 8 blocks
 * (the sum of squares through distributed shared memory), after spin_ns of spinning (standing
 * for the wait on the other GPUs) */
__global__ void __cluster_dims__(8, 1, 1) __launch_bounds__(NT)
    k_sum(float4 *x, const float4 *h, const float *w, float4 *out, int spin_ns,
          const unsigned *wcnt, unsigned wtarget, unsigned *sig)
{
    gd_trig();
    cg::cluster_group cl = cg::this_cluster();
    const int u = cl.block_rank(), i = threadIdx.x + u * NT;
    const float wi = w[4 * i];
    wait_in(wcnt, wtarget);
    const unsigned long long t0 = gtime();
    while (gtime() - t0 < (unsigned long long)spin_ns)
        ;
    __shared__ float sh[8];
    __shared__ float q[NT];
    float4 a = x[i], b = h[i];
    float4 v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    x[i] = v;
    q[threadIdx.x] = sq4(v);
    cl.sync();
    float s = 0;
    for (int r = 0; r < 8; r++)
        s += cl.map_shared_rank(q, r)[threadIdx.x];
    cl.sync();
    float inv = 1.0f / sqrtf(block_sum(s, sh) / 8192.0f + 1e-5f);
    out[i] = make_float4(v.x * inv * wi, v.y * inv, v.z * inv, v.w * inv);
    signal_out(sig);
}

/* a small elementwise kernel (rope, swiglu, combine): 16 blocks, out = in + h over 8,192 floats
 * (in: the previous kernel's output, from L2) */
__global__ void __launch_bounds__(NT) k_tiny(const float4 *in, const float4 *h, float4 *out,
                                             const unsigned *wcnt, unsigned wtarget,
                                             unsigned *sig)
{
    gd_trig();
    wait_in(wcnt, wtarget);
    for (int i = blockIdx.x * NT + threadIdx.x; i < 2048; i += gridDim.x * NT) {
        float4 a = in[i], b = h[i];
        out[i] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
    signal_out(sig);
}

/* attention's reads: 34 blocks each reading its 1/34 of 2 MB slice `sl` of kv (a layer's K and
 * V at tp 4, 2,048 tokens: from DRAM), a block sum, then k_tiny's work */
__global__ void __launch_bounds__(NT) k_att(const uint4 *kv, int sl, const float4 *in,
                                            const float4 *h, float4 *out, const unsigned *wcnt,
                                            unsigned wtarget, unsigned *sig)
{
    gd_trig();
    wait_in(wcnt, wtarget);
    __shared__ float sh[8];
    const int per = (2 << 20) / 16 / gridDim.x;
    const uint4 *p = kv + (size_t)sl * ((2 << 20) / 16) + blockIdx.x * per;
    float s = 0.0f;
    for (int i = threadIdx.x; i < per; i += NT * 4) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++)
            v[u] = i + u * NT < per ? ldnc(p + i + u * NT) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < 4; u++)
            s += __uint_as_float(v[u].x & 0x3f7fffffu);
    }
    s = block_sum(s, sh) * 1e-30f;
    for (int i = blockIdx.x * NT + threadIdx.x; i < 2048; i += gridDim.x * NT) {
        float4 a = in[i], b = h[i];
        out[i] = make_float4(a.x + b.x + s, a.y + b.y, a.z + b.z, a.w + b.w);
    }
    signal_out(sig);
}

/* kern<<<grid, threads, smem, st>>>(args) with programmatic dependent launch allowed */
template <typename... KArgs, typename... Args>
static void launch_pdl(void (*kern)(KArgs...), int grid, int threads, size_t smem, cudaStream_t st,
                       Args... args)
{
    cudaLaunchAttribute a[1];
    a[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    a[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t c = {};
    c.gridDim = grid;
    c.blockDim = threads;
    c.dynamicSmemBytes = smem;
    c.stream = st;
    c.attrs = a;
    c.numAttrs = 1;
    CK(cudaLaunchKernelEx(&c, kern, static_cast<KArgs>(args)...));
}

/* Two green contexts of device 0: `*a` with nA SMs (rounded up as the driver requires), `*b`
 * with the rest; a non-blocking stream on each; the SM counts in *na, *nb. */
static void green_split(unsigned nA, CUstream *a, CUstream *b, unsigned *na, unsigned *nb)
{
    CU(cuInit(0));
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CUdevResource all, part, rest;
    CU(cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
    unsigned n = 1;
    CU(cuDevSmResourceSplitByCount(&part, &n, &all, &rest, 0, nA));
    CUdevResourceDesc dA, dB;
    CU(cuDevResourceGenerateDesc(&dA, &part, 1));
    CU(cuDevResourceGenerateDesc(&dB, &rest, 1));
    CUgreenCtx gA, gB;
    CU(cuGreenCtxCreate(&gA, dA, dev, CU_GREEN_CTX_DEFAULT_STREAM));
    CU(cuGreenCtxCreate(&gB, dB, dev, CU_GREEN_CTX_DEFAULT_STREAM));
    CU(cuGreenCtxStreamCreate(a, gA, CU_STREAM_NON_BLOCKING, 0));
    CU(cuGreenCtxStreamCreate(b, gB, CU_STREAM_NON_BLOCKING, 0));
    *na = part.sm.smCount;
    *nb = rest.sm.smCount;
}

#endif
