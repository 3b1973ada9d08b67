/* Shared-prefix tiles for sgl_paged_attention (paged_attention.c).
 *
 * Requests that share a cached prompt prefix (the radix cache hands them the same pool slots)
 * attend to the same keys, but a work item per (token, KV head) streams those keys again for
 * every token, for only G query rows. Here consecutive query tokens whose req_to_token rows
 * hold the same slots over a range of keys form one tile of n <= VW / G tokens, and that range
 * is computed once for all n * G <= 16 query rows; each token then goes on alone over its other
 * keys from the state left here (the online softmax does not care about key order). The range
 * lies in every token's visible keys: it ends at the tile's shortest kv_len (so the causal
 * tokens of one extend share their request's row up to the earliest of them) and, with a
 * sliding window, starts at the latest window start.
 *
 * The tile keeps its query rows in the lanes of a vector (the transpose of the per-token
 * kernel's layout): a score is a broadcast key feature times a vector of the rows' features,
 * the softmax max and sum are lane-wise, and a value feature scales the vector of the rows'
 * weights. Every key and value element is loaded once for the whole tile, and there are no
 * horizontal reductions.
 */

#include "attention_common.h"

/* Shorter shared ranges are not worth the tile's set-up (transposing q, handing state back). */
#define MIN_SHARED (2 * BLK)
#define QK_KEYS 8 /* keys scored at once: one accumulator and one pointer register each */
/* Value features per pass of the P.V loop: 8 accumulators, a weight and a value in registers
 * (16 features, as with v16f, spilled AVX2's 16 ymm). */
#define PV_FEATS 8

/* First index in [from, to) where the two rows of slots differ, else `to`. */
static int64_t same_until(const int64_t *a, const int64_t *b, int64_t from, int64_t to) {
    if (a[from] != b[from]) return from; /* rows of their own: no call */
    if (a == b || memcmp(a + from, b + from, sizeof(int64_t) * (size_t)(to - from)) == 0)
        return to;
    while (a[from] == b[from]) from++;
    return from;
}

/* Greedy over consecutive tokens: a token joins the tile while the keys the tile shares still
 * save at least as many key loads ((n - 1) * shared) as before it joined. Without a window
 * the shared range is a common prefix; with one it is the part of that prefix every token's
 * window covers. */
int64_t sgl_attn_plan_tiles(const int64_t *req_to_token, int64_t table_stride,
                            const int64_t *rows, const int64_t *kv_lens, int64_t T, int G,
                            int64_t window, attn_tile *tiles, int32_t *tile_of) {
    const int max_n = G <= VW ? VW / G : 1;
    int64_t count = 0;
    for (int64_t t = 0; t < T;) {
        const int64_t *first = req_to_token + rows[t] * table_stride;
        int64_t lo = window > 0 && kv_lens[t] > window ? kv_lens[t] - window : 0;
        int64_t hi = kv_lens[t];
        int n = 1;
        for (; n < max_n && t + n < T; n++) {
            const int64_t u = t + n, end = kv_lens[u];
            const int64_t start = window > 0 && end > window ? end - window : 0;
            const int64_t new_lo = start > lo ? start : lo;
            int64_t new_hi = end < hi ? end : hi;
            if (new_hi - new_lo < MIN_SHARED) break;
            new_hi = same_until(first, req_to_token + rows[u] * table_stride, new_lo, new_hi);
            const int64_t saved = n == 1 ? 0 : (int64_t)(n - 1) * (hi - lo);
            if (new_hi - new_lo < MIN_SHARED || (int64_t)n * (new_hi - new_lo) < saved) break;
            lo = new_lo;
            hi = new_hi;
        }
        for (int i = 0; i < n; i++) tile_of[t + i] = n > 1 ? (int32_t)count : -1;
        if (n > 1) tiles[count++] = (attn_tile){t, lo, hi, n};
        t += n;
    }
    return count;
}

/* With AVX2 a tile of 9-16 rows is two native vectors. The loops below take both at once, so
 * each key or value element loaded (a broadcast) feeds two fused multiply-adds: 6 loads per 8
 * FMAs where one vector at a time takes 9 (Zen 2 loads two per cycle). Each lane still does
 * the same operations in the same order as the one-vector loops, so the same bits. */
#define QK2_KEYS 4
#define PV2_FEATS 4

/* Scores of keys [0, nbr) (nbr a multiple of QK2_KEYS) into p, rows in two native vectors. */
static inline __attribute__((always_inline)) void qk_two(const float *qt, const float *const *kp,
                                                         int nbr, const int D, float scale,
                                                         float *p) {
    for (int jg = 0; jg < nbr; jg += QK2_KEYS) {
        vnf a0[QK2_KEYS], a1[QK2_KEYS];
        for (int i = 0; i < QK2_KEYS; i++) a0[i] = a1[i] = (vnf){0};
        for (int c = 0; c < D; c += VW) {
            vnf p0[QK2_KEYS], p1[QK2_KEYS];
            for (int i = 0; i < QK2_KEYS; i++) p0[i] = p1[i] = (vnf){0};
#pragma GCC unroll 16
            for (int d = c; d < c + VW; d++) {
                const vnf q0 = load_nf(qt + d * VW), q1 = load_nf(qt + d * VW + NL);
                for (int i = 0; i < QK2_KEYS; i++) {
                    const float kd = kp[jg + i][d];
                    p0[i] += kd * q0;
                    p1[i] += kd * q1;
                }
            }
            for (int i = 0; i < QK2_KEYS; i++) {
                a0[i] += p0[i];
                a1[i] += p1[i];
            }
        }
        for (int i = 0; i < QK2_KEYS; i++) {
            store_nf(p + (jg + i) * VW, a0[i] * scale);
            store_nf(p + (jg + i) * VW + NL, a1[i] * scale);
        }
    }
}

/* acc = acc * alpha + the weights p of keys [0, nbr) times their values, two native vectors. */
static inline __attribute__((always_inline)) void pv_two(const float *p, const float *const *vp,
                                                         int nbr, const int D,
                                                         const float *alpha_f, float *acc) {
    const vnf al0 = load_nf(alpha_f), al1 = load_nf(alpha_f + NL);
#pragma GCC unroll 16
    for (int c = 0; c < D; c += PV2_FEATS) {
        vnf o0[PV2_FEATS], o1[PV2_FEATS];
        for (int u = 0; u < PV2_FEATS; u++) {
            o0[u] = load_nf(acc + (c + u) * VW) * al0;
            o1[u] = load_nf(acc + (c + u) * VW + NL) * al1;
        }
        for (int j = 0; j < nbr; j++) {
            const vnf w0 = load_nf(p + j * VW), w1 = load_nf(p + j * VW + NL);
            const float *v = vp[j] + c;
            for (int u = 0; u < PV2_FEATS; u++) {
                o0[u] += v[u] * w0;
                o1[u] += v[u] * w1;
            }
        }
        for (int u = 0; u < PV2_FEATS; u++) {
            store_nf(acc + (c + u) * VW, o0[u]);
            store_nf(acc + (c + u) * VW + NL, o1[u]);
        }
    }
}

/* Keys [lo, hi) of `slots` for the n * G query rows of a tile (q: its first token's G heads of
 * this KV head), into the tile state `st` (STATE_FLOATS(D) floats). D is a compile-time
 * constant in the specialised copies below. */
static inline __attribute__((always_inline)) void shared_keys(
    const float *q, int64_t q_tok_stride, int n, int G, const float *kb, const float *vb,
    int64_t kv_stride, const int64_t *slots, int64_t lo, int64_t hi, const int D, float scale,
    float cap, float *st) {
    float qt[MAX_D * VW] __attribute__((aligned(64)));
    float p[BLK * VW] __attribute__((aligned(64))); /* key j's scores, then weights, at j * VW */
    const float *kp[BLK], *vp[BLK];
    const int rows = n * G;
    /* Native vectors that hold rows: lanes past them are never read back, so with AVX2 a tile
     * of up to 8 rows skips the upper half. */
    const int lane_vecs = (rows + NL - 1) / NL;
    /* AVX2 with 9-16 rows: both native vectors through qk_two / pv_two together. */
    const int two_vecs = VW / NL == 2 && lane_vecs == 2;
    memset(qt, 0, sizeof(float) * (size_t)(D * VW)); /* unused lanes: finite, never read back */
    memset(p, 0, sizeof p); /* lanes past lane_vecs are never written: zero scores */
    for (int r = 0; r < rows; r++) {
        const float *qr = q + (r / G) * q_tok_stride + (r % G) * D;
        for (int d = 0; d < D; d++) qt[d * VW + r] = qr[d];
    }
    float *acc = st; /* feature d of every row at acc[d * VW] */
    memset(acc, 0, sizeof(float) * (size_t)(D * VW));
    /* Running max and sum of every row (lanes past the rows: never read back). */
    float m[VW] __attribute__((aligned(64))), l[VW] __attribute__((aligned(64)));
    for (int r = 0; r < VW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    float alpha_f[VW] __attribute__((aligned(64)));
    for (int64_t j0 = lo; j0 < hi; j0 += BLK) {
        const int nb = hi - j0 < BLK ? (int)(hi - j0) : BLK;
        const int nbr = (nb + QK_KEYS - 1) / QK_KEYS * QK_KEYS;
        for (int j = 0; j < nbr; j++) { /* past nb: any valid row, its weight zeroed below */
            const int64_t slot = slots[j0 + (j < nb ? j : 0)];
            kp[j] = kb + slot * kv_stride;
            vp[j] = vb + slot * kv_stride;
        }
        if (two_vecs)
            qk_two(qt, kp, nbr, D, scale, p);
        else
            for (int jg = 0; jg < nbr; jg += QK_KEYS)
            for (int h = 0; h < lane_vecs; h++) { /* the rows' lanes, one native vector each */
                /* Sums of VW products, then their sum: one chain over all D products would
                 * round the scores several times worse than the per-token kernel's
                 * reduction tree. */
                vnf a[QK_KEYS];
                for (int i = 0; i < QK_KEYS; i++) a[i] = (vnf){0};
                for (int c = 0; c < D; c += VW) {
                    vnf part[QK_KEYS];
                    for (int i = 0; i < QK_KEYS; i++) part[i] = (vnf){0};
#pragma GCC unroll 16
                    for (int d = c; d < c + VW; d++) {
                        const vnf qd = load_nf(qt + d * VW + h * NL);
                        for (int i = 0; i < QK_KEYS; i++) part[i] += kp[jg + i][d] * qd;
                    }
                    for (int i = 0; i < QK_KEYS; i++) a[i] += part[i];
                }
                for (int i = 0; i < QK_KEYS; i++)
                    store_nf(p + (jg + i) * VW + h * NL, a[i] * scale);
            }
        if (cap > 0.0f)
            for (int e = 0; e < nb * VW; e++) p[e] = cap * tanhf(p[e] / cap);
        /* The online softmax, lane-wise on the rows' native vectors only. */
        for (int h = 0; h < lane_vecs; h++) {
            float *ph = p + h * NL;
            vnf bm = load_nf(ph);
            for (int j = 1; j < nb; j++) bm = vmax_n(bm, load_nf(ph + j * VW));
            const vnf mo = load_nf(m + h * NL), mn = vmax_n(mo, bm);
            const vnf alpha = vexp_n(mo - mn); /* 0 on the first block: m is -inf */
            vnf sum = (vnf){0};
            for (int j = 0; j < nb; j++) {
                const vnf w = vexp_n(load_nf(ph + j * VW) - mn);
                store_nf(ph + j * VW, w);
                sum += w;
            }
            for (int j = nb; j < nbr; j++) store_nf(ph + j * VW, (vnf){0});
            store_nf(m + h * NL, mn);
            store_nf(l + h * NL, load_nf(l + h * NL) * alpha + sum);
            store_nf(alpha_f + h * NL, alpha);
        }
        if (two_vecs) {
            pv_two(p, vp, nbr, D, alpha_f, acc);
            continue;
        }
        for (int h = 0; h < lane_vecs; h++) {
            const vnf ah = load_nf(alpha_f + h * NL);
            /* Unrolled so that a value's features are constant offsets from its row pointer. */
#pragma GCC unroll 16
            for (int c = 0; c < D; c += PV_FEATS) { /* PV_FEATS features, in registers */
                vnf o[PV_FEATS];
                for (int u = 0; u < PV_FEATS; u++) o[u] = load_nf(acc + (c + u) * VW + h * NL) * ah;
                for (int j = 0; j < nbr; j++) {
                    const vnf w = load_nf(p + j * VW + h * NL);
                    const float *v = vp[j] + c;
                    for (int u = 0; u < PV_FEATS; u++) o[u] += v[u] * w;
                }
                for (int u = 0; u < PV_FEATS; u++) store_nf(acc + (c + u) * VW + h * NL, o[u]);
            }
        }
    }
    memcpy(STATE_M(st, D), m, sizeof m);
    memcpy(STATE_L(st, D), l, sizeof l);
}

/* head_dim 64 and 128 with the feature loops unrolled; any other multiple of 16 as it comes. */
static void shared_64(const float *q, int64_t qs, int n, int G, const float *kb, const float *vb,
                      int64_t kvs, const int64_t *slots, int64_t lo, int64_t hi, float scale,
                      float cap, float *st) {
    shared_keys(q, qs, n, G, kb, vb, kvs, slots, lo, hi, 64, scale, cap, st);
}

static void shared_128(const float *q, int64_t qs, int n, int G, const float *kb, const float *vb,
                       int64_t kvs, const int64_t *slots, int64_t lo, int64_t hi, float scale,
                       float cap, float *st) {
    shared_keys(q, qs, n, G, kb, vb, kvs, slots, lo, hi, 128, scale, cap, st);
}

void sgl_attn_shared_keys(const float *q, int64_t q_tok_stride, int n, int G, int D,
                          const float *kb, const float *vb, int64_t kv_stride,
                          const int64_t *slots, int64_t lo, int64_t hi, float scale, float cap,
                          float *st) {
    if (D == 64)
        shared_64(q, q_tok_stride, n, G, kb, vb, kv_stride, slots, lo, hi, scale, cap, st);
    else if (D == 128)
        shared_128(q, q_tok_stride, n, G, kb, vb, kv_stride, slots, lo, hi, scale, cap, st);
    else
        shared_keys(q, q_tok_stride, n, G, kb, vb, kv_stride, slots, lo, hi, D, scale, cap, st);
}
