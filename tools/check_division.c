/* Exhaustive check of the llvm backend's f32 division by a constant (ops.divide_by_constant):
   for every one of the 2**32 f32 values a, the sequence
       q0 = a * y   (y = RN(1/c))
       r  = fma(-q0, c, a)
       q  = (r is NaN or r == 0) ? q0 : fma(r, y, q0)
   must equal IEEE a / c bit for bit (any NaN for a NaN). ops.EXACT_DIVISORS_F32 lists the
   constants that pass; some do not (6 and 10 differ on subnormal quotients), so a constant is
   added there only after this program reports it ok.

       gcc -O2 -march=native -ffp-contract=off -fopenmp tools/check_division.c -o /tmp/check_division -lm
       /tmp/check_division 3 5 7        # about a minute per constant on 2 cores
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

int main(int argc, char **argv) {
    int failed = 0;
    for (int k = 1; k < argc; k++) {
        float c = strtof(argv[k], 0);
        float y = 1.0f / c;
        long mismatches = 0;
        #pragma omp parallel for reduction(+ : mismatches)
        for (int64_t i = 0; i < (1LL << 32); i++) {
            float a = from_bits((uint32_t)i);
            float want = a / c;
            float q0 = a * y;
            float r = fmaf(-q0, c, a);
            float q = (r != 0.0f && !isnan(r)) ? fmaf(r, y, q0) : q0;
            if (to_bits(q) != to_bits(want) && !(isnan(q) && isnan(want))) {
                mismatches++;
                if (mismatches < 3) printf("  c = %g: a = %a gives %a, not %a\n", c, a, q, want);
            }
        }
        printf("%s %g: %ld mismatches\n", mismatches ? "FAIL" : "ok", c, mismatches);
        fflush(stdout);
        failed |= mismatches != 0;
    }
    return failed;
}
