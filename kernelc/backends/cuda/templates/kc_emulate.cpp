/* The threads of kc_emulate.h: a launch starts one OS thread per CUDA thread of a block; they run
   every block of the grid in turn, meeting at a barrier between blocks. */
#include <barrier>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <string.h>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {
std::unique_ptr<std::barrier<>> block_barrier;
std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
std::vector<unsigned char> warp_slots;  // 32 lanes x 16 bytes per warp
std::mutex atomic_lock, launch_lock;
}  // namespace

extern "C" void kc_emu_syncthreads(void) { block_barrier->arrive_and_wait(); }

extern "C" void kc_emu_exchange(const void *mine, void *out, int bytes, int source_lane) {
    unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    unsigned char *slots = warp_slots.data() + warp * 32 * 16;
    memcpy(slots + lane * 16, mine, bytes);
    warp_barriers[warp]->arrive_and_wait();
    memcpy(out, slots + (unsigned)source_lane * 16, bytes);
    warp_barriers[warp]->arrive_and_wait();
}

extern "C" void kc_emu_lock(void) { atomic_lock.lock(); }
extern "C" void kc_emu_unlock(void) { atomic_lock.unlock(); }

extern "C" int kc_emu_launch(unsigned grid_x, unsigned grid_y, unsigned block, void (*body)(void *), void *context) {
    if (block == 0 || block > 1024) return 1;
    std::lock_guard<std::mutex> one_launch_at_a_time(launch_lock);
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid_x, grid_y, 1};
    block_barrier = std::make_unique<std::barrier<>>(block);
    unsigned warps = (block + 31) / 32;
    warp_barriers.clear();
    for (unsigned w = 0; w < warps; w++)
        warp_barriers.push_back(std::make_unique<std::barrier<>>(w + 1 < warps ? 32 : block - 32 * w));
    warp_slots.assign(warps * 32 * 16, 0);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; t++)
        threads.emplace_back([=] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned y = 0; y < grid_y; y++)
                for (unsigned x = 0; x < grid_x; x++) {
                    blockIdx = dim3{x, y, 0};
                    body(context);
                    block_barrier->arrive_and_wait();
                }
        });
    for (auto &thread : threads) thread.join();
    return 0;
}
