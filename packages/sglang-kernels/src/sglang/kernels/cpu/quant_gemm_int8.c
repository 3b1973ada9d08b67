/* The int8 path of the CPU quantized GEMM: activations quantized per block to int8, integer dot
 * products with AVX-512 VNNI (vpdpbusd: u8 x s8 -> s32, 64 multiply-adds per instruction) or,
 * without it, AVX2 (vpmaddubsw u8 x s8 -> s16 pairs, then vpmaddwd -> s32; see I8_SUMS below).
 *
 * Weights stay in the canonical layout (quant_layout.py): qweight int32 [K * bits / 32, N],
 * scales and zeros [K / group, N]. That layout already is what vpdpbusd wants: a row of 16 words
 * is one zmm of 16 columns (two ymm with AVX2), and
 * - 8-bit: each word holds k, k+1, k+2, k+3 as its four bytes, lowest first: the unsigned operand
 *   as it is;
 * - 4-bit: each word holds k..k+7 as nibbles; `w & 0x0f0f0f0f` gives the bytes (k, k+2, k+4, k+6)
 *   and `(w >> 4) & 0x0f0f0f0f` the bytes (k+1, k+3, k+5, k+7). The activations are stored in
 *   that order (even k of each 8 first, then odd k), so each pairs with one broadcast dword.
 * So nothing is repacked or copied at load and the weight memory is the packed size.
 *
 * sgl_quantize_rows (8 values per vector step where the block allows, any CPU): x [M, K] fp32 ->
 * xq int8 [M, K] (per block of `block` k: d = max|x| / 127,
 * xq = round-half-even(x * (127 / max|x|)), 4-bit order as above), d [M, K / block], and per
 * group xz[m, g] = sum over the group's blocks of d * sum(xq) (the zero point's term).
 *
 * sgl_quant_gemm_i8: y[m, n] = sum_g s[g, n] * (sum_{b in g} d[m, b] * sum_{k in b} q[k, n] xq[m, k]
 *                                               - z[g, n] * xz[m, g]).
 * Tiles of up to 8 rows x 1-4 vectors of 16 columns keep the int32 block sums and the fp32
 * outputs in registers; each thread owns a contiguous range of column vectors and, for each panel
 * of them, walks every row tile (the panel's weights stay in L1/L2 across row tiles). Columns past
 * the last whole vector are copied, zero-padded, into a 16-column scratch and run through the
 * same tiles.
 *
 * Both ISAs share the tile skeleton (DEFINE_I8_TILE) and differ only in how a block's integer
 * sums are formed (I8_SUMS). Those sums are exact in both, and the fp32 epilogue is the same
 * sequence of IEEE operations per output (one multiply, one fused multiply-add per block, one
 * fused multiply-subtract per group, in group and block order; tiles and passes only change which
 * outputs are in flight, never that order), so an AVX2 build gives the VNNI build's results bit
 * for bit.
 */

#include "quant_common.h"

#ifdef __AVX__
#include <immintrin.h> /* the quantizer's vmaxps / vroundps; the GEMM's VNNI or AVX2 below */
#endif

/* The GEMM's instruction set, fixed at compile time (the loader builds with -march=native, so
 * this is what the CPU has): 2 AVX-512 VNNI, 1 AVX2 with FMA (the epilogue's fused operations
 * must be single-rounding, as VNNI's), 0 none (sgl_quant_gemm_i8 returns -2). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define I8_ISA 2
#elif defined(__AVX2__) && defined(__FMA__)
#define I8_ISA 1
#else
#define I8_ISA 0
#endif

#define I8_MAX_ROWS 8

/* Which GEMM kernel this build has (built with -march=native: this CPU has the instructions):
 * 2 AVX-512 VNNI, 1 AVX2, 0 none. */
int sgl_int8_gemm_available(void) { return I8_ISA; }

/* Position of k % 8 inside its 8 bytes of xq for 4-bit weights: even k first, then odd k. */
static inline int nibble_order(int j) { return (j & 1) ? 4 + (j >> 1) : j >> 1; }

/* One block, scalar: any block length (a multiple of 8 for 4-bit, of 4 for 8-bit). Returns the
 * block's scale d and sets *sum to the sum of its codes. */
static float quantize_block_scalar(const float *xb, int64_t block, int bits, int8_t *qb,
                                   int32_t *sum) {
    float amax = 0.0f;
    for (int64_t i = 0; i < block; i++) {
        const float a = __builtin_fabsf(xb[i]);
        amax = a > amax ? a : amax;
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t total = 0;
    for (int64_t i = 0; i < block; i++) {
        float r = __builtin_rintf(xb[i] * inv); /* round half to even, as torch.round */
        r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
        const int8_t q = (int8_t)r;
        const int64_t at = bits == 4 ? (i & ~(int64_t)7) + nibble_order((int)(i & 7)) : i;
        qb[at] = q;
        total += q;
    }
    *sum = total;
    return amax / 127.0f;
}

/* 8 lanes (one ymm: native with AVX2 too, and full rate on Zen 4, which splits a zmm in two). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int8_t v32i8 __attribute__((vector_size(32)));

/* (a > b) ? a : b and (a < b) ? a : b, lane by lane: one vmaxps / vminps, whose operand order
 * gives these exact semantics (a NaN `a` yields b; so a maximum that starts from a non-NaN `b`
 * never becomes NaN, as the scalar loop's). */
static inline v8f gt_or(v8f a, v8f b) {
#ifdef __AVX__
    return (v8f)_mm256_max_ps((__m256)a, (__m256)b);
#else
    const v8i m = a > b;
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
#endif
}
/* rintf per lane (the current rounding mode: to nearest even). Its own instruction, not
 * (v + 1.5 * 2^23) - 1.5 * 2^23, which GCC would fuse with the product into an FMA (one rounding
 * fewer: ties like -63.5 came out -63); without AVX there is no FMA to fuse into. */
static inline v8f rint8(v8f v) {
#ifdef __AVX__
    return (v8f)_mm256_round_ps((__m256)v, _MM_FROUND_CUR_DIRECTION);
#else
    const v8f magic = (v8f){0} + 12582912.0f;
    return (v + magic) - magic;
#endif
}
static inline v8f lt_or(v8f a, v8f b) {
#ifdef __AVX__
    return (v8f)_mm256_min_ps((__m256)a, (__m256)b);
#else
    const v8i m = a < b;
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
#endif
}

/* The same block, 8 values per step (block % 8 == 0): the scalar loop above cost ~2 ns per
 * value, as much as a third of the int8 GEMM at SmolLM2 shapes. Bit for bit the scalar result:
 * the same IEEE max (running maxima from 0, never NaN, so their order does not matter),
 * product, rint and clamp per lane; the int8 code is the low byte of the truncated int32, as the
 * scalar cast's. */
static float quantize_block8(const float *xb, int64_t block, int bits, int8_t *qb,
                             int32_t *sum) {
    const v8i abs_mask = (v8i){0} + 0x7fffffff;
    /* Two independent running maxima: a block is short, so latency rules. */
    v8f m0 = (v8f){0}, m1 = (v8f){0}, x;
    int64_t i = 0;
    for (; i + 16 <= block; i += 16) {
        memcpy(&x, xb + i, sizeof x);
        m0 = gt_or((v8f)((v8i)x & abs_mask), m0);
        memcpy(&x, xb + i + 8, sizeof x);
        m1 = gt_or((v8f)((v8i)x & abs_mask), m1);
    }
    if (i < block) {
        memcpy(&x, xb + i, sizeof x);
        m0 = gt_or((v8f)((v8i)x & abs_mask), m0);
    }
    v8f vmax = gt_or(m0, m1);
    const v8i swap4 = {4, 5, 6, 7, 0, 1, 2, 3}, swap2 = {2, 3, 0, 1, 6, 7, 4, 5},
              swap1 = {1, 0, 3, 2, 5, 4, 7, 6};
    vmax = gt_or(__builtin_shuffle(vmax, swap4), vmax);
    vmax = gt_or(__builtin_shuffle(vmax, swap2), vmax);
    vmax = gt_or(__builtin_shuffle(vmax, swap1), vmax);
    const float amax = vmax[0];
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const v8f hi = (v8f){0} + 127.0f, lo = -hi;
    /* The low byte of each int32; for 4-bit weights the even k of each 8, then the odd k. */
    const v32i8 low8 = {0, 4, 8, 12, 16, 20, 24, 28}, low4 = {0, 8, 16, 24, 4, 12, 20, 28};
    v8i vsum = (v8i){0};
    for (i = 0; i < block; i += 8) {
        v8f r;
        memcpy(&r, xb + i, sizeof r);
        r = rint8(r * inv);
        r = gt_or(lo, lt_or(hi, r)); /* r > 127 ? 127 : r < -127 ? -127 : r */
        const v8i q = __builtin_convertvector(r, v8i);
        /* Sum the int8 codes: a NaN lane converts to INT_MIN, whose code is 0. */
        vsum += (v8i)((v8u)q << 24) >> 24;
        const v32i8 q8 = __builtin_shuffle((v32i8)q, bits == 4 ? low4 : low8);
        memcpy(qb + i, &q8, 8);
    }
    int32_t total = 0;
    for (int j = 0; j < 8; j++) total += vsum[j];
    *sum = total;
    return amax / 127.0f;
}

/* bs (may be NULL): each block's integer sum of codes, which the AVX2 8-bit tiles need exactly. */
static void quantize_row(const float *x, int64_t K, int64_t block, int64_t group, int bits,
                         int8_t *xq, float *d, float *xz, int32_t *bs) {
    const int64_t bpg = group / block;
    for (int64_t b = 0; b < K / block; b++) {
        int32_t sum;
        d[b] = block % 8 == 0
                   ? quantize_block8(x + b * block, block, bits, xq + b * block, &sum)
                   : quantize_block_scalar(x + b * block, block, bits, xq + b * block, &sum);
        if (bs) bs[b] = sum;
        if (b % bpg == 0) xz[b / bpg] = 0.0f;
        xz[b / bpg] += d[b] * (float)sum;
    }
}

static int bad_args(int64_t K, int bits, int64_t group, int64_t block) {
    return (bits != 4 && bits != 8) || group <= 0 || block <= 0 || K % group || group % block ||
           (block * bits) % 32;
}

static int quantize_rows(const float *x, int64_t M, int64_t K, int64_t block, int64_t group,
                         int bits, int8_t *xq, float *d, float *xz, int32_t *bs,
                         int num_threads) {
    if (M < 0 || bad_args(K, bits, group, block)) return -1;
    const int64_t B = K / block, G = K / group;
    const int nt = threads_for(num_threads, M);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t m = 0; m < M; m++)
        quantize_row(x + m * K, K, block, group, bits, xq + m * K, d + m * B, xz + m * G,
                     bs ? bs + m * B : NULL);
    return 0;
}

/* Returns 0, or -1 for unsupported arguments. */
int sgl_quantize_rows(const float *x, int64_t M, int64_t K, int64_t block, int64_t group,
                      int bits, int8_t *xq, float *d, float *xz, int num_threads) {
    return quantize_rows(x, M, K, block, group, bits, xq, d, xz, NULL, num_threads);
}

#if I8_ISA

/* The skeleton's vector types and fp32 operations. A 16-column vector is RV registers of RL
 * lanes; the tiles index registers u (columns n0 + u * RL). The fused operations are the
 * intrinsics, never left to contraction, so both ISAs round identically. */
#if I8_ISA == 2
typedef __m512 vf;
typedef __m512i vi;
#define RL 16
#define f_load _mm512_loadu_ps
#define f_store _mm512_storeu_ps
#define f_zero _mm512_setzero_ps
#define f_set1 _mm512_set1_ps
#define f_mul _mm512_mul_ps
#define f_fmadd _mm512_fmadd_ps
#define f_fnmadd _mm512_fnmadd_ps
#define f_cvt _mm512_cvtepi32_ps
#else
typedef __m256 vf;
typedef __m256i vi;
#define RL 8
#define f_load _mm256_loadu_ps
#define f_store _mm256_storeu_ps
#define f_zero _mm256_setzero_ps
#define f_set1 _mm256_set1_ps
#define f_mul _mm256_mul_ps
#define f_fmadd _mm256_fmadd_ps
#define f_fnmadd _mm256_fnmadd_ps
#define f_cvt _mm256_cvtepi32_ps
#endif
#define RV (VW / RL)

/* The 16 parameters (scales or zeros) from i, in fp32, as RV registers. */
static inline void f_params(vf *out, const void *base, int dt, int64_t i) {
    for (int j = 0; j < SUB; j++) {
        const vnf p = load_param_n(base, dt, i + j * NL);
        memcpy((float *)out + j * NL, &p, sizeof p);
    }
}

/* I8_SUMS(MT, U, BITS): ia[m][u] = the exact int32 sums over block b of q[k, n] * xq[m, k], for
 * the tile's MT rows and U registers of columns (it reads the tile's xq, K, qw, N, n0, b, wpb, and
 * for AVX2 8-bit bs, B). */
#if I8_ISA == 2
/* vpdpbusd: 4 u8 x s8 products added into each int32 lane, exact (a block of k values sums to at
 * most k * 255 * 127 in magnitude). */
#define I8_SUMS(MT, U, BITS)                                                                   \
    const __m512i nib = _mm512_set1_epi32(0x0f0f0f0f);                                         \
    for (int m = 0; m < MT; m++)                                                               \
        for (int u = 0; u < U; u++) ia[m][u] = _mm512_setzero_si512();                         \
    for (int64_t r = b * wpb; r < (b + 1) * wpb; r++) {                                        \
        const int8_t *xr = xq + r * PER;                                                       \
        const int32_t *wr = qw + r * N + n0;                                                   \
        if (BITS == 4) {                                                                       \
            __m512i lo[U], hi[U];                                                              \
            for (int u = 0; u < U; u++) {                                                      \
                const __m512i w = _mm512_loadu_si512(wr + u * RL);                             \
                lo[u] = _mm512_and_si512(w, nib);                                              \
                hi[u] = _mm512_and_si512(_mm512_srli_epi32(w, 4), nib);                        \
            }                                                                                  \
            for (int m = 0; m < MT; m++) {                                                     \
                int32_t e, o;                                                                  \
                memcpy(&e, xr + m * K, 4);                                                     \
                memcpy(&o, xr + m * K + 4, 4);                                                 \
                const __m512i xe = _mm512_set1_epi32(e), xo = _mm512_set1_epi32(o);            \
                for (int u = 0; u < U; u++) {                                                  \
                    ia[m][u] = _mm512_dpbusd_epi32(ia[m][u], lo[u], xe);                       \
                    ia[m][u] = _mm512_dpbusd_epi32(ia[m][u], hi[u], xo);                       \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            __m512i w[U];                                                                      \
            for (int u = 0; u < U; u++) w[u] = _mm512_loadu_si512(wr + u * RL);                \
            for (int m = 0; m < MT; m++) {                                                     \
                int32_t e;                                                                     \
                memcpy(&e, xr + m * K, 4);                                                     \
                const __m512i xe = _mm512_set1_epi32(e);                                       \
                for (int u = 0; u < U; u++) ia[m][u] = _mm512_dpbusd_epi32(ia[m][u], w[u], xe); \
            }                                                                                  \
        }                                                                                      \
    }
#else
/* AVX2 has no u8 x s8 -> s32 dot product. vpmaddubsw multiplies unsigned by signed bytes and
 * adds adjacent pairs into int16 with signed saturation; vpmaddwd by ones adds adjacent int16
 * pairs into int32. Both are exact while no int16 saturates (or, for vpaddw, wraps):
 * - 4-bit: codes 0..15, activations -127..127 (the quantizer clamps; never -128). A pair is at
 *   most 2 * 15 * 127 = 3810 in magnitude, a word's even and odd nibbles together 7620 per int16
 *   lane, and I4_RUN = 4 words 30480 < 32767: so up to 4 words (32 k, a whole block of 32) are
 *   summed in int16 and widened once.
 * - 8-bit: codes 0..255, where a pair reaches 2 * 255 * 127 = 64770 and would saturate. With
 *   w = q - 128 (q ^ 0x80 read as signed, -128..127): q * a = w * a + 128 * a, and
 *   w * a = |w| * (a * sign(w)). vpabsb(w) is |w| in 0..128 as an unsigned byte (|-128| is 0x80,
 *   128 read unsigned); vpsignb(a, w) is a * sign(w) in -127..127 (negating a never overflows as
 *   a != -128; w = 0 gives 0, and w * a = 0 there). Pairs are then at most 2 * 128 * 127 = 32512:
 *   exact, widened per word. The 128 * a terms sum to 128 * (the block's sum of codes), which the
 *   quantizer hands over exactly (bs) and which starts the int32 sum: the block's total is
 *   sum q * a, the same integer vpdpbusd gives. (Signing the weights and taking |a| instead
 *   would fail: vpsignb leaves -128 negated as -128.) */
#define I4_RUN 4
#define I8_SUMS(MT, U, BITS)                                                                   \
    const __m256i ones = _mm256_set1_epi16(1);                                                 \
    if (BITS == 4) {                                                                           \
        const __m256i nib = _mm256_set1_epi32(0x0f0f0f0f);                                     \
        for (int m = 0; m < MT; m++)                                                           \
            for (int u = 0; u < U; u++) ia[m][u] = _mm256_setzero_si256();                     \
        for (int64_t r0 = b * wpb; r0 < (b + 1) * wpb; r0 += I4_RUN) {                         \
            const int64_t r1 = r0 + I4_RUN < (b + 1) * wpb ? r0 + I4_RUN : (b + 1) * wpb;      \
            __m256i p[MT][U];                                                                  \
            for (int m = 0; m < MT; m++)                                                       \
                for (int u = 0; u < U; u++) p[m][u] = _mm256_setzero_si256();                  \
            for (int64_t r = r0; r < r1; r++) {                                                \
                const int8_t *xr = xq + r * PER;                                               \
                const int32_t *wr = qw + r * N + n0;                                           \
                __m256i lo[U], hi[U];                                                          \
                for (int u = 0; u < U; u++) {                                                  \
                    const __m256i w = _mm256_loadu_si256((const __m256i *)(wr + u * RL));      \
                    lo[u] = _mm256_and_si256(w, nib);                                          \
                    hi[u] = _mm256_and_si256(_mm256_srli_epi32(w, 4), nib);                    \
                }                                                                              \
                for (int m = 0; m < MT; m++) {                                                 \
                    int32_t e, o;                                                              \
                    memcpy(&e, xr + m * K, 4);                                                 \
                    memcpy(&o, xr + m * K + 4, 4);                                             \
                    const __m256i xe = _mm256_set1_epi32(e), xo = _mm256_set1_epi32(o);        \
                    for (int u = 0; u < U; u++)                                                \
                        p[m][u] = _mm256_add_epi16(                                            \
                            p[m][u], _mm256_add_epi16(_mm256_maddubs_epi16(lo[u], xe),         \
                                                      _mm256_maddubs_epi16(hi[u], xo)));       \
                }                                                                              \
            }                                                                                  \
            for (int m = 0; m < MT; m++)                                                       \
                for (int u = 0; u < U; u++)                                                    \
                    ia[m][u] = _mm256_add_epi32(ia[m][u], _mm256_madd_epi16(p[m][u], ones));   \
        }                                                                                      \
    } else {                                                                                   \
        const __m256i flip = _mm256_set1_epi8((char)0x80);                                     \
        for (int m = 0; m < MT; m++) {                                                         \
            const __m256i c = _mm256_set1_epi32(128 * bs[m * B + b]);                          \
            for (int u = 0; u < U; u++) ia[m][u] = c;                                          \
        }                                                                                      \
        for (int64_t r = b * wpb; r < (b + 1) * wpb; r++) {                                    \
            const int8_t *xr = xq + r * PER;                                                   \
            const int32_t *wr = qw + r * N + n0;                                               \
            __m256i wa[U], ws[U];                                                              \
            for (int u = 0; u < U; u++) {                                                      \
                ws[u] = _mm256_xor_si256(                                                      \
                    _mm256_loadu_si256((const __m256i *)(wr + u * RL)), flip);                 \
                wa[u] = _mm256_abs_epi8(ws[u]);                                                \
            }                                                                                  \
            for (int m = 0; m < MT; m++) {                                                     \
                int32_t e;                                                                     \
                memcpy(&e, xr + m * K, 4);                                                     \
                const __m256i xe = _mm256_set1_epi32(e);                                       \
                for (int u = 0; u < U; u++)                                                    \
                    ia[m][u] = _mm256_add_epi32(                                               \
                        ia[m][u], _mm256_madd_epi16(                                           \
                                      _mm256_maddubs_epi16(wa[u], _mm256_sign_epi8(xe, ws[u])), \
                                      ones));                                                  \
            }                                                                                  \
        }                                                                                      \
    }
#endif

typedef void (*i8_tile_fn)(const int8_t *, int64_t, const float *, const int32_t *, int64_t,
                           const float *, int64_t, int64_t, int64_t, const int32_t *, int64_t,
                           const void *, const void *, int, int64_t, int64_t, int64_t, int,
                           float *, int64_t);

/* MT rows x NV vectors from column n0, over groups [g0, g1): out = (add ? out : 0) + the sum.
 * xq/d/bs/xz/out point at the tile's first row; bpg blocks per group, wpb words per block. */
#define DEFINE_I8_TILE(MT, NV, BITS)                                                           \
    static void i8tile_##MT##_##NV##_##BITS(                                                   \
        const int8_t *xq, int64_t K, const float *d, const int32_t *bs, int64_t B,             \
        const float *xz, int64_t G, int64_t bpg, int64_t wpb, const int32_t *qw, int64_t N,    \
        const void *sc, const void *zr, int dt, int64_t n0, int64_t g0, int64_t g1, int add,   \
        float *out, int64_t ldo) {                                                             \
        enum { PER = 32 / BITS, U = NV * RV };                                                 \
        (void)bs;                                                                              \
        vf acc[MT][U];                                                                         \
        for (int m = 0; m < MT; m++)                                                           \
            for (int u = 0; u < U; u++)                                                        \
                acc[m][u] = add ? f_load(out + m * ldo + n0 + u * RL) : f_zero();              \
        for (int64_t g = g0; g < g1; g++) {                                                    \
            vf s[U];                                                                           \
            for (int v = 0; v < NV; v++) f_params(s + v * RV, sc, dt, g * N + n0 + v * VW);    \
            for (int64_t b = g * bpg; b < (g + 1) * bpg; b++) {                                \
                vi ia[MT][U];                                                                  \
                I8_SUMS(MT, U, BITS)                                                           \
                for (int m = 0; m < MT; m++) {                                                 \
                    const vf dm = f_set1(d[m * B + b]);                                        \
                    for (int u = 0; u < U; u++)                                                \
                        acc[m][u] = f_fmadd(f_mul(s[u], dm), f_cvt(ia[m][u]), acc[m][u]);      \
                }                                                                              \
            }                                                                                  \
            for (int v = 0; v < NV; v++) {                                                     \
                vf z[RV];                                                                      \
                f_params(z, zr, dt, g * N + n0 + v * VW);                                      \
                for (int h = 0; h < RV; h++) {                                                 \
                    const vf sz = f_mul(s[v * RV + h], z[h]);                                  \
                    for (int m = 0; m < MT; m++)                                               \
                        acc[m][v * RV + h] =                                                   \
                            f_fnmadd(sz, f_set1(xz[m * G + g]), acc[m][v * RV + h]);           \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int m = 0; m < MT; m++)                                                           \
            for (int u = 0; u < U; u++) f_store(out + m * ldo + n0 + u * RL, acc[m][u]);       \
    }

#define DEFINE_I8_ROWS(MT)                                                                     \
    DEFINE_I8_TILE(MT, 1, 4) DEFINE_I8_TILE(MT, 1, 8)                                          \
    DEFINE_I8_TILE(MT, 2, 4) DEFINE_I8_TILE(MT, 2, 8)                                          \
    DEFINE_I8_TILE(MT, 4, 4) DEFINE_I8_TILE(MT, 4, 8)
DEFINE_I8_ROWS(1) DEFINE_I8_ROWS(2) DEFINE_I8_ROWS(3) DEFINE_I8_ROWS(4)
DEFINE_I8_ROWS(5) DEFINE_I8_ROWS(6) DEFINE_I8_ROWS(7) DEFINE_I8_ROWS(8)

#define I8_ROW_ENTRY(MT)                                                                       \
    {{i8tile_##MT##_1_4, i8tile_##MT##_2_4, NULL, i8tile_##MT##_4_4},                          \
     {i8tile_##MT##_1_8, i8tile_##MT##_2_8, NULL, i8tile_##MT##_4_8}}
/* [rows - 1][bits == 8][vectors - 1] */
static const i8_tile_fn I8_TILES[I8_MAX_ROWS][2][4] = {
    I8_ROW_ENTRY(1), I8_ROW_ENTRY(2), I8_ROW_ENTRY(3), I8_ROW_ENTRY(4),
    I8_ROW_ENTRY(5), I8_ROW_ENTRY(6), I8_ROW_ENTRY(7), I8_ROW_ENTRY(8)};

typedef struct {
    const int8_t *xq;
    const float *d, *xz;
    const int32_t *bs; /* the blocks' sums of codes (AVX2 8-bit only, else NULL) */
    int64_t M, K, B, G, bpg, wpb;
    int bits8, tile_rows, panel;
    int64_t chunk; /* groups per pass over the columns */
} i8_problem;

/* Vectors [v0, v1) of a weight of N columns (row stride N) into out (row stride ldo): passes
 * over `chunk` groups at a time (few rows: streams the weight along its rows, as the fused fp32
 * kernel does; many rows: one pass, so each panel's weights are reused by every row tile). */
static void i8_columns(const i8_problem *p, const int32_t *qw, int64_t N, const void *sc,
                       const void *zr, int dt, int64_t v0, int64_t v1, float *out, int64_t ldo) {
    for (int64_t g0 = 0; g0 < p->G; g0 += p->chunk) {
        const int64_t g1 = g0 + p->chunk < p->G ? g0 + p->chunk : p->G;
        for (int64_t v = v0; v < v1; v += p->panel) {
            const int64_t nv = v1 - v < p->panel ? v1 - v : p->panel;
            for (int64_t m0 = 0; m0 < p->M; m0 += p->tile_rows) {
                const int64_t rows = p->M - m0 < p->tile_rows ? p->M - m0 : p->tile_rows;
                const i8_tile_fn wide = I8_TILES[rows - 1][p->bits8][p->panel - 1];
                const i8_tile_fn one = I8_TILES[rows - 1][p->bits8][0];
                const int8_t *xq = p->xq + m0 * p->K;
                const float *d = p->d + m0 * p->B, *xz = p->xz + m0 * p->G;
                const int32_t *bs = p->bs ? p->bs + m0 * p->B : NULL;
                float *o = out + m0 * ldo;
                if (nv == p->panel) {
                    wide(xq, p->K, d, bs, p->B, xz, p->G, p->bpg, p->wpb, qw, N, sc, zr, dt, v * VW,
                         g0, g1, g0 > 0, o, ldo);
                } else {
                    for (int64_t u = v; u < v + nv; u++)
                        one(xq, p->K, d, bs, p->B, xz, p->G, p->bpg, p->wpb, qw, N, sc, zr, dt,
                            u * VW, g0, g1, g0 > 0, o, ldo);
                }
            }
        }
    }
}

/* The columns [n0, N) (fewer than 16): copied zero-padded to 16 columns in fp32 parameters. */
static int i8_tail(const i8_problem *p, const int32_t *qw, int64_t N, const void *sc,
                   const void *zr, int dt, int64_t n0, float *out) {
    const int64_t R = p->B * p->wpb, cols = N - n0;
    int32_t *w = calloc((size_t)(R * VW), sizeof *w);
    float *s = calloc((size_t)(p->G * VW), sizeof *s), *z = calloc((size_t)(p->G * VW), sizeof *z);
    float *o = malloc(sizeof *o * (size_t)(p->M * VW));
    const int ok = w && s && z && o;
    if (ok) {
        for (int64_t r = 0; r < R; r++) memcpy(w + r * VW, qw + r * N + n0, 4 * (size_t)cols);
        for (int64_t g = 0; g < p->G; g++)
            for (int64_t j = 0; j < cols; j++) {
                s[g * VW + j] = load_param1(sc, dt, g * N + n0 + j);
                z[g * VW + j] = load_param1(zr, dt, g * N + n0 + j);
            }
        i8_columns(p, w, VW, s, z, DT_F32, 0, 1, o, VW);
        for (int64_t m = 0; m < p->M; m++) memcpy(out + m * N + n0, o + m * VW, 4 * (size_t)cols);
    }
    free(w);
    free(s);
    free(z);
    free(o);
    return ok ? 0 : -1;
}

#endif /* I8_ISA */

/* y[M, N] = x[M, K] @ w through int8 activations. tile_rows (1-8) rows and panel (1, 2 or 4)
 * vectors per register tile, `chunk` groups per pass over the columns. Returns 0; -1 for
 * unsupported arguments or no memory; -2 when this build has no int8 kernel (neither VNNI nor
 * AVX2). */
int sgl_quant_gemm_i8(const float *x, int64_t M, int64_t K, const int32_t *qw, const void *sc,
                      const void *zr, int dt, int64_t N, int bits, int64_t group, int64_t block,
                      float *out, int tile_rows, int panel, int64_t chunk, int num_threads) {
#if !I8_ISA
    (void)x; (void)M; (void)K; (void)qw; (void)sc; (void)zr; (void)dt; (void)N; (void)bits;
    (void)group; (void)block; (void)out; (void)tile_rows; (void)panel; (void)chunk;
    (void)num_threads;
    return -2;
#else
    if (M < 1 || N < 1 || bad_args(K, bits, group, block) || tile_rows < 1 ||
        tile_rows > I8_MAX_ROWS || (panel != 1 && panel != 2 && panel != 4) || chunk < 1)
        return -1;
    const int64_t B = K / block, G = K / group;
    int8_t *xq = malloc((size_t)(M * K));
    float *d = malloc(sizeof(float) * (size_t)(M * B)), *xz = malloc(sizeof(float) * (size_t)(M * G));
    /* Only AVX2's 8-bit sums need the blocks' integer sums of codes (I8_SUMS). */
    const int need_bs = I8_ISA == 1 && bits == 8;
    int32_t *bs = need_bs ? malloc(sizeof(int32_t) * (size_t)(M * B)) : NULL;
    int rc = -1;
    if (xq && d && xz && (bs || !need_bs) &&
        !quantize_rows(x, M, K, block, group, bits, xq, d, xz, bs, num_threads)) {
        const i8_problem p = {xq, d, xz, bs, M, K, B, G, group / block, block * bits / 32,
                              bits == 8, tile_rows, panel, chunk};
        const int64_t nvec = N / VW;
        rc = 0;
        if (nvec > 0) {
            const int nt = threads_for(num_threads, (nvec + panel - 1) / panel);
#pragma omp parallel num_threads(nt)
            {
                const int t = team_rank(), T = team_size();
                /* Whole panels per thread, so that only the last range ends in a partial one. */
                const int64_t panels = (nvec + panel - 1) / panel;
                int64_t v0 = panels * t / T * panel, v1 = panels * (t + 1) / T * panel;
                v1 = v1 < nvec ? v1 : nvec;
                if (v0 < v1) i8_columns(&p, qw, N, sc, zr, dt, v0, v1, out, N);
            }
        }
        if (nvec * VW < N) rc = i8_tail(&p, qw, N, sc, zr, dt, nvec * VW, out);
    }
    free(xq);
    free(d);
    free(xz);
    free(bs);
    return rc;
#endif
}
