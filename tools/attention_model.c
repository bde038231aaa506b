/* A C model of the llvm backend's exact fused attention (kernelc/backends/llvm/fused_attention.py)
   at D = E = 64 on one thread: the same panels, tiles, 4-row micro-blocks, lazily moved reference
   and exp, written with AVX-512 intrinsics, to tell the blocking's cost from the code generator's
   (docs/ARCHITECTURE.md, exact attention). Prints the best of 7 calls at n x n.

       gcc -O3 -march=native tools/attention_model.c -o /tmp/attention_model -lm && /tmp/attention_model 4096
       (-DROWS=6 -DPANEL=252: another micro-block; -DNO_EXP: the weights without their exp; a second
       argument of 1 to 16 starts v that many floats past a 64-byte boundary: rows across lines)
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
  for (int p0 = 0; p0 < n; p0 += PANEL) {
    int p1 = p0 + PANEL < n ? p0 + PANEL : n;
    for (int s = 0; s < PANEL + ROWS; s++) {
      ref[s] = -INFINITY; memset(sums + s*16, 0, 64); memset(nums + s*E, 0, E*4);
    }
    for (int j0 = 0; j0 < m; j0 += TILE) {
      const float* yt = yp + (size_t)(j0/16) * D * 16;
      for (int q0 = p0; q0 < p1; q0 += ROWS) {
        const float* xr[ROWS]; int slot[ROWS];
        for (int r = 0; r < ROWS; r++) {
          int row = q0 + r < p1 ? q0 + r : p1 - 1;
          xr[r] = x + (size_t)row * D; slot[r] = q0 - p0 + r;
        }
        __m512 acc[ROWS][4];
        for (int r = 0; r < ROWS; r++) for (int p = 0; p < 4; p++) acc[r][p] = _mm512_setzero_ps();
        for (int d = 0; d < D; d++) {
          __m512 y0 = _mm512_load_ps(yt + (0*D + d)*16), y1 = _mm512_load_ps(yt + (1*D + d)*16);
          __m512 y2 = _mm512_load_ps(yt + (2*D + d)*16), y3 = _mm512_load_ps(yt + (3*D + d)*16);
          for (int r = 0; r < ROWS; r++) { __m512 xb = _mm512_set1_ps(xr[r][d]);
            acc[r][0] = _mm512_fmadd_ps(xb, y0, acc[r][0]); acc[r][1] = _mm512_fmadd_ps(xb, y1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(xb, y2, acc[r][2]); acc[r][3] = _mm512_fmadd_ps(xb, y3, acc[r][3]); }
        }
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
int main(int argc, char** argv){
  int n = argc > 1 ? atoi(argv[1]) : 4096, m = n;
  float* x = aligned_alloc(64, (size_t)n*D*4); float* v = aligned_alloc(64, (size_t)m*E*4 + 64);
  float* yp = aligned_alloc(64, (size_t)((m+63)/64*64)*D*4); float* out = aligned_alloc(64, (size_t)n*E*4);
  srand(1); for (size_t i = 0; i < (size_t)n*D; i++) x[i] = rand()/(float)RAND_MAX*0.3f;
  for (size_t i = 0; i < (size_t)m*E; i++) v[i] = rand()/(float)RAND_MAX;
  memset(yp, 0, (size_t)((m+63)/64*64)*D*4);
  for (int j = 0; j < m; j++) for (int d = 0; d < D; d++) yp[((size_t)(j/16)*D + d)*16 + j%16] = rand()/(float)RAND_MAX;
  double best = 1e9;
  for (int rep = 0; rep < 7; rep++) { struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    run(x, yp, v + (argc > 2 ? atoi(argv[2]) : 0), out, n, m, 0.125f); clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec-t0.tv_sec)+1e-9*(t1.tv_nsec-t0.tv_nsec); if (s < best) best = s; }
  printf("C model ROWS=%d PANEL=%d: %.1f ms  %.0f GFLOP/s (1 thread)  out %g\n", ROWS, PANEL, best*1e3,
         2.0*n*m*(D+E)/best/1e9, out[5]);
}
