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

/* Time `iters` iterations of DP on accumulators 0-3 (A in tile 4, B in tiles
 * B0..B3) in chunks of at most 2^20, zeroing the accumulators before and checking
 * every element against WANT(m) after each chunk of m; counts wrong elements in
 * `bad`. */
#define RUN_CHUNKS(DP, B0, B1, B2, B3, WANT)                                  \
    t[0] = now_s();                                                           \
    for (uint64_t done = 0; done < iters;) {                                  \
        uint64_t m = iters - done < (1u << 20) ? iters - done : (1u << 20);   \
        _tile_zero(0);                                                        \
        _tile_zero(1);                                                        \
        _tile_zero(2);                                                        \
        _tile_zero(3);                                                        \
        for (uint64_t k = 0; k < m; k++) {                                    \
            DP(0, 4, B0);                                                     \
            DP(1, 4, B1);                                                     \
            DP(2, 4, B2);                                                     \
            DP(3, 4, B3);                                                     \
        }                                                                     \
        _tile_stored(0, c[0], 64);                                            \
        _tile_stored(1, c[1], 64);                                            \
        _tile_stored(2, c[2], 64);                                            \
        _tile_stored(3, c[3], 64);                                            \
        for (int e = 0; e < 4 * 256; e++) bad += c[e / 256][e % 256] != WANT(m); \
        done += m;                                                            \
    }                                                                         \
    t[1] = now_s();                                                           \
    _tile_release();                                                          \
    return bad;

#define BF16_WANT(m) (16.0f * (float)(m))
#define INT8_WANT(m) (192 * (int32_t)(m))

/* 4 x tdpbf16ps = 4 x 16 x 16 x 32 x 2 = 65536 FLOP per iteration. Per chunk of m
 * iterations every accumulator element is m x 32 x (1 x 0.5) = 16m, exact for
 * m <= 2^20. */
__attribute__((target("amx-tile,amx-bf16")))
uint64_t flopcal_ref_amx_bf16(uint64_t iters, double *t) {
    _Alignas(64) uint16_t a[16 * 32], b[3][16 * 32];
    _Alignas(64) float c[4][16 * 16];
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
    RUN_CHUNKS(_tile_dpbf16ps, 5, 6, 7, 5, BF16_WANT)
}

/* 4 x tdpbssd = 4 x 16 x 16 x 64 x 2 = 131072 ops per iteration. Per chunk of m
 * iterations every element is m x 64 x (1 x 3) = 192m, exact in int32 for
 * m <= 2^20. */
__attribute__((target("amx-tile,amx-int8")))
uint64_t flopcal_ref_amx_int8(uint64_t iters, double *t) {
    _Alignas(64) int8_t a[16 * 64], b[16 * 64];
    _Alignas(64) int32_t c[4][16 * 16];
    struct tilecfg cfg;
    uint64_t bad = 0;
    memset(a, 1, sizeof a);
    memset(b, 3, sizeof b);
    config(&cfg);
    _tile_loadconfig(&cfg);
    _tile_loadd(4, a, 64);
    _tile_loadd(5, b, 64);
    RUN_CHUNKS(_tile_dpbssd, 5, 5, 5, 5, INT8_WANT)
}
