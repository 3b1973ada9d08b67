/* What the CPU kernels' C files share: 16-lane vector types (GCC/clang vector extensions: one
 * zmm with AVX-512, two ymm with AVX2), the native one-register vectors, scale/zero dtype codes
 * and their loads. */

#ifndef SGL_QUANT_COMMON_H
#define SGL_QUANT_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define VW 16 /* columns per vector */

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400u)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float load_param1(const void *base, int dt, int64_t i) {
    if (dt == DT_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    if (dt == DT_BF16) {
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    return half_to_float(h);
}

#ifdef __F16C__
#include <immintrin.h>
#endif

/* The native vector: NL lanes, one register (a zmm with AVX-512, else a ymm). The fused
 * kernel's blocks (quant_gemm.c) work on these rather than on the 16-lane v16f: without AVX-512, GCC lowers a
 * 64-byte vector into ymm halves poorly (a scalar times a v16f went through 16 scalar stores to
 * the stack, and the accumulators through memory on every word row: on Zen 2 one row ran
 * 4-5x slower than F.linear on the float weight). Each lane does the same operations in the
 * same order as with v16f, so the results are the same bits. */
#ifdef __AVX512F__
#define NL 16
#else
#define NL 8
#endif
#define SUB (VW / NL) /* native vectors per 16-column vector */
typedef float vnf __attribute__((vector_size(NL * 4)));
typedef int32_t vni __attribute__((vector_size(NL * 4)));
typedef uint16_t vnu16 __attribute__((vector_size(NL * 2)));
typedef uint32_t vnu32 __attribute__((vector_size(NL * 4)));

static inline vnf load_nf(const float *p) { vnf v; memcpy(&v, p, sizeof v); return v; }
static inline void store_nf(float *p, vnf v) { memcpy(p, &v, sizeof v); }
static inline vnu32 load_nu(const int32_t *p) { vnu32 v; memcpy(&v, p, sizeof v); return v; }

/* NL scales or zeros from i, in fp32 (bf16 and fp16 widen exactly: the same values either
 * way the conversion is done). */
static inline vnf load_param_n(const void *base, int dt, int64_t i) {
    if (dt == DT_F32) return load_nf((const float *)base + i);
    vnu16 h;
    memcpy(&h, (const uint16_t *)base + i, sizeof h);
    if (dt == DT_BF16) return (vnf)(__builtin_convertvector(h, vnu32) << 16);
#if defined(__F16C__) && NL == 8
    /* GCC 12 converts a vector of _Float16 one lane at a time (16 vcvtph2ps and inserts per
     * ymm: fp16 scales made one row 1.3x slower on Zen 2); F16C does the 8 lanes at once. */
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
#elif defined(__FLT16_MAX__)
    typedef _Float16 vnh __attribute__((vector_size(NL * 2)));
    vnh f;
    memcpy(&f, &h, sizeof f);
    return __builtin_convertvector(f, vnf);
#else
    vnf out;
    for (int j = 0; j < NL; j++) out[j] = half_to_float(h[j]);
    return out;
#endif
}

static inline int threads_for(int requested, int64_t work_items) {
    int t = requested > 0 ? requested : 1;
    if (work_items < t) t = work_items > 0 ? (int)work_items : 1;
    return t;
}

/* This thread's rank in its OpenMP team and the team's size (0 and 1 when built without
 * OpenMP). */
static inline int team_rank(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

#endif
