/* CPU attention over the token-level paged KV pool, and the rotary + KV write before it.
 *
 * sgl_paged_attention: every query token t attends to keys [start_t, kv_len_t) of its request's
 * row of req_to_token (start_t = max(0, kv_len_t - window) with a sliding window), read from the
 * pool in place: no gather, no padding, no mask. The G query heads sharing a KV head are
 * computed together, so each key and value row is loaded once for all of them. Softmax is
 * online over blocks of BLK keys (running max and sum, the accumulator rescaled when the max
 * grows), so no buffer grows with the sequence. Decode is one query per request; an extend
 * token at position p has kv_len p + 1 (causal).
 *
 * Consecutive tokens whose rows hold the same slots over a range of keys (a prompt prefix the
 * radix cache shares, or the earlier tokens of one extend) form a tile: that range is computed
 * once for all the tile's query rows (paged_attention_shared.c), and each token then goes on
 * alone over the rest of its keys from the softmax state the tile leaves. Work items are
 * (tile, KV head), then (token, KV head) as before tiles; a token in no tile starts afresh.
 *
 * sgl_rope_store_kv: rotates q in place and writes the rotated k and the v of every new token
 * into its pool slot (neox halves or GPT-J pairs, the first rot_dim features), with the same
 * float operations as the torch rotary (x1 * cos - x2 * sin, no fused multiply-add), so it is
 * bit for bit the torch path's.
 *
 * fp32 only; head_dim a multiple of 16 and at most MAX_D. Vectors are GCC/clang vector
 * extensions of 16 lanes (one zmm with AVX-512, two ymm with AVX2; attention_common.h). Built
 * with the other CPU kernels into one library by sglang.kernels.cpu.loader
 * (-O3 -march=native -fopenmp).
 */

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attention_common.h"

#define PARALLEL_MIN_TOKENS 256 /* rope_store_kv: fewer tokens run on the calling thread */
#define PV_VECS 8             /* paged_attention: native accumulators per P.V pass */
#define LOCAL_TILES 256         /* paged_attention: plans for up to this many tokens on the stack */

/* The sum of 32 scores as the earlier 16-lane code added them, on scalars: lane i of the two
 * halves ((0 + x[i]) + x[16 + i]), then lane i + lane i ^ 8, ^ 4, ^ 2, ^ 1 (each addition
 * commutes bit for bit, so only the tree matters: it keeps the kernel's bits). */
static inline float sum16(const float *x) {
    float t[VW];
    for (int i = 0; i < VW; i++) t[i] = (0.0f + x[i]) + x[VW + i];
    for (int w = VW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) t[i] = t[i] + t[i + w];
    return t[0];
}

/* Lane i of the result is the sum of the lanes of a[BITREV[i]]... that is, given the sixteen
 * partial-sum vectors of sixteen keys in bit-reversed order, one vector of their sixteen dot
 * products in key order: a transpose-and-add tree of 15 additions instead of 16 reductions. */
static const int BITREV[VW] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

static inline v16f reduce16(const v16f *a) {
    const v16i lo1 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const v16i hi1 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const v16i lo2 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
    const v16i hi2 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
    const v16i lo3 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
    const v16i hi3 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
    const v16i lo4 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
    const v16i hi4 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
    v16f b[8], c[4], d[2];
    for (int i = 0; i < 8; i++)
        b[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], lo1) +
               __builtin_shuffle(a[2 * i], a[2 * i + 1], hi1);
    for (int i = 0; i < 4; i++)
        c[i] = __builtin_shuffle(b[2 * i], b[2 * i + 1], lo2) +
               __builtin_shuffle(b[2 * i], b[2 * i + 1], hi2);
    for (int i = 0; i < 2; i++)
        d[i] = __builtin_shuffle(c[2 * i], c[2 * i + 1], lo3) +
               __builtin_shuffle(c[2 * i], c[2 * i + 1], hi3);
    return __builtin_shuffle(d[0], d[1], lo4) + __builtin_shuffle(d[0], d[1], hi4);
}

/* What a token takes over from its shared-prefix tile: keys [lo, hi) are already folded into
 * rows row0 .. row0 + G - 1 of the tile state `st`. */
typedef struct {
    const float *st;
    int64_t lo, hi;
    int row0;
} carry_in;

/* One (query token, KV head): G query heads of D features against keys [start, end) of `slots`
 * (less [lo, hi) when a tile has done those). D and G are compile-time constants in the
 * specialised copies below. Each block first takes the scores of every head (one head's query
 * in registers against the block's keys, which stay in L1), then folds them into the running
 * softmax, then adds the weighted values (one accumulator vector in a register against the
 * block's values). */
static inline __attribute__((always_inline)) void attend_one(
    const float *q, const float *kb, const float *vb, int64_t kv_stride, const int64_t *slots,
    int64_t start, int64_t end, const carry_in *carry, const int D, const int G,
    const int native_pv, float scale, float cap, float *out) {
    const int nv = D / VW;
    float acc[MAX_G * MAX_D] __attribute__((aligned(64)));
    float s[MAX_G][BLK] __attribute__((aligned(64)));
    float m[MAX_G], l[MAX_G];
    const float *kp[BLK], *vp[BLK];
    int64_t ranges[2][2] = {{start, end}, {end, end}}; /* [start, lo) and [hi, end) */
    if (carry) {
        const float *st = carry->st;
        for (int g = 0; g < G; g++) {
            const int r = carry->row0 + g;
            m[g] = STATE_M(st, D)[r];
            l[g] = STATE_L(st, D)[r];
            for (int c = 0; c < D; c++) acc[g * D + c] = st[c * VW + r];
        }
        ranges[0][1] = carry->lo;
        ranges[1][0] = carry->hi;
    } else {
        memset(acc, 0, sizeof(float) * (size_t)(G * D));
        for (int g = 0; g < G; g++) {
            m[g] = -INFINITY;
            l[g] = 0.0f;
        }
    }
    for (int part = 0; part < 2; part++) {
        const int64_t stop = ranges[part][1];
        for (int64_t j0 = ranges[part][0]; j0 < stop; j0 += BLK) {
            const int nb = stop - j0 < BLK ? (int)(stop - j0) : BLK;
            for (int j = 0; j < BLK; j++) { /* past nb: any valid row, masked out below */
                const int64_t slot = slots[j0 + (j < nb ? j : 0)];
                kp[j] = kb + slot * kv_stride;
                vp[j] = vb + slot * kv_stride;
            }
            for (int g = 0; g < G; g++) {
                v16f qg[MAX_D / VW];
                for (int c = 0; c < nv; c++) qg[c] = vload(q + g * D + c * VW);
                for (int jb = 0; jb < nb; jb += VW) {
                    v16f a[VW];
                    for (int i = 0; i < VW; i++) {
                        const float *k = kp[jb + BITREV[i]];
                        v16f d = qg[0] * vload(k);
                        for (int c = 1; c < nv; c++) d += qg[c] * vload(k + c * VW);
                        a[i] = d;
                    }
                    vstore(&s[g][jb], reduce16(a) * vsplat(scale));
                }
                if (cap > 0.0f)
                    for (int j = 0; j < nb; j++) s[g][j] = cap * tanhf(s[g][j] / cap);
                float bm = s[g][0];
                for (int j = 1; j < nb; j++) bm = s[g][j] > bm ? s[g][j] : bm;
                if (bm > m[g]) { /* the running max grows: rescale what is accumulated */
                    const float alpha = m[g] == -INFINITY ? 0.0f : expf(m[g] - bm);
                    l[g] *= alpha;
                    for (int c = 0; c < D; c++) acc[g * D + c] *= alpha;
                    m[g] = bm;
                }
                /* exp on native vectors (vexp_n), then the block's sum: lane i of two 16-key
                 * halves, then a tree over the 16 lanes (sum16). */
                const vnf mv = vsplat_n(m[g]);
                for (int jb = 0; jb < BLK; jb += NL)
                    store_nf(&s[g][jb], vexp_n(load_nf(&s[g][jb]) - mv));
                for (int j = nb; j < BLK; j++) s[g][j] = 0.0f;
                l[g] += sum16(s[g]);
            }
            /* acc += p . v, each lane's sum in key order. The specialised copies (native_pv)
             * keep up to PV_VECS native accumulators in registers per pass over the block's
             * values (D = 64: a head's whole row with AVX2): Zen 2, 64 decode tokens, 9 heads,
             * ~70 keys: 1.43 -> 0.37 ms, the same bits. The generic copy (a head_dim known
             * only at run time) keeps its v16f loop: there the native loop gave other bits
             * (GCC contracts that loop differently), and no common model takes it. */
            if (!native_pv) {
                for (int g = 0; g < G; g++)
                    for (int c = 0; c < nv; c++) {
                        v16f a = vload(&acc[g * D + c * VW]);
                        for (int j = 0; j < nb; j++) a += vsplat(s[g][j]) * vload(vp[j] + c * VW);
                        vstore(&acc[g * D + c * VW], a);
                    }
                continue;
            }
            for (int g = 0; g < G; g++)
                for (int c0 = 0; c0 < D / NL; c0 += PV_VECS) {
                    const int w = D / NL - c0 < PV_VECS ? D / NL - c0 : PV_VECS;
                    float *ag = acc + g * D + c0 * NL;
                    vnf a[PV_VECS];
                    for (int u = 0; u < w; u++) a[u] = load_nf(ag + u * NL);
                    for (int j = 0; j < nb; j++) {
                        const vnf p = (vnf){0} + s[g][j];
                        const float *v = vp[j] + c0 * NL;
                        for (int u = 0; u < w; u++) a[u] += p * load_nf(v + u * NL);
                    }
                    for (int u = 0; u < w; u++) store_nf(ag + u * NL, a[u]);
                }
        }
    }
    for (int g = 0; g < G; g++) {
        const v16f inv = vsplat(l[g] > 0.0f ? 1.0f / l[g] : 0.0f);
        for (int c = 0; c < nv; c++)
            vstore(out + g * D + c * VW, vload(&acc[g * D + c * VW]) * inv);
    }
}

typedef void (*attend_fn)(const float *, const float *, const float *, int64_t,
                          const int64_t *, int64_t, int64_t, const carry_in *, float, float,
                          float *);

#define ATTEND(DD, GG)                                                                        \
    static void attend_##DD##_##GG(const float *q, const float *kb, const float *vb,           \
                                   int64_t kvs, const int64_t *slots, int64_t start,           \
                                   int64_t end, const carry_in *carry, float scale, float cap, \
                                   float *out) {                                              \
        if (carry) /* a copy without the carry for tokens on their own */                    \
            attend_one(q, kb, vb, kvs, slots, start, end, carry, DD, GG, 1, scale, cap, out);    \
        else                                                                                  \
            attend_one(q, kb, vb, kvs, slots, start, end, NULL, DD, GG, 1, scale, cap, out);     \
    }
/* Specialised for the common shapes: head_dim 64/128 with 1-8 query heads per KV head. */
ATTEND(64, 1) ATTEND(64, 2) ATTEND(64, 3) ATTEND(64, 4) ATTEND(64, 5) ATTEND(64, 6)
ATTEND(64, 7) ATTEND(64, 8) ATTEND(128, 1) ATTEND(128, 2) ATTEND(128, 3) ATTEND(128, 4)
ATTEND(128, 5) ATTEND(128, 6) ATTEND(128, 7) ATTEND(128, 8)
static const attend_fn ATTEND_64[8] = {attend_64_1, attend_64_2, attend_64_3, attend_64_4,
                                       attend_64_5, attend_64_6, attend_64_7, attend_64_8};
static const attend_fn ATTEND_128[8] = {attend_128_1, attend_128_2, attend_128_3, attend_128_4,
                                        attend_128_5, attend_128_6, attend_128_7, attend_128_8};

static int threads_for(int requested, int64_t work_items) {
    int t = requested > 0 ? requested : 1;
    if (work_items < t) t = work_items > 0 ? (int)work_items : 1;
    return t;
}

/* q [T, H, D] (token stride q_tok_stride floats, heads contiguous), pools [slots, KVH, D]
 * contiguous, req_to_token rows of table_stride slots, rows/kv_lens [T]; out [T, H, D]
 * contiguous. window <= 0: no sliding window. Returns 0, or -1 for unsupported arguments.
 *
 * Two passes over work items: (tile, KV head) computes each tile's shared keys into its state
 * (paged_attention_shared.c), then (token, KV head) the rest of each token's keys, the order
 * before tiles: a token's own keys for all its KV heads lie in the same pool rows, so taking
 * them one after the other reads those rows while they are still in cache. */
int sgl_paged_attention(const float *q, int64_t q_tok_stride, const float *k_buf,
                        const float *v_buf, const int64_t *req_to_token, int64_t table_stride,
                        const int64_t *rows, const int64_t *kv_lens, int64_t T, int H, int KVH,
                        int D, int64_t window, float scale, float cap, float *out,
                        int num_threads) {
    if (T < 0 || H < 1 || KVH < 1 || H % KVH || D < VW || D % VW || D > MAX_D ||
        H / KVH > MAX_G)
        return -1;
    const int G = H / KVH;
    const int64_t kv_stride = (int64_t)KVH * D;
    attend_fn fn = NULL;
    if (G <= 8 && D == 64) fn = ATTEND_64[G - 1];
    if (G <= 8 && D == 128) fn = ATTEND_128[G - 1];
    /* Decode-sized plans on the stack. Without memory for a plan or the states, no tiles. */
    attn_tile local_tiles[LOCAL_TILES / 2 + 1];
    int32_t local_of[LOCAL_TILES];
    const int small = T <= LOCAL_TILES;
    attn_tile *tiles = small ? local_tiles : malloc(sizeof(attn_tile) * (size_t)(T / 2 + 1));
    int32_t *tile_of = small ? local_of : malloc(sizeof(int32_t) * (size_t)T);
    int64_t ntiles = tiles && tile_of ? sgl_attn_plan_tiles(req_to_token, table_stride, rows,
                                                            kv_lens, T, G, window, tiles,
                                                            tile_of)
                                      : 0;
    const int64_t state = STATE_FLOATS(D);
    float *states = NULL;
    if (ntiles && posix_memalign((void **)&states, 64, sizeof(float) * state * KVH * ntiles)) {
        states = NULL;
        ntiles = 0;
    }
    const int nt = threads_for(num_threads, T * KVH);
#pragma omp parallel num_threads(nt)
    {
        if (ntiles) {
            /* Head-major: the threads go through one KV head's tiles together, so the keys
             * and values they stream are that head's (a 600-key prefix: 300 KiB, within a
             * Zen 2 core's L2) rather than all heads' at once. Each item still writes its
             * own state, so the order changes no result. */
#pragma omp for schedule(dynamic, 1)
            for (int64_t item = 0; item < ntiles * KVH; item++) {
                const int64_t it = item % ntiles * KVH + item / ntiles; /* tile * KVH + head */
                const attn_tile tile = tiles[it / KVH];
                const int h = (int)(it % KVH);
                sgl_attn_shared_keys(q + tile.t0 * q_tok_stride + (int64_t)h * G * D,
                                     q_tok_stride, tile.n, G, D, k_buf + (int64_t)h * D,
                                     v_buf + (int64_t)h * D, kv_stride,
                                     req_to_token + rows[tile.t0] * table_stride, tile.lo,
                                     tile.hi, scale, cap, states + it * state);
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < T * KVH; it++) {
            const int64_t t = it / KVH;
            const int h = (int)(it % KVH);
            const int64_t end = kv_lens[t];
            const int64_t start = window > 0 && end > window ? end - window : 0;
            const int64_t *slots = req_to_token + rows[t] * table_stride;
            const float *qt = q + t * q_tok_stride + (int64_t)h * G * D;
            float *ot = out + (t * H + (int64_t)h * G) * D;
            const float *kb = k_buf + (int64_t)h * D, *vb = v_buf + (int64_t)h * D;
            const int32_t k = ntiles ? tile_of[t] : -1;
            carry_in carry = {NULL, 0, 0, 0};
            if (k >= 0)
                carry = (carry_in){states + (k * KVH + h) * state, tiles[k].lo, tiles[k].hi,
                                   (int)(t - tiles[k].t0) * G};
            const carry_in *from = k >= 0 ? &carry : NULL;
            if (fn)
                fn(qt, kb, vb, kv_stride, slots, start, end, from, scale, cap, ot);
            else
                attend_one(qt, kb, vb, kv_stride, slots, start, end, from, D, G, 0, scale, cap,
                           ot);
        }
    }
    free(states);
    if (!small) {
        free(tiles);
        free(tile_of);
    }
    return 0;
}

/* Rotary on q (in place) and k, and the K/V write: q [T, H, D] and k, v [T, KVH, D] with token
 * strides (heads contiguous), positions [T], cos/sin [max_pos, rot_dim / 2], pools
 * [slots, KVH, D] contiguous, loc [T]. Returns 0, or -1 for unsupported arguments. */
#if defined(__clang__)
#define NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define NO_CONTRACT
#endif
static void rotate(float *x, const float *c, const float *s, int half, int neox) {
    NO_CONTRACT
    if (neox) {
        for (int i = 0; i < half; i++) {
            const float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * c[i] - x2 * s[i];
            x[i + half] = x2 * c[i] + x1 * s[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            const float x1 = x[2 * i], x2 = x[2 * i + 1];
            x[2 * i] = x1 * c[i] - x2 * s[i];
            x[2 * i + 1] = x2 * c[i] + x1 * s[i];
        }
    }
}
#if !defined(__clang__)
#pragma GCC pop_options
#endif

int sgl_rope_store_kv(float *q, int64_t q_tok_stride, const float *k, int64_t k_tok_stride,
                      const float *v, int64_t v_tok_stride, const int64_t *positions,
                      const float *cos, const float *sin, int rot_dim, int neox, int64_t T,
                      int H, int KVH, int D, float *k_buf, float *v_buf, const int64_t *loc,
                      int num_threads) {
    if (T < 0 || H < 1 || KVH < 1 || D < 2 || rot_dim < 2 || rot_dim % 2 || rot_dim > D)
        return -1;
    const int half = rot_dim / 2;
    const int nt = threads_for(num_threads, T);
    /* A decode step's few tokens are microseconds of work: less than waking a worker. */
#pragma omp parallel for schedule(static) num_threads(nt) if (T >= PARALLEL_MIN_TOKENS)
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos + positions[t] * half, *s = sin + positions[t] * half;
        for (int h = 0; h < H; h++) rotate(q + t * q_tok_stride + (int64_t)h * D, c, s, half, neox);
        float *kd = k_buf + loc[t] * (int64_t)KVH * D, *vd = v_buf + loc[t] * (int64_t)KVH * D;
        memcpy(kd, k + t * k_tok_stride, sizeof(float) * (size_t)KVH * D);
        memcpy(vd, v + t * v_tok_stride, sizeof(float) * (size_t)KVH * D);
        for (int h = 0; h < KVH; h++) rotate(kd + (int64_t)h * D, c, s, half, neox);
    }
    return 0;
}
