/*
 * Independent C reference for flopcal's FMA peak measurement.
 *
 * Written separately from the Rust kernels (different accumulator count, different
 * constants, timing taken here with clock_gettime around the loop) so that a
 * systematic error in flopcal's microkernel or its timing shows up as a ratio far
 * from 1. Each function is compiled for its ISA with a target attribute, so this
 * object links into any x86-64 binary; the Rust side calls a function only after
 * detecting the feature at run time.
 *
 * Each call runs `iters` iterations of x = x*m + c on every accumulator (a
 * contraction towards c/(1-m) for 0 < m < 1), writes the sum of all lanes of all
 * accumulators to *out, and writes the CLOCK_MONOTONIC times (seconds) just before
 * and just after the loop to t[0] and t[1]. The caller takes, over its threads, the
 * earliest start to the latest end: threads that did not actually overlap (a busy
 * machine) cannot then inflate the total.
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdint.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define REP16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) \
                 X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define REP10(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)

/* 16 accumulators x 16 lanes x 2 FLOP = 512 FLOP per iteration. */
__attribute__((target("avx512f")))
void flopcal_ref_avx512_f32(uint64_t iters, float m, float c, float *out, double *t) {
    const __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
#define DECL(i) __m512 x##i = _mm512_set1_ps((float)(i) * 0.125f);
    REP16(DECL)
#undef DECL
    t[0] = now_s();
    for (uint64_t k = 0; k < iters; k++) {
#define STEP(i) x##i = _mm512_fmadd_ps(x##i, vm, vc);
        REP16(STEP)
#undef STEP
    }
    t[1] = now_s();
    __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, x##i);
    REP16(SUM)
#undef SUM
    *out = _mm512_reduce_add_ps(s);
}

/* 16 accumulators x 8 lanes x 2 FLOP = 256 FLOP per iteration. */
__attribute__((target("avx512f")))
void flopcal_ref_avx512_f64(uint64_t iters, double m, double c, double *out, double *t) {
    const __m512d vm = _mm512_set1_pd(m), vc = _mm512_set1_pd(c);
#define DECL(i) __m512d x##i = _mm512_set1_pd((double)(i) * 0.125);
    REP16(DECL)
#undef DECL
    t[0] = now_s();
    for (uint64_t k = 0; k < iters; k++) {
#define STEP(i) x##i = _mm512_fmadd_pd(x##i, vm, vc);
        REP16(STEP)
#undef STEP
    }
    t[1] = now_s();
    __m512d s = _mm512_setzero_pd();
#define SUM(i) s = _mm512_add_pd(s, x##i);
    REP16(SUM)
#undef SUM
    *out = _mm512_reduce_add_pd(s);
}

/* 10 accumulators (16 ymm registers) x 8 lanes x 2 FLOP = 160 FLOP per iteration. */
__attribute__((target("avx2,fma")))
void flopcal_ref_avx2_f32(uint64_t iters, float m, float c, float *out, double *t) {
    const __m256 vm = _mm256_set1_ps(m), vc = _mm256_set1_ps(c);
#define DECL(i) __m256 x##i = _mm256_set1_ps((float)(i) * 0.125f);
    REP10(DECL)
#undef DECL
    t[0] = now_s();
    for (uint64_t k = 0; k < iters; k++) {
#define STEP(i) x##i = _mm256_fmadd_ps(x##i, vm, vc);
        REP10(STEP)
#undef STEP
    }
    t[1] = now_s();
    __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, x##i);
    REP10(SUM)
#undef SUM
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float total = 0.0f;
    for (int i = 0; i < 8; i++) total += lanes[i];
    *out = total;
}
