/* CPU kernels for the canonical quantized layout of sglang.kernels.quant_layout.
 *
 * qweight int32 [K * bits / 32, N] (32 / bits consecutive k rows per word, lowest bits first),
 * scales and zeros [K / group, N] (fp32, fp16 or bf16), w[k, n] = (q[k, n] - z[g, n]) * s[g, n].
 *
 * sgl_quant_gemm: y[M, N] = x[M, K] @ w for a few rows (decode). The packed weight is streamed
 * once; every word is unpacked into 16-column float vectors and multiplied into per-group
 * accumulators acc = sum_k x[k] q[k, n], so the zero point and scale cost one fused multiply-add
 * per group: y += s * (acc - z * sum_g x). Each thread owns a contiguous range of columns and
 * walks the groups outermost, so its loads are a few contiguous streams along each row.
 *
 * sgl_dequantize: w[:, n0:n0+len] in fp32, bit for bit what the torch reference computes
 * ((float(q) - z) * s, no fused multiply-add there to contract).
 *
 * Vectors (quant_common.h) are GCC/clang vector extensions of 16 lanes: one zmm with AVX-512,
 * two ymm with AVX2.
 * Compiled on first use by sglang.kernels.cpu.loader (-O3 -march=native -fopenmp).
 */

#include "quant_common.h"

/* One group of one column block: rows MT, NV vectors of 16 columns (NR native vectors), BITS-bit
 * values. acc[m][j] = sum over the group's k of x[m, k] * q[k, n]; then out += s * (acc - z *
 * xsum). Each native vector of a word row is unpacked whole before the next is loaded, so only
 * one word vector is live beside the accumulators (AVX2 has 16 ymm). */
#define DEFINE_BLOCK(MT, NV, BITS)                                                             \
    static void block_##MT##_##NV##_##BITS(                                                    \
        const float *x, int64_t K, const float *xsum, int64_t G, int64_t g,                    \
        const int32_t *qw, int64_t N, int64_t words, const void *sc, const void *zr, int dt,   \
        int64_t n0, float *out) {                                                              \
        enum { PER = 32 / BITS, MASK = (1 << BITS) - 1, NR = NV * SUB };                       \
        vnf acc[MT][NR];                                                                       \
        for (int m = 0; m < MT; m++)                                                           \
            for (int j = 0; j < NR; j++) acc[m][j] = (vnf){0};                                 \
        const int64_t row0 = g * words;                                                        \
        for (int64_t r = row0; r < row0 + words; r++) {                                        \
            const int32_t *wr = qw + r * N + n0;                                               \
            const float *xk = x + r * PER;                                                     \
            _Pragma("GCC unroll 8") for (int i = 0; i < PER; i++) {                            \
                _Pragma("GCC unroll 16") for (int j = 0; j < NR; j++) {                        \
                    const vnu32 w = load_nu(wr + j * NL) >> (BITS * i);                        \
                    const vnu32 u = i == PER - 1 ? w : w & MASK; /* top field: no mask */      \
                    const vnf q = __builtin_convertvector((vni)u, vnf);                        \
                    for (int m = 0; m < MT; m++) acc[m][j] += xk[m * K + i] * q;               \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int j = 0; j < NR; j++) {                                                         \
            const vnf s = load_param_n(sc, dt, g * N + n0 + j * NL);                           \
            const vnf z = load_param_n(zr, dt, g * N + n0 + j * NL);                           \
            for (int m = 0; m < MT; m++) {                                                     \
                float *o = out + m * N + n0 + j * NL;                                          \
                store_nf(o, load_nf(o) + s * (acc[m][j] - z * xsum[m * G + g]));               \
            }                                                                                  \
        }                                                                                      \
    }

typedef void (*block_fn)(const float *, int64_t, const float *, int64_t, int64_t,
                         const int32_t *, int64_t, int64_t, const void *, const void *, int,
                         int64_t, float *);

/* Vectors per block by rows: MT * NV accumulators stay in registers (<= 8 of 32 zmm). With
 * AVX2 a vector is two of only 16 ymm: the AVX-512 choice spilled from 2 rows (Zen 2, one
 * thread, 576 x 576: 4 rows 1534 -> 138 us with one vector). Up to 2 rows, 2 vectors: 4-8
 * independent FMA chains of ymm accumulators, enough to cover the FMA latency (each column's
 * chain is sequential, to keep the sums' order); 2 rows at 576 x 3072: 237 -> 184 us against
 * one vector, one row level with 4 vectors. 3 rows with 2 vectors were no faster (b8 slower),
 * and from 5 rows even one vector per row spills. */
#ifdef __AVX512F__
#define NV_FOR(MT) ((MT) == 1 ? 4 : (MT) == 2 ? 4 : (MT) <= 4 ? 2 : 1)
#else
#define NV_FOR(MT) ((MT) <= 2 ? 2 : 1)
#endif
#define MAX_ROWS 8

#define DEFINE_ROWS(MT)                                                                        \
    DEFINE_BLOCK(MT, 1, 4) DEFINE_BLOCK(MT, 1, 8)                                              \
    DEFINE_BLOCK(MT, 2, 4) DEFINE_BLOCK(MT, 2, 8)                                              \
    DEFINE_BLOCK(MT, 4, 4) DEFINE_BLOCK(MT, 4, 8)
DEFINE_ROWS(1) DEFINE_ROWS(2) DEFINE_ROWS(3) DEFINE_ROWS(4)
DEFINE_ROWS(5) DEFINE_ROWS(6) DEFINE_ROWS(7) DEFINE_ROWS(8)

#define ROW_ENTRY(MT)                                                                          \
    {{block_##MT##_1_4, block_##MT##_2_4, NULL, block_##MT##_4_4},                             \
     {block_##MT##_1_8, block_##MT##_2_8, NULL, block_##MT##_4_8}}
/* [rows - 1][bits == 8][nv - 1] */
static const block_fn BLOCKS[MAX_ROWS][2][4] = {
    ROW_ENTRY(1), ROW_ENTRY(2), ROW_ENTRY(3), ROW_ENTRY(4),
    ROW_ENTRY(5), ROW_ENTRY(6), ROW_ENTRY(7), ROW_ENTRY(8)};

/* The columns past the last whole vector, one at a time. */
static void scalar_columns(const float *x, int64_t M, int64_t K, const float *xsum, int64_t G,
                           int64_t group, const int32_t *qw, int64_t N, int bits,
                           const void *sc, const void *zr, int dt, int64_t n0, int64_t n1,
                           float *out) {
    const int per = 32 / bits, mask = (1 << bits) - 1;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t m = 0; m < M; m++) {
            float y = 0.0f;
            for (int64_t g = 0; g < G; g++) {
                float acc = 0.0f;
                for (int64_t k = g * group; k < (g + 1) * group; k++) {
                    const int32_t word = qw[(k / per) * N + n];
                    acc += x[m * K + k] * (float)((word >> (bits * (k % per))) & mask);
                }
                y += load_param1(sc, dt, g * N + n) *
                     (acc - load_param1(zr, dt, g * N + n) * xsum[m * G + g]);
            }
            out[m * N + n] = y;
        }
}

/* y[M, N] = x[M, K] @ w for M <= MAX_ROWS rows; returns 0, or -1 for unsupported arguments. */
int sgl_quant_gemm(const float *x, int64_t M, int64_t K, const int32_t *qw, const void *sc,
                   const void *zr, int dt, int64_t N, int bits, int64_t group, float *out,
                   int num_threads) {
    if (M < 1 || M > MAX_ROWS || (bits != 4 && bits != 8) || group <= 0 || K % group ||
        group % (32 / bits))
        return -1;
    const int64_t G = K / group, words = group / (32 / bits);
    float *xsum = malloc(sizeof(float) * (size_t)(M * G));
    if (!xsum) return -1;
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) {
            float s = 0.0f;
            for (int64_t k = g * group; k < (g + 1) * group; k++) s += x[m * K + k];
            xsum[m * G + g] = s;
        }
    memset(out, 0, sizeof(float) * (size_t)(M * N));
    const int nv = NV_FOR((int)M);
    const int64_t nvec = N / VW;
    block_fn wide = BLOCKS[M - 1][bits == 8][nv - 1], one = BLOCKS[M - 1][bits == 8][0];
    const int nt = threads_for(num_threads, nvec > 0 ? nvec : 1);
#pragma omp parallel num_threads(nt)
    {
        const int t = team_rank(), T = team_size();
        /* Contiguous vector ranges; the scalar tail goes to the last thread. */
        const int64_t v0 = nvec * t / T, v1 = nvec * (t + 1) / T;
        for (int64_t g = 0; g < G; g++) {
            int64_t v = v0;
            for (; v + nv <= v1; v += nv)
                wide(x, K, xsum, G, g, qw, N, words, sc, zr, dt, v * VW, out);
            for (; v < v1; v++)
                one(x, K, xsum, G, g, qw, N, words, sc, zr, dt, v * VW, out);
        }
        if (t == T - 1 && nvec * VW < N)
            scalar_columns(x, M, K, xsum, G, group, qw, N, bits, sc, zr, dt, nvec * VW, N, out);
    }
    free(xsum);
    return 0;
}

/* w[:, n0:n0+len] as fp32 [K, len] (row stride len). Returns 0, or -1 for bad arguments. */
int sgl_dequantize(const int32_t *qw, const void *sc, const void *zr, int dt, int64_t K,
                   int64_t N, int bits, int64_t group, int64_t n0, int64_t len, float *out,
                   int num_threads) {
    if ((bits != 4 && bits != 8) || group <= 0 || K % group || n0 < 0 || len < 0 ||
        n0 + len > N)
        return -1;
    const int per = 32 / bits, mask = (1 << bits) - 1;
    const int64_t rows = K / per;
    int failed = 0;
    const int nt = threads_for(num_threads, rows);
#pragma omp parallel num_threads(nt)
    {
        /* This thread's scales and zeros of the current group, in fp32. */
        float *s = NULL, *z = NULL;
        if (dt != DT_F32) {
            s = malloc(sizeof(float) * (size_t)(len > 0 ? len : 1));
            z = malloc(sizeof(float) * (size_t)(len > 0 ? len : 1));
            if (!s || !z) {
#pragma omp atomic write
                failed = 1;
            }
        }
        int64_t have = -1;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if ((dt != DT_F32 && (!s || !z))) continue;
            const int32_t *wrow = qw + r * N + n0;
            for (int i = 0; i < per; i++) {
                const int64_t k = r * per + i, g = k / group;
                const float *sg, *zg;
                if (dt == DT_F32) {
                    sg = (const float *)sc + g * N + n0;
                    zg = (const float *)zr + g * N + n0;
                } else {
                    if (g != have) {
                        for (int64_t j = 0; j < len; j++) {
                            s[j] = load_param1(sc, dt, g * N + n0 + j);
                            z[j] = load_param1(zr, dt, g * N + n0 + j);
                        }
                        have = g;
                    }
                    sg = s;
                    zg = z;
                }
                float *o = out + k * len;
                const int shift = bits * i;
                for (int64_t j = 0; j < len; j++)
                    o[j] = ((float)((wrow[j] >> shift) & mask) - zg[j]) * sg[j];
            }
        }
        free(s);
        free(z);
    }
    return failed ? -1 : 0;
}

/* The BLAS sgemm (Fortran interface, 32-bit integers) and MKL's per-thread thread count, as
 * handed over by the caller (torch's MKL: quant_gemm.py finds them in libtorch_cpu). */
typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);
typedef int (*set_threads_local_fn)(int);

/* Columns [n0, n0 + len) of w into out [K, len], on the calling thread: sgl_dequantize's
 * operations, so its bits. s and z: room for len fp32 parameters (unused for fp32 ones). */
static void dequantize_cols(const int32_t *qw, const void *sc, const void *zr, int dt, int64_t K,
                            int64_t N, int bits, int64_t group, int64_t n0, int64_t len,
                            float *out, float *s, float *z) {
    const int per = 32 / bits, mask = (1 << bits) - 1;
    int64_t have = -1;
    for (int64_t r = 0; r < K / per; r++) {
        const int32_t *wrow = qw + r * N + n0;
        for (int i = 0; i < per; i++) {
            const int64_t k = r * per + i, g = k / group;
            const float *sg = s, *zg = z;
            if (dt == DT_F32) {
                sg = (const float *)sc + g * N + n0;
                zg = (const float *)zr + g * N + n0;
            } else if (g != have) {
                for (int64_t j = 0; j < len; j++) {
                    s[j] = load_param1(sc, dt, g * N + n0 + j);
                    z[j] = load_param1(zr, dt, g * N + n0 + j);
                }
                have = g;
            }
            float *o = out + k * len;
            const int shift = bits * i;
            for (int64_t j = 0; j < len; j++)
                o[j] = ((float)((wrow[j] >> shift) & mask) - zg[j]) * sg[j];
        }
    }
}

/* This thread's scratch of at least n floats, kept for its next calls (a fresh megabytes-sized
 * malloc per call would be fresh pages, each faulted in again). */
static float *mm_scratch(size_t n) {
    static __thread float *buf = NULL;
    static __thread size_t cap = 0;
    if (cap < n) {
        float *grown = realloc(buf, sizeof(float) * n);
        if (!grown) return NULL;
        buf = grown;
        cap = n;
    }
    return buf;
}

/* y[M, N] = x[M, K] @ w for many rows: each thread takes a contiguous range of the columns and,
 * chunk columns at a time, dequantizes them into its own scratch and multiplies them with a
 * one-thread sgemm. What this replaces (a dequantization on all threads, then torch.mm on all
 * threads) gave the same products per column, but every chunk written by the threads was then
 * read by every thread: on Zen 2 two threads were only ~1.3x one (576 x 3072, 64 rows: 3.0 ms
 * against 4.1). Here a chunk stays in the cache of the core that made it.
 *
 * The sgemm is the one torch.mm calls (MKL), on the same operands (w chunk as a column-major
 * [len, K], x as [K, M], out as [len, M] with leading dimension N); its results did not depend
 * on the number of threads or the chunk width (quant_gemm.py's tests compare this with
 * dequantize + torch.mm bit for bit). Returns 0, or -1 for bad arguments or no memory. */
int sgl_quant_gemm_mm(const float *x, int64_t M, int64_t K, const int32_t *qw, const void *sc,
                      const void *zr, int dt, int64_t N, int bits, int64_t group, int64_t chunk,
                      float *out, void *sgemm_ptr, void *set_local_ptr, int num_threads) {
    if (M < 1 || N < 1 || (bits != 4 && bits != 8) || group <= 0 || K % group ||
        group % (32 / bits) || chunk < 1 || !sgemm_ptr || K > 0x7fffffff || M > 0x7fffffff ||
        N > 0x7fffffff)
        return -1;
    const sgemm_fn sgemm = (sgemm_fn)sgemm_ptr;
    const set_threads_local_fn set_local = (set_threads_local_fn)set_local_ptr;
    const int64_t nvec = (N + VW - 1) / VW; /* the last vector may be partial */
    const int nt = threads_for(num_threads, nvec);
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        const int t = team_rank(), T = team_size();
        int64_t c0 = nvec * t / T * VW, c1 = nvec * (t + 1) / T * VW;
        c1 = c1 < N ? c1 : N;
        const int64_t width = c1 - c0 < chunk ? c1 - c0 : chunk;
        float *w = width > 0 ? mm_scratch((size_t)(K * width + 2 * width)) : NULL;
        float *s = w ? w + K * width : NULL, *z = w ? s + width : NULL;
        if (width > 0 && !w) {
#pragma omp atomic write
            failed = 1;
        } else if (width > 0) {
            /* One MKL thread inside this team (MKL would otherwise start its own). */
            const int before = set_local ? set_local(1) : 0;
            const float one = 1.0f, zero = 0.0f;
            const int m = (int)M, k = (int)K, ldc = (int)N;
            for (int64_t n0 = c0; n0 < c1; n0 += chunk) {
                const int len = (int)(c1 - n0 < chunk ? c1 - n0 : chunk);
                dequantize_cols(qw, sc, zr, dt, K, N, bits, group, n0, len, w, s, z);
                sgemm("N", "N", &len, &m, &k, &one, w, &len, x, &k, &zero, out + n0, &ldc);
            }
            if (set_local) set_local(before);
        }
    }
    return failed ? -1 : 0;
}
