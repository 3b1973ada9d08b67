/* What the CPU kernels' C files share: 16-lane vector types (GCC/clang vector extensions: one
 * zmm with AVX-512, two ymm with AVX2), scale/zero dtype codes and their loads. */

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
typedef uint16_t v16u16 __attribute__((vector_size(32)));
typedef uint32_t v16u32 __attribute__((vector_size(64)));

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

static inline v16f load_f(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
static inline void store_f(float *p, v16f v) { memcpy(p, &v, sizeof v); }
static inline v16i load_i(const int32_t *p) { v16i v; memcpy(&v, p, sizeof v); return v; }

static inline v16f load_param(const void *base, int dt, int64_t i) {
    if (dt == DT_F32) return load_f((const float *)base + i);
    v16u16 h;
    memcpy(&h, (const uint16_t *)base + i, sizeof h);
    if (dt == DT_BF16) return (v16f)(__builtin_convertvector(h, v16u32) << 16);
#ifdef __FLT16_MAX__
    typedef _Float16 v16h __attribute__((vector_size(32)));
    v16h f;
    memcpy(&f, &h, sizeof f);
    return __builtin_convertvector(f, v16f);
#else
    v16f out;
    for (int j = 0; j < VW; j++) out[j] = half_to_float(h[j]);
    return out;
#endif
}

static inline int threads_for(int requested, int64_t work_items) {
    int t = requested > 0 ? requested : 1;
    if (work_items < t) t = work_items > 0 ? (int)work_items : 1;
    return t;
}

#endif
