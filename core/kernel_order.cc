#include "core/kernel_order.h"

#if defined(__SANITIZE_THREAD__)
#define LAMINA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LAMINA_TSAN 1
#endif
#endif

#ifdef LAMINA_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace lamina {
namespace {

[[maybe_unused]] char kernel_order_token;

}  // namespace

void KernelOrderAcquire() {
#ifdef LAMINA_TSAN
  __tsan_acquire(&kernel_order_token);
#endif
}

void KernelOrderRelease() {
#ifdef LAMINA_TSAN
  __tsan_release(&kernel_order_token);
#endif
}

}  // namespace lamina
