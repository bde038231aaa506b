/* Runs kernelc's generated CUDA C++ on the CPU: one OS thread per CUDA thread, blocks of a grid one
   after another (so `__shared__` is a static shared by the block's threads), real barriers for
   __syncthreads, warp shuffles through a per-warp exchange, atomics under one lock. The
   threads and barriers live in kc_emulate.cpp, built once; this header is included before the
   generated source with -DKC_EMULATE. */
#pragma once
#include <math.h>
#include <string.h>
#include <type_traits>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern "C" void kc_emu_syncthreads(void);
extern "C" void kc_emu_exchange(const void *mine, void *out, int bytes, int source_lane);
extern "C" void kc_emu_lock(void);
extern "C" void kc_emu_unlock(void);
extern "C" int kc_emu_launch(unsigned grid_x, unsigned grid_y, unsigned block, void (*body)(void *), void *context);

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __syncthreads() kc_emu_syncthreads()
#define warpSize 32

/* --- narrow floats: storage only, converted with round-to-nearest-even ----------------------- */
struct __half {
    unsigned short bits;
};
struct __nv_bfloat16 {
    unsigned short bits;
};
static inline float __half2float(__half h) {
    _Float16 f;
    memcpy(&f, &h.bits, 2);
    return (float)f;
}
static inline __half __float2half_rn(float x) {
    _Float16 f = (_Float16)x;
    __half h;
    memcpy(&h.bits, &f, 2);
    return h;
}
static inline __half __double2half(double x) {
    _Float16 f = (_Float16)x;
    __half h;
    memcpy(&h.bits, &f, 2);
    return h;
}
static inline float __bfloat162float(__nv_bfloat16 b) {
    unsigned u = (unsigned)b.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    b.bits = f != f ? (unsigned short)((u >> 16) | 0x40) : (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return b;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, 8);
    return d;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }

/* --- warp shuffles: every lane of the warp takes part, as with a full mask --------------------- */
static inline unsigned kc_emu_lane(void) { return threadIdx.x % 32; }
template <class T> static inline T kc_emu_shuffle(T value, int source) {
    static_assert(std::is_trivially_copyable<T>::value, "shuffled values are plain data");
    T out;
    kc_emu_exchange(&value, &out, (int)sizeof(T), source);
    return out;
}
template <class T> static inline T __shfl_sync(unsigned, T v, int lane, int width = 32) {
    return kc_emu_shuffle(v, (int)(kc_emu_lane() / width * width) + lane % width);
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    int lane = (int)kc_emu_lane(), source = lane ^ mask;
    return kc_emu_shuffle(v, source / width == lane / width ? source : lane);
}
template <class T> static inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = (int)kc_emu_lane(), source = lane + (int)delta;
    return kc_emu_shuffle(v, source / width == lane / width ? source : lane);
}
template <class T> static inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = (int)kc_emu_lane(), source = lane - (int)delta;
    return kc_emu_shuffle(v, source >= lane / width * width ? source : lane);
}

/* --- atomics: one lock for all of them (sequentially consistent, like the hardware's) ---------- */
template <class T> static inline T atomicAdd(T *p, T v) {
    kc_emu_lock();
    T old = *p;
    *p = old + v;
    kc_emu_unlock();
    return old;
}
template <class T> static inline T atomicMax(T *p, T v) {
    kc_emu_lock();
    T old = *p;
    if (v > old) *p = v;
    kc_emu_unlock();
    return old;
}
template <class T> static inline T atomicMin(T *p, T v) {
    kc_emu_lock();
    T old = *p;
    if (v < old) *p = v;
    kc_emu_unlock();
    return old;
}
template <class T> static inline T atomicExch(T *p, T v) {
    kc_emu_lock();
    T old = *p;
    *p = v;
    kc_emu_unlock();
    return old;
}
template <class T> static inline T atomicCAS(T *p, T compare, T v) {
    kc_emu_lock();
    T old = *p;
    if (old == compare) *p = v;
    kc_emu_unlock();
    return old;
}
