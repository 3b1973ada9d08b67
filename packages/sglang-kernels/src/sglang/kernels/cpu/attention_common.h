/* What the CPU attention C files share: 16-lane float vectors (GCC/clang vector extensions:
 * one zmm with AVX-512, two ymm with AVX2), the vector exp of the online softmax, and the
 * shared-prefix tiles of paged_attention_shared.c that paged_attention.c schedules. */

#ifndef SGL_ATTENTION_COMMON_H
#define SGL_ATTENTION_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define VW 16     /* floats per vector */
#define BLK 32    /* keys per softmax block */
#define MAX_D 256 /* head_dim bound (stack accumulators) */
#define MAX_G 16  /* query heads per KV head bound */

#define HIDDEN __attribute__((visibility("hidden")))

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* The native vector: NL lanes in one register (a zmm with AVX-512, else a ymm). Without
 * AVX-512, GCC keeps a v16f accumulator that is updated in a loop in memory, moved through xmm
 * halves on every update (the attention's P.V loop: three quarters of a decode step's attention
 * time on Zen 2); loops written on these keep it in registers. Each lane does the same
 * operations either way, so the bits do not change. */
#ifdef __AVX512F__
#define NL 16
#else
#define NL 8
#endif
typedef float vnf __attribute__((vector_size(NL * 4)));

static inline vnf load_nf(const float *p) {
    vnf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store_nf(float *p, vnf v) { memcpy(p, &v, sizeof v); }

static inline v16f vload(const float *p) {
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, v16f v) { memcpy(p, &v, sizeof v); }

static inline v16f vsplat(float x) {
    return (v16f){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}

/* Max and exp on native vectors (8 lanes on AVX2, 16 on AVX-512). 16-lane versions on v16f
 * were slower on AVX2: GCC lowered their integer lanes (compare masks, exponent bits) through
 * xmm halves and the stack, which in the shared-prefix tiles' softmax cost more than the QK
 * and P.V loops together (Zen 2, perf). */
typedef int32_t vni_a __attribute__((vector_size(NL * 4)));

static inline vnf vsplat_n(float x) { return (vnf){0} + x; }

static inline vnf vmax_n(vnf a, vnf b) {
    const vni_a a_wins = a > b;
    return (vnf)(((vni_a)a & a_wins) | ((vni_a)b & ~a_wins));
}

/* exp(x) for x <= 0 (scores minus their running max): Cephes' expf polynomial after the
 * reduction x = n ln2 + r, |r| <= ln2 / 2; relative error ~1e-7. Lanes below -87.3 (and -inf)
 * give 0. */
static inline vnf vexp_n(vnf x) {
    const vnf lo = vsplat_n(-87.33654f);
    vni_a small = x < lo;
    x = (vnf)(((vni_a)x & ~small) | ((vni_a)lo & small));
    const vnf magic = vsplat_n(12582912.0f); /* 1.5 * 2^23: round to nearest */
    vnf n = (x * vsplat_n(1.44269504088896341f) + magic) - magic;
    vnf r = x - n * vsplat_n(0.693359375f) - n * vsplat_n(-2.12194440e-4f);
    vnf p = vsplat_n(1.9875691500e-4f);
    p = p * r + vsplat_n(1.3981999507e-3f);
    p = p * r + vsplat_n(8.3334519073e-3f);
    p = p * r + vsplat_n(4.1665795894e-2f);
    p = p * r + vsplat_n(1.6666665459e-1f);
    p = p * r + vsplat_n(5.0000001201e-1f);
    p = p * r * r + r + vsplat_n(1.0f);
    vni_a bits = (__builtin_convertvector(n, vni_a) + 127) << 23;
    vnf out = p * (vnf)bits;
    return (vnf)((vni_a)out & ~small);
}

/* Consecutive query tokens [t0, t0 + n), n >= 2, whose keys [lo, hi) are the same pool slots
 * and lie in every one's visible range. */
typedef struct {
    int64_t t0, lo, hi;
    int n;
} attn_tile;

/* A tile's softmax state after its shared keys, per KV head: STATE_FLOATS(D) floats, one lane
 * per query row (row i * G + g is head g of token t0 + i): the accumulators, feature d of every
 * row at acc[d * VW], then the running max and the running sum of every row. */
#define STATE_FLOATS(D) ((D) * VW + 2 * VW)
#define STATE_M(st, D) ((st) + (D) * VW)
#define STATE_L(st, D) ((st) + (D) * VW + VW)

/* Fills tiles (room for T / 2 + 1) and tile_of[t] (the tile of token t, or -1); returns the
 * number of tiles. */
HIDDEN int64_t sgl_attn_plan_tiles(const int64_t *req_to_token, int64_t table_stride,
                                   const int64_t *rows, const int64_t *kv_lens, int64_t T, int G,
                                   int64_t window, attn_tile *tiles, int32_t *tile_of);

HIDDEN void sgl_attn_shared_keys(const float *q, int64_t q_tok_stride, int n, int G, int D,
                                 const float *kb, const float *vb, int64_t kv_stride,
                                 const int64_t *slots, int64_t lo, int64_t hi, float scale,
                                 float cap, float *st);

#endif
