/*
 * Independent C reference for flopcal's AMX peak measurement (tdpbf16ps, tdpbssd),
 * written with GCC's AMX intrinsics rather than inline assembly, with its own
 * operands (every A element 1, every B element 1/2 for bf16 or 3 for int8), its own
 * tile arrangement (one A tile, up to three B tiles, four accumulators), its own chunking
 * and its own clock (CLOCK_MONOTONIC around the whole loop). Compiled with target
 * attributes, so the object links into any x86-64 binary; the Rust side calls it
 * only after CPUID, XCR0 and arch_prctl have allowed AMX.
 *
 * Each call runs `iters` iterations of four dot products on four accumulator tiles,
 * in chunks that keep every sum exact, checks every accumulator element against
 * the closed form after each chunk, writes the times before and after to t[0] and
 * t[1], and returns the number of wrong elements (0 when all were right).
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static void config(struct tilecfg *c) {
    memset(c, 0, sizeof *c);
    c->palette = 1;
    for (int i = 0; i < 8; i++) {
        c->colsb[i] = 64;
        c->rows[i] = 16;
    }
}

/* 4 x tdpbf16ps = 4 x 16 x 16 x 32 x 2 = 65536 FLOP per iteration. Per chunk of m
 * iterations every accumulator element is m x 32 x (1 x 0.5) = 16m, exact for
 * m <= 2^20. */
__attribute__((target("amx-tile,amx-bf16")))
uint64_t flopcal_ref_amx_bf16(uint64_t iters, double *t) {
    _Alignas(64) uint16_t a[16 * 32], b[3][16 * 32];
    _Alignas(64) float c[16 * 16];
    struct tilecfg cfg;
    uint64_t bad = 0;
    for (int i = 0; i < 16 * 32; i++) {
        a[i] = 0x3F80; /* 1.0 */
        for (int j = 0; j < 3; j++) b[j][i] = 0x3F00; /* 0.5 */
    }
    config(&cfg);
    _tile_loadconfig(&cfg);
    _tile_loadd(4, a, 64);
    _tile_loadd(5, b[0], 64);
    _tile_loadd(6, b[1], 64);
    _tile_loadd(7, b[2], 64);
    t[0] = now_s();
    for (uint64_t done = 0; done < iters;) {
        uint64_t m = iters - done < (1u << 20) ? iters - done : (1u << 20);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (uint64_t k = 0; k < m; k++) {
            _tile_dpbf16ps(0, 4, 5);
            _tile_dpbf16ps(1, 4, 6);
            _tile_dpbf16ps(2, 4, 7);
            _tile_dpbf16ps(3, 4, 5);
        }
#define CHECK(T)                                                   \
        _tile_stored(T, c, 64);                                    \
        for (int e = 0; e < 256; e++) bad += c[e] != 16.0f * (float)m;
        CHECK(0) CHECK(1) CHECK(2) CHECK(3)
#undef CHECK
        done += m;
    }
    t[1] = now_s();
    _tile_release();
    return bad;
}

/* 4 x tdpbssd = 4 x 16 x 16 x 64 x 2 = 131072 ops per iteration. Per chunk of m
 * iterations every element is m x 64 x (1 x 3) = 192m, exact in int32 for
 * m <= 2^20. */
__attribute__((target("amx-tile,amx-int8")))
uint64_t flopcal_ref_amx_int8(uint64_t iters, double *t) {
    _Alignas(64) int8_t a[16 * 64], b[16 * 64];
    _Alignas(64) int32_t c[16 * 16];
    struct tilecfg cfg;
    uint64_t bad = 0;
    memset(a, 1, sizeof a);
    memset(b, 3, sizeof b);
    config(&cfg);
    _tile_loadconfig(&cfg);
    _tile_loadd(4, a, 64);
    _tile_loadd(5, b, 64);
    t[0] = now_s();
    for (uint64_t done = 0; done < iters;) {
        uint64_t m = iters - done < (1u << 20) ? iters - done : (1u << 20);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (uint64_t k = 0; k < m; k++) {
            _tile_dpbssd(0, 4, 5);
            _tile_dpbssd(1, 4, 5);
            _tile_dpbssd(2, 4, 5);
            _tile_dpbssd(3, 4, 5);
        }
#define CHECK(T)                                                   \
        _tile_stored(T, c, 64);                                    \
        for (int e = 0; e < 256; e++) bad += c[e] != 192 * (int32_t)m;
        CHECK(0) CHECK(1) CHECK(2) CHECK(3)
#undef CHECK
        done += m;
    }
    t[1] = now_s();
    _tile_release();
    return bad;
}
