/* A C model of the llvm backend's exact fused attention (kernelc/backends/llvm/fused_attention.py)
   at D = E = 64 on one thread: the same panels, tiles, 4-row micro-blocks, lazily moved reference
   and exp, written with AVX-512 intrinsics, to tell the blocking's cost from the code generator's
   (docs/ARCHITECTURE.md, exact attention). Prints the best of 7 calls at n x n.

       gcc -O3 -march=native tools/attention_model.c -o /tmp/attention_model -lm && /tmp/attention_model 4096
       (-DROWS=6 -DPANEL=252: another micro-block; -DNO_EXP: the weights without their exp; a second
       argument of 1 to 16 starts v that many floats past a 64-byte boundary: rows across lines)

   -DAMX_SCORES (add -mamx-tile -mamx-bf16): the scores on the AMX tile unit instead, exactly enough
   to stand in for f32: each value split into three bf16 parts (hi + mid + lo represent it
   exactly), six of the nine part products summed per component (the three dropped are below
   2^-23 of |x_d y_d|), small products first into a zeroed f32 tile, so that the score's error
   stays near the f32 dot product's D u sum |x_d y_d|. Scores of 32 rows x 64 keys per step
   group, issued among the previous group's numerator FMAs (every EVERY keys, default 16).
   Measured at 4096 (2026-11-27, same minutes): 33.1-33.4 ms against 29.0-29.3 ms with FMAs, both
   with a largest error of 4.6e-7: the tile unit does not overlap the vector code enough here.
   Each variant prints its largest error against a float64 evaluation of sampled rows.
*/
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#define D 64
#define E 64
#define TILE 64
#ifndef PANEL
#define PANEL 256
#endif
#ifndef ROWS
#define ROWS 4
#endif
#define H 8.0f /* HEADROOM */
#ifdef AMX_SCORES
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>
#ifndef EVERY
#define EVERY 16
#endif
#if PANEL % 32 || 32 % ROWS
#error "AMX_SCORES computes the scores of 32-row groups: PANEL a multiple of 32, ROWS a divisor of 32"
#endif
#define K6 (6*D) /* split components per row */
#define CHUNKS (K6/32) /* 32-deep tile products per score tile */
static uint16_t bf16(float f){ uint32_t u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return u >> 16; }
static float f32(uint16_t h){ uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
/* rows: parts lo, mid, hi, mid, hi, hi of x against hi, mid, lo, hi, mid, hi of y */
static const int XPART[6] = {2, 1, 0, 1, 0, 0}, YPART[6] = {0, 1, 2, 0, 1, 0};
static uint16_t *xs, *ys; /* x split row-major (A tiles); y split per 16 keys as pair-interleaved B tiles */
static void split(float a, uint16_t part[3]){
  part[0] = bf16(a); float rest = a - f32(part[0]); part[1] = bf16(rest); part[2] = bf16(rest - f32(part[1]));
}
static void pack_split(const float* x, const float* yp, int n, int m){
  xs = aligned_alloc(64, (size_t)(n + 32) * K6 * 2); memset(xs, 0, (size_t)(n + 32) * K6 * 2);
  size_t mp = (size_t)(m + 63) / 64 * 64; ys = aligned_alloc(64, mp * K6 * 2); memset(ys, 0, mp * K6 * 2);
  for (int i = 0; i < n; i++) for (int d = 0; d < D; d++) { uint16_t part[3]; split(x[(size_t)i*D + d], part);
    for (int s = 0; s < 6; s++) xs[(size_t)i*K6 + s*D + d] = part[XPART[s]]; }
  for (int j = 0; j < m; j++) for (int d = 0; d < D; d++) { uint16_t part[3];
    split(yp[((size_t)(j/16)*D + d)*16 + j%16], part);
    for (int s = 0; s < 6; s++) { int a = s*D + d;
      ys[(((size_t)(j/16)*CHUNKS + a/32)*16 + (a%32)/2)*32 + (j%16)*2 + a%2] = part[YPART[s]]; } }
}
/* the scores of 32 rows x 64 keys (S, rows of 64) in 26 steps: per 32 keys, 12 chunks of 2 x 2
   tile products, then the stores */
static struct { int step, q, j0; float* s; } pending = {-1};
static void scores_start(int q, int j0, float* s){ pending.step = 0; pending.q = q; pending.j0 = j0; pending.s = s; }
static inline void scores_step(void){
  if (pending.step < 0) return;
  int half = pending.step / (CHUNKS + 1), c = pending.step % (CHUNKS + 1);
  const uint16_t* xa = xs + (size_t)pending.q * K6;
  const uint16_t* ya = ys + (size_t)((pending.j0 + 32*half) / 16) * CHUNKS * 512;
  float* s = pending.s + 32*half;
  if (c == 0) { _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); }
  if (c < CHUNKS) {
    _tile_loadd(4, xa + c*32, K6*2); _tile_loadd(5, xa + 16*K6 + c*32, K6*2);
    _tile_loadd(6, ya + c*512, 64); _tile_loadd(7, ya + CHUNKS*512 + c*512, 64);
    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
  } else {
    _tile_stored(0, s, 256); _tile_stored(1, s + 16, 256); _tile_stored(2, s + 16*64, 256); _tile_stored(3, s + 16*64 + 16, 256);
  }
  if (++pending.step == 2 * (CHUNKS + 1)) pending.step = -1;
}
static void scores_finish(void){ while (pending.step >= 0) scores_step(); }
#endif
/* kernelc's exact f32 exp (ops.poly_exp): Cody-Waite reduction, 1 + r + r^2 q(r), vscalefps */
static inline __m512 exp_ps(__m512 x){
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
  __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f));
  __m512i ki = _mm512_cvtps_epi32(t); __m512 k = _mm512_cvtepi32_ps(ki);
  __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693359375f), x);
  r = _mm512_fmadd_ps(k, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(0.001381461275741458f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.008368710055947304f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.04166838899254799f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.1666652113199234f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.4999999403953552f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
#ifdef NO_EXP
  return x; /* the weights' cost without their exp */
#endif
  return _mm512_scalef_ps(p, k);
}
static void run(const float* x, const float* yp, const float* v, float* out, int n, int m, float c){
  static float sums[(PANEL+ROWS)*16] __attribute__((aligned(64)));
  static float nums[(PANEL+ROWS)*E] __attribute__((aligned(64)));
  static float ref[PANEL+ROWS];
  float w[ROWS*TILE] __attribute__((aligned(64)));
  __m512 cv = _mm512_set1_ps(c);
#ifdef AMX_SCORES
  static float S[2][32*64] __attribute__((aligned(64))); /* two groups' scores: one read, one written */
#endif
  for (int p0 = 0; p0 < n; p0 += PANEL) {
    int p1 = p0 + PANEL < n ? p0 + PANEL : n;
    for (int s = 0; s < PANEL + ROWS; s++) {
      ref[s] = -INFINITY; memset(sums + s*16, 0, 64); memset(nums + s*E, 0, E*4);
    }
    for (int j0 = 0; j0 < m; j0 += TILE) {
#ifndef AMX_SCORES
      const float* yt = yp + (size_t)(j0/16) * D * 16;
#endif
      for (int q0 = p0; q0 < p1; q0 += ROWS) {
        const float* xr[ROWS]; int slot[ROWS];
        for (int r = 0; r < ROWS; r++) {
          int row = q0 + r < p1 ? q0 + r : p1 - 1;
          xr[r] = x + (size_t)row * D; slot[r] = q0 - p0 + r;
        }
        (void)xr;
        __m512 acc[ROWS][4];
#ifdef AMX_SCORES
        float* sc = S[((q0 - p0) >> 5) & 1];
        if (((q0 - p0) & 31) == 0) { /* this group's scores are done (or, first, computed now); start the next's */
          scores_finish();
          if (q0 == p0) { scores_start(q0, j0, sc); scores_finish(); }
          if (q0 + 32 < p1) scores_start(q0 + 32, j0, S[(((q0 - p0) >> 5) + 1) & 1]);
        }
        for (int r = 0; r < ROWS; r++) for (int p = 0; p < 4; p++)
          acc[r][p] = _mm512_load_ps(sc + ((q0 - p0 + r) & 31)*64 + p*16);
#else
        for (int r = 0; r < ROWS; r++) for (int p = 0; p < 4; p++) acc[r][p] = _mm512_setzero_ps();
        for (int d = 0; d < D; d++) {
          __m512 y0 = _mm512_load_ps(yt + (0*D + d)*16), y1 = _mm512_load_ps(yt + (1*D + d)*16);
          __m512 y2 = _mm512_load_ps(yt + (2*D + d)*16), y3 = _mm512_load_ps(yt + (3*D + d)*16);
          for (int r = 0; r < ROWS; r++) { __m512 xb = _mm512_set1_ps(xr[r][d]);
            acc[r][0] = _mm512_fmadd_ps(xb, y0, acc[r][0]); acc[r][1] = _mm512_fmadd_ps(xb, y1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(xb, y2, acc[r][2]); acc[r][3] = _mm512_fmadd_ps(xb, y3, acc[r][3]); }
        }
#endif
        float alpha[ROWS];
        for (int r = 0; r < ROWS; r++) {
          __m512 s[4]; for (int p = 0; p < 4; p++) s[p] = _mm512_mul_ps(acc[r][p], cv);
          float old = ref[slot[r]];
          __m512 lim = _mm512_set1_ps(old + H);
          __mmask16 over = _mm512_cmp_ps_mask(s[0], lim, _CMP_GT_OQ) | _mm512_cmp_ps_mask(s[1], lim, _CMP_GT_OQ) |
                           _mm512_cmp_ps_mask(s[2], lim, _CMP_GT_OQ) | _mm512_cmp_ps_mask(s[3], lim, _CMP_GT_OQ);
          alpha[r] = 1.f;
          if (__builtin_expect(over != 0, 0)) {
            float nw = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(s[0], s[1]), _mm512_max_ps(s[2], s[3])));
            ref[slot[r]] = nw; alpha[r] = expf(old - nw);
          }
          float rf = ref[slot[r]]; __m512 rv = _mm512_set1_ps(rf);
          __m512 tot = _mm512_mul_ps(_mm512_load_ps(sums + slot[r]*16), _mm512_set1_ps(alpha[r]));
          for (int p = 0; p < 4; p++) {
            __m512 wv = exp_ps(_mm512_sub_ps(s[p], rv));
            _mm512_store_ps(w + r*TILE + p*16, wv); tot = _mm512_add_ps(tot, wv);
          }
          _mm512_store_ps(sums + slot[r]*16, tot);
        }
        __m512 na[ROWS][4];
        for (int r = 0; r < ROWS; r++) for (int e = 0; e < 4; e++) na[r][e] = _mm512_setzero_ps();
        int keys = m - j0 < TILE ? m - j0 : TILE;
        for (int k = 0; k < keys; k++) {
#ifdef AMX_SCORES
          if (k % EVERY == 0) scores_step(); /* the next rows' tile products among the FMAs */
#endif
          const float* vr = v + (size_t)(j0 + k) * E;
          __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
          __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
          for (int r = 0; r < ROWS; r++) { __m512 wb = _mm512_set1_ps(w[r*TILE + k]);
            na[r][0] = _mm512_fmadd_ps(wb, v0, na[r][0]); na[r][1] = _mm512_fmadd_ps(wb, v1, na[r][1]);
            na[r][2] = _mm512_fmadd_ps(wb, v2, na[r][2]); na[r][3] = _mm512_fmadd_ps(wb, v3, na[r][3]); }
        }
        for (int r = 0; r < ROWS; r++) { __m512 a = _mm512_set1_ps(alpha[r]);
          for (int e = 0; e < 4; e++) {
            float* at = nums + slot[r]*E + e*16;
            _mm512_store_ps(at, _mm512_fmadd_ps(_mm512_load_ps(at), a, na[r][e]));
          } }
      }
    }
    for (int row = p0; row < p1; row++) { int s = row - p0; float t = _mm512_reduce_add_ps(_mm512_load_ps(sums + s*16));
      for (int e = 0; e < E; e++) out[(size_t)row*E + e] = nums[s*E + e] / t; }
  }
}
/* max over sampled rows and e of |out - exact| / max |exact|, the exact output in float64 */
static double largest_error(const float* x, const float* yp, const float* v, const float* out, int n, int m, double c){
  double* w = malloc(sizeof(double) * m); double worst = 0, top = 0;
  for (int i = 0; i < n; i += 97) {
    double mx = -INFINITY, total = 0;
    for (int j = 0; j < m; j++) { double s = 0;
      for (int d = 0; d < D; d++) s += (double)x[(size_t)i*D + d] * yp[((size_t)(j/16)*D + d)*16 + j%16];
      w[j] = s * c; mx = w[j] > mx ? w[j] : mx; }
    for (int j = 0; j < m; j++) { w[j] = exp(w[j] - mx); total += w[j]; }
    for (int e = 0; e < E; e++) { double a = 0;
      for (int j = 0; j < m; j++) a += w[j] * v[(size_t)j*E + e];
      a /= total; worst = fmax(worst, fabs(a - out[(size_t)i*E + e])); top = fmax(top, fabs(a)); }
  }
  free(w);
  return worst / top;
}
int main(int argc, char** argv){
  int n = argc > 1 ? atoi(argv[1]) : 4096, m = n;
  float* x = aligned_alloc(64, (size_t)n*D*4); float* v = aligned_alloc(64, (size_t)m*E*4 + 64);
  float* yp = aligned_alloc(64, (size_t)((m+63)/64*64)*D*4); float* out = aligned_alloc(64, (size_t)n*E*4);
  srand(1); for (size_t i = 0; i < (size_t)n*D; i++) x[i] = rand()/(float)RAND_MAX*0.3f;
  for (size_t i = 0; i < (size_t)m*E; i++) v[i] = rand()/(float)RAND_MAX;
  memset(yp, 0, (size_t)((m+63)/64*64)*D*4);
  for (int j = 0; j < m; j++) for (int d = 0; d < D; d++) yp[((size_t)(j/16)*D + d)*16 + j%16] = rand()/(float)RAND_MAX;
#ifdef AMX_SCORES
  struct { uint8_t palette, start, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } __attribute__((packed)) cfg = {1};
  for (int t = 0; t < 8; t++) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
  if (syscall(158, 0x1023, 18)) { puts("the OS refused the AMX tile state"); return 1; } /* ARCH_REQ_XCOMP_PERM */
  _tile_loadconfig(&cfg);
  pack_split(x, yp, n, m);
#endif
  double best = 1e9;
  for (int rep = 0; rep < 7; rep++) { struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    run(x, yp, v + (argc > 2 ? atoi(argv[2]) : 0), out, n, m, 0.125f); clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec-t0.tv_sec)+1e-9*(t1.tv_nsec-t0.tv_nsec); if (s < best) best = s; }
#ifdef AMX_SCORES
  const char* scores = "scores on AMX tiles";
#else
  const char* scores = "scores by FMAs";
#endif
  printf("C model ROWS=%d PANEL=%d, %s: %.1f ms  %.0f GFLOP/s (1 thread)  largest error %.1e\n", ROWS, PANEL, scores,
         best*1e3, 2.0*n*m*(D+E)/best/1e9, largest_error(x, yp, v + (argc > 2 ? atoi(argv[2]) : 0), out, n, m, 0.125));
}
