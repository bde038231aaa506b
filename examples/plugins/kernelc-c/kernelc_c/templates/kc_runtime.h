/* The meaning of every kernelc op in C, following kernelc/ir/reference.py and ir/monoids.py.
   Floats are computed in double; integers wrap (built with -fwrapv). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
#endif

#define KC_NAN(x) ((x) != (x))

/* --- storage and casts ------------------------------------------------------------------- */
static inline double kc_load_bf16(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t kc_bits_bf16(double x) {  /* through f32, as ml_dtypes does */
    float f = (float)x; uint32_t u; memcpy(&u, &f, 4);
    if (f != f) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline double kc_to_f64(double x) { return x; }
static inline double kc_to_f32(double x) { return (float)x; }
static inline double kc_to_f16(double x) { return (_Float16)x; }
static inline double kc_to_bf16(double x) { return kc_load_bf16(kc_bits_bf16(x)); }
#define kc_to_bool(x) ((x) != 0)
/* float to integer: toward zero, saturating, NaN to 0 */
static inline int64_t kc_sat_i64(double x) {
    double y = trunc(x);
    return y != y ? 0 : y >= 9223372036854775807.0 ? INT64_MAX : y <= -9223372036854775808.0 ? INT64_MIN : (int64_t)y;
}
static inline int32_t kc_sat_i32(double x) {
    double y = trunc(x);
    return y != y ? 0 : y >= 2147483647.0 ? INT32_MAX : y <= -2147483648.0 ? INT32_MIN : (int32_t)y;
}
#define kc_store_f64(x) (x)
#define kc_store_f32(x) ((float)(x))
#define kc_store_f16(x) ((_Float16)(x))
#define kc_store_bf16(x) kc_bits_bf16(x)
#define kc_store_i64(x) (x)
#define kc_store_i32(x) (x)
#define kc_store_bool(x) ((uint8_t)((x) != 0))

/* --- elementwise ------------------------------------------------------------------------- */
#define kc_neg(a) (-(a))
#define kc_not(a) (!(a))
#define kc_square(a) ((a) * (a))
#define kc_step(a) ((a) >= 0 ? 1 : 0)
#define kc_abs_f(a) fabs(a)
#define kc_abs_i(a) ((a) < 0 ? -(a) : (a))
#define kc_sign_f(a) ((a) > 0 ? 1.0 : (a) < 0 ? -1.0 : (a))
#define kc_sign_i(a) (((a) > 0) - ((a) < 0))
#define kc_relu_f(a) ((a) > 0 || KC_NAN(a) ? (a) : 0.0)
#define kc_relu_i(a) ((a) > 0 ? (a) : 0)
#define kc_floor_f(a) floor(a)
#define kc_ceil_f(a) ceil(a)
#define kc_round_f(a) nearbyint(a)
#define kc_floor_i(a) (a)
#define kc_ceil_i(a) (a)
#define kc_round_i(a) (a)
#define kc_exp exp
#define kc_exp2 exp2
#define kc_expm1 expm1
#define kc_log log
#define kc_log2 log2
#define kc_log1p log1p
#define kc_sqrt sqrt
#define kc_rsqrt(a) (1.0 / sqrt(a))
#define kc_inv(a) (1.0 / (a))
#define kc_sin sin
#define kc_cos cos
#define kc_tan tan
#define kc_asin asin
#define kc_acos acos
#define kc_atan atan
#define kc_sinh sinh
#define kc_cosh cosh
#define kc_tanh tanh
#define kc_erf erf
static inline double kc_sigmoid(double x) { double e = exp(-fabs(x)); return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e); }
static inline double kc_softplus(double x) { return x != x ? x : fmax(x, 0.0) + log1p(exp(-fabs(x))); }

#define kc_add(a, b) ((a) + (b))
#define kc_sub(a, b) ((a) - (b))
#define kc_mul(a, b) ((a) * (b))
#define kc_div(a, b) ((double)(a) / (double)(b))
#define kc_pow_f pow
static inline int64_t kc_pow_i(int64_t base, int64_t e) {  /* wraps; a negative exponent truncates 1/base**-e */
    if (e < 0) return base == 1 ? 1 : base == -1 ? (e % 2 == 0 ? 1 : -1) : 0;
    uint64_t r = 1, b = (uint64_t)base;
    for (; e; e >>= 1, b *= b) if (e & 1) r *= b;
    return (int64_t)r;
}
#define kc_min_f(a, b) (KC_NAN(a) ? (a) : KC_NAN(b) ? (b) : (b) < (a) ? (b) : (a))
#define kc_max_f(a, b) (KC_NAN(a) ? (a) : KC_NAN(b) ? (b) : (b) > (a) ? (b) : (a))
#define kc_min_i(a, b) ((b) < (a) ? (b) : (a))
#define kc_max_i(a, b) ((b) > (a) ? (b) : (a))
#define kc_atan2 atan2
#define kc_lt(a, b) ((a) < (b))
#define kc_le(a, b) ((a) <= (b))
#define kc_gt(a, b) ((a) > (b))
#define kc_ge(a, b) ((a) >= (b))
#define kc_eq(a, b) ((a) == (b))
#define kc_ne(a, b) ((a) != (b))
#define kc_and(a, b) ((a) && (b))
#define kc_or(a, b) ((a) || (b))
#define kc_where(c, a, b) ((c) ? (a) : (b))

/* --- reductions: one element folded into a state (block of one, then combine) ----------- */
/* exp(s - m) against the running maximum m: an all -inf range weighs 0, +inf against +inf 1 */
static inline double kc_scale(double s, double m) { return m == -INFINITY ? 0.0 : s == m ? 1.0 : exp(s - m); }
static inline void kc_lse_update(double *m, double *acc, double s, double w) {
    double mb = w == 0 ? -INFINITY : s;  /* a zero weight cannot raise the maximum */
    double tb = w == 0 ? (s < INFINITY ? 0.0 : NAN) : kc_scale(s, mb) * w;
    double mn = kc_max_f(*m, mb);
    *acc = *acc * kc_scale(*m, mn) + tb * kc_scale(mb, mn);
    *m = mn;
}
#define kc_lse_final(m, acc) ((m) + log(acc))
#define kc_softmax_final(num, den) ((den) == 0 ? 0.0 : (num) / (den))
/* K best (value, index) pairs, sorted: values in order, then NaN, then padding (index -1);
   equal values keep index order, so a later element goes after them. */
#define KC_KBEST(NAME, T)                                                                          \
    static inline void NAME(T *v, int64_t *ix, int64_t K, T x, int64_t j, int largest) {          \
        int64_t p = K;                                                                             \
        while (p > 0 && !(ix[p - 1] >= 0 && (KC_NAN(x) || (!KC_NAN(v[p - 1]) &&                  \
                                                           (largest ? v[p - 1] >= x : v[p - 1] <= x))))) { \
            if (p < K) { v[p] = v[p - 1]; ix[p] = ix[p - 1]; }                                     \
            p--;                                                                                   \
        }                                                                                          \
        if (p < K) { v[p] = x; ix[p] = j; }                                                        \
    }
KC_KBEST(kc_kbest_f, double)
KC_KBEST(kc_kbest_i, int64_t)
