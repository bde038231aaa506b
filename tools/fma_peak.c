/* The f32 FMA peak of this machine at the widest vectors it has: 12 independent chains of
   vfmadd per thread (4 cycles of latency x 2 FMA pipes = 8 needed), on 1 thread and on all.
   ../shared/cpu-anchor/peak.c measures 256-bit FMAs; on an AVX-512 host the llvm backend's
   code runs 512-bit ones, twice the flops per instruction, and this is the bar for it (the
   exact attention kernel's 128 FMAs per pair at D = E = 64, README).

       gcc -O2 -march=native -fopenmp tools/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
*/
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define FIRST(v) _mm512_cvtss_f32(v)
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define FIRST(v) _mm256_cvtss_f32(v)
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float chains(long iterations) {
    /* twelve named accumulators (an array indexed in a loop is kept in memory at -O2) */
    vec m = SET1(0.999999f), c = SET1(1e-7f);
    vec a0 = SET1(1), a1 = SET1(2), a2 = SET1(3), a3 = SET1(4), a4 = SET1(5), a5 = SET1(6);
    vec a6 = SET1(7), a7 = SET1(8), a8 = SET1(9), a9 = SET1(10), a10 = SET1(11), a11 = SET1(12);
    for (long k = 0; k < iterations; k++) {
        a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);
        a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);
        a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);
    }
    return FIRST(a0) + FIRST(a1) + FIRST(a2) + FIRST(a3) + FIRST(a4) + FIRST(a5) + FIRST(a6) + FIRST(a7)
        + FIRST(a8) + FIRST(a9) + FIRST(a10) + FIRST(a11);
}

static double gflops(int threads, long iterations) {
    float sink = 0;
    double t = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += chains(iterations);
    t = now() - t;
    if (sink == 42.0f) printf(" ");  /* keeps the chains alive */
    return threads * iterations * 12.0 * LANES * 2 / t / 1e9;
}

int main(void) {
    long iterations = 100000000;
    int all = omp_get_max_threads();
    gflops(1, iterations / 10);  /* warm-up: clocks up */
    printf("%d-bit f32 FMA: %.0f GFLOP/s on 1 thread, %.0f on %d\n", LANES * 32, gflops(1, iterations),
           gflops(all, iterations), all);
    return 0;
}
