// Small fixed-width vectors (GCC/Clang vector extensions) for the CPU spreading loops.
// Lanes are plain T values; unaligned loads/stores go through memcpy (compiled to vmovups).
#pragma once

#include <cstring>

namespace recon {
namespace simd {

// 8 lanes of T: 4 interleaved complex values (one "data chunk").
template <typename T>
struct Vec8 {
  typedef T type __attribute__((vector_size(8 * sizeof(T))));
};
// 4 lanes of T: 4 kernel weights (one "weight chunk").
template <typename T>
struct Vec4 {
  typedef T type __attribute__((vector_size(4 * sizeof(T))));
};

template <typename V, typename T>
inline __attribute__((always_inline)) V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
inline __attribute__((always_inline)) void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// Padded width: the kernel width rounded up to whole 4-lane weight chunks.
constexpr int padded_width(int w) { return (w + 3) & ~3; }

}  // namespace simd
}  // namespace recon
