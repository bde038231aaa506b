/* kernelc's device runtime: the meaning of every op and reduction of kernelc/ir/reference.py and
   ir/monoids.py in CUDA C++. f16 and bf16 values are computed in float and rounded only where the
   program stores or casts; f32 in float; f64 in double; integers wrap. The same text compiles with
   NVRTC/nvcc for the GPU and with a host C++ compiler through kc_emulate.h. */
#ifndef KC_CUDA_H
#define KC_CUDA_H
#ifndef KC_EMULATE
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#pragma nv_diag_suppress 177 /* a helper "declared but never referenced": each kernel uses a few */
#endif

typedef long long kc_i64;
typedef int kc_i32;
#define KC_D static __device__ __forceinline__
#define KC_NAN(x) ((x) != (x))
#define KC_INF_F __int_as_float(0x7f800000)
#define KC_INF __longlong_as_double(0x7ff0000000000000LL)
#define KC_QNAN __longlong_as_double(0x7ff8000000000000LL)
#define KC_I64_MAX 0x7fffffffffffffffLL
#define KC_I64_MIN (-KC_I64_MAX - 1)
#define KC_I32_MAX 0x7fffffff
#define KC_I32_MIN (-KC_I32_MAX - 1)

/* --- storage: loads widen to the compute type, stores round ----------------------------------- */
KC_D float kc_load(const __half &x) { return __half2float(x); }
KC_D float kc_load(const __nv_bfloat16 &x) { return __bfloat162float(x); }
KC_D float kc_load(const float &x) { return x; }
KC_D double kc_load(const double &x) { return x; }
KC_D kc_i32 kc_load(const kc_i32 &x) { return x; }
KC_D kc_i64 kc_load(const kc_i64 &x) { return x; }
KC_D bool kc_load(const unsigned char &x) { return x != 0; }

KC_D __half kc_store_f16(double x) { return __double2half(x); }
KC_D __half kc_store_f16(float x) { return __float2half_rn(x); }
KC_D __nv_bfloat16 kc_store_bf16(double x) { return __float2bfloat16_rn((float)x); }  /* via f32, as ml_dtypes */
KC_D __nv_bfloat16 kc_store_bf16(float x) { return __float2bfloat16_rn(x); }
KC_D float kc_store_f32(float x) { return x; }
KC_D float kc_store_f32(double x) { return (float)x; }
KC_D double kc_store_f64(double x) { return x; }
KC_D kc_i32 kc_store_i32(kc_i32 x) { return x; }
KC_D kc_i64 kc_store_i64(kc_i64 x) { return x; }
KC_D unsigned char kc_store_bool(bool x) { return x ? 1 : 0; }

/* --- casts: to a float type rounds to it (held in its compute type); float to integer truncates,
       saturates and maps NaN to 0; to bool is != 0 ------------------------------------------------ */
template <class T> KC_D double kc_to_f64(T x) { return (double)x; }
template <class T> KC_D float kc_to_f32(T x) { return (float)x; }
KC_D float kc_to_f16(double x) { return __half2float(__double2half(x)); }
template <class T> KC_D float kc_to_f16(T x) { return __half2float(__float2half_rn((float)x)); }
KC_D float kc_to_f16(kc_i64 x) { return kc_to_f16((double)x); }
KC_D float kc_to_f16(kc_i32 x) { return kc_to_f16((double)x); }
template <class T> KC_D float kc_to_bf16(T x) { return __bfloat162float(__float2bfloat16_rn((float)x)); }
template <class T> KC_D bool kc_to_bool(T x) { return x != 0; }
template <class T> KC_D kc_i64 kc_to_i64(T x) { return (kc_i64)x; }
template <class T> KC_D kc_i32 kc_to_i32(T x) { return (kc_i32)x; }
KC_D kc_i64 kc_to_i64(double x) {
    double y = trunc(x);
    return y != y ? 0 : y >= 9223372036854775807.0 ? KC_I64_MAX : y <= -9223372036854775808.0 ? KC_I64_MIN : (kc_i64)y;
}
KC_D kc_i64 kc_to_i64(float x) { return kc_to_i64((double)x); }
KC_D kc_i32 kc_to_i32(double x) {
    double y = trunc(x);
    return y != y ? 0 : y >= 2147483647.0 ? KC_I32_MAX : y <= -2147483648.0 ? KC_I32_MIN : (kc_i32)y;
}
KC_D kc_i32 kc_to_i32(float x) { return kc_to_i32((double)x); }

/* --- elementwise ------------------------------------------------------------------------------ */
template <class T> KC_D T kc_neg(T a) { return (T)-a; }
KC_D bool kc_not(bool a) { return !a; }
template <class T> KC_D T kc_square(T a) { return (T)(a * a); }
template <class T> KC_D T kc_step(T a) { return a >= 0 ? (T)1 : (T)0; }
template <class T> KC_D T kc_abs(T a) { return a < 0 ? (T)-a : a; }
KC_D float kc_abs(float a) { return fabsf(a); }
KC_D double kc_abs(double a) { return fabs(a); }
template <class T> KC_D T kc_sign(T a) { return a > 0 ? (T)1 : a < 0 ? (T)-1 : a; }  /* keeps -0, NaN */
template <class T> KC_D T kc_relu(T a) { return a > 0 || KC_NAN(a) ? a : (T)0; }
template <class T> KC_D T kc_floor(T a) { return a; }
template <class T> KC_D T kc_ceil(T a) { return a; }
template <class T> KC_D T kc_round(T a) { return a; }
KC_D float kc_floor(float a) { return floorf(a); }
KC_D double kc_floor(double a) { return floor(a); }
KC_D float kc_ceil(float a) { return ceilf(a); }
KC_D double kc_ceil(double a) { return ceil(a); }
KC_D float kc_round(float a) { return rintf(a); }
KC_D double kc_round(double a) { return rint(a); }

#define KC_MATH1(NAME, F, D)                                 \
    KC_D float kc_##NAME(float a) { return F(a); }            \
    KC_D double kc_##NAME(double a) { return D(a); }
KC_MATH1(exp, expf, exp)
KC_MATH1(exp2, exp2f, exp2)
KC_MATH1(expm1, expm1f, expm1)
KC_MATH1(log, logf, log)
KC_MATH1(log2, log2f, log2)
KC_MATH1(log1p, log1pf, log1p)
KC_MATH1(sqrt, sqrtf, sqrt)
KC_MATH1(rsqrt, rsqrtf, rsqrt)
KC_MATH1(sin, sinf, sin)
KC_MATH1(cos, cosf, cos)
KC_MATH1(tan, tanf, tan)
KC_MATH1(asin, asinf, asin)
KC_MATH1(acos, acosf, acos)
KC_MATH1(atan, atanf, atan)
KC_MATH1(sinh, sinhf, sinh)
KC_MATH1(cosh, coshf, cosh)
KC_MATH1(tanh, tanhf, tanh)
KC_MATH1(erf, erff, erf)
template <class T> KC_D T kc_inv(T a) { return (T)1 / a; }
template <class T> KC_D T kc_sigmoid(T x) {
    T e = kc_exp(-kc_abs(x));
    return x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
}
template <class T> KC_D T kc_softplus(T x) {  /* log(1 + exp(x)) without overflow */
    return KC_NAN(x) ? x : (x > 0 ? x : (T)0) + kc_log1p(kc_exp(-kc_abs(x)));
}

template <class T> KC_D T kc_add(T a, T b) { return (T)(a + b); }
template <class T> KC_D T kc_sub(T a, T b) { return (T)(a - b); }
template <class T> KC_D T kc_mul(T a, T b) { return (T)(a * b); }
template <class T> KC_D T kc_div(T a, T b) { return a / b; }
KC_D float kc_pow(float a, float b) { return powf(a, b); }
KC_D double kc_pow(double a, double b) { return pow(a, b); }
template <class T> KC_D T kc_pow(T base, T e) {  /* wraps; a negative exponent truncates 1/base**-e */
    if (e < 0) return base == 1 ? (T)1 : base == -1 ? (T)(e % 2 == 0 ? 1 : -1) : (T)0;
    unsigned long long r = 1, b = (unsigned long long)base, n = (unsigned long long)e;
    for (; n; n >>= 1, b *= b)
        if (n & 1) r *= b;
    return (T)r;
}
KC_D float kc_atan2(float a, float b) { return atan2f(a, b); }
KC_D double kc_atan2(double a, double b) { return atan2(a, b); }
/* NaN-propagating min/max, as NumPy's minimum/maximum */
template <class T> KC_D T kc_min(T a, T b) { return KC_NAN(a) ? a : KC_NAN(b) ? b : b < a ? b : a; }
template <class T> KC_D T kc_max(T a, T b) { return KC_NAN(a) ? a : KC_NAN(b) ? b : b > a ? b : a; }
template <class T> KC_D bool kc_lt(T a, T b) { return a < b; }
template <class T> KC_D bool kc_le(T a, T b) { return a <= b; }
template <class T> KC_D bool kc_gt(T a, T b) { return a > b; }
template <class T> KC_D bool kc_ge(T a, T b) { return a >= b; }
template <class T> KC_D bool kc_eq(T a, T b) { return a == b; }
template <class T> KC_D bool kc_ne(T a, T b) { return a != b; }
KC_D bool kc_and(bool a, bool b) { return a && b; }
KC_D bool kc_or(bool a, bool b) { return a || b; }
template <class T> KC_D T kc_where(bool c, T a, T b) { return c ? a : b; }

/* --- reductions: identity, accumulate one element, combine two states, finalize --------------- */
#define KC_SPECIAL __device__ __forceinline__  /* explicit specializations take no storage class */
template <class T> KC_SPECIAL T kc_lowest();
template <class T> KC_SPECIAL T kc_highest();
template <> KC_SPECIAL float kc_lowest<float>() { return -KC_INF_F; }
template <> KC_SPECIAL float kc_highest<float>() { return KC_INF_F; }
template <> KC_SPECIAL double kc_lowest<double>() { return -KC_INF; }
template <> KC_SPECIAL double kc_highest<double>() { return KC_INF; }
template <> KC_SPECIAL kc_i64 kc_lowest<kc_i64>() { return KC_I64_MIN; }
template <> KC_SPECIAL kc_i64 kc_highest<kc_i64>() { return KC_I64_MAX; }
template <> KC_SPECIAL kc_i32 kc_lowest<kc_i32>() { return KC_I32_MIN; }
template <> KC_SPECIAL kc_i32 kc_highest<kc_i32>() { return KC_I32_MAX; }
template <> KC_SPECIAL bool kc_lowest<bool>() { return false; }
template <> KC_SPECIAL bool kc_highest<bool>() { return true; }

/* arg-extremes: (value, index) with index -1 for the empty state; the first NaN wins, then the
   strict extreme, then the smaller index (so combining is order-independent) */
template <class T> KC_D bool kc_arg_better(T v, kc_i64 j, T best, kc_i64 at, bool largest) {
    if (j < 0) return false;
    if (at < 0) return true;
    if (KC_NAN(best)) return KC_NAN(v) && j < at;
    if (KC_NAN(v)) return true;
    if (v == best) return j < at;
    return largest ? v > best : v < best;
}

/* exp(s - m) against the running maximum m: an all -inf range weighs 0, +inf against +inf 1 */
template <class T> KC_D T kc_scale(T s, T m) { return m == kc_lowest<T>() ? (T)0 : s == m ? (T)1 : kc_exp(s - m); }
/* logsumexp state (m, s): m the maximum of the scores with nonzero weight, s the scaled sum */
template <class A, class T> KC_D void kc_lse_combine(A &m, A &s, T m2, T s2) {
    A mb = (A)m2, mn = kc_max(m, mb);
    s = s * kc_scale(m, mn) + (A)s2 * kc_scale(mb, mn);
    m = mn;
}
template <class A, class T, class U> KC_D void kc_lse_update(A &m, A &s, T v, U weight) {
    T w = (T)weight;
    if (w != 0 && v < m) {  /* the common case: below the running maximum, one exp */
        s += (A)(kc_exp(v - (T)m) * w);
        return;
    }
    T mb = w == 0 ? kc_lowest<T>() : v;  /* a zero weight cannot raise the maximum */
    T tb = w == 0 ? (v < kc_highest<T>() ? (T)0 : (T)KC_QNAN) : kc_scale(v, mb) * w;
    kc_lse_combine(m, s, mb, tb);
}
template <class A> KC_D A kc_lse_final(A m, A s) { return m + kc_log(s); }
/* softmax state (m, num[], den): combining rescales both to the larger maximum */
template <class A> KC_D void kc_softmax_rescale(A &m, A m2, A &sa, A &sb) {
    A mn = kc_max(m, m2);
    sa = kc_scale(m, mn);
    sb = kc_scale(m2, mn);
    m = mn;
}
template <class A> KC_D A kc_softmax_final(A num, A den) { return den == 0 ? (A)0 : num / den; }

/* K best (value, index) pairs, sorted: values in order, then NaN, then padding (index -1); equal
   values by index. Inserting is one comparison with the last slot unless the value can enter. */
template <class T> KC_D bool kc_kbest_before(T v, kc_i64 j, T w, kc_i64 at, bool largest) {
    if (at < 0) return j >= 0;
    if (j < 0) return false;
    if (KC_NAN(w)) return KC_NAN(v) ? j < at : true;
    if (KC_NAN(v)) return false;
    if (v == w) return j < at;
    return largest ? v > w : v < w;
}
template <class T, int K> KC_D void kc_kbest_insert(T (&v)[K], kc_i64 (&ix)[K], T x, kc_i64 j, bool largest) {
    if (largest ? x < v[K - 1] : x > v[K - 1]) return;  /* the common case: strictly worse than the last */
    if (!kc_kbest_before(x, j, v[K - 1], ix[K - 1], largest)) return;
    int p = K - 1;
    while (p > 0 && kc_kbest_before(x, j, v[p - 1], ix[p - 1], largest)) {
        v[p] = v[p - 1];
        ix[p] = ix[p - 1];
        p--;
    }
    v[p] = x;
    ix[p] = j;
}
template <class A> KC_D double kc_mean(A total, kc_i64 count) { return (double)total / (double)count; }
#endif /* KC_CUDA_H */
