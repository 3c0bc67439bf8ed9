// Small fixed-width vectors (GCC/Clang vector extensions) for the CPU spreading loops.
// Lanes are plain T values; unaligned loads/stores go through memcpy (compiled to vmovups).
#pragma once

#include <cstring>
#include <type_traits>

namespace recon {
namespace simd {

// 8 lanes of T: 4 interleaved complex values (one "data chunk").
template <typename T>
struct Vec8 {
  typedef T type __attribute__((vector_size(8 * sizeof(T))));
};
// 16 lanes of T: 8 interleaved complex values (a wide "data chunk", used for float rows of 8).
template <typename T>
struct Vec16 {
  typedef T type __attribute__((vector_size(16 * sizeof(T))));
};

// The data chunk for padded rows of Wp complex values: 8 complex per vector for float rows whose
// length is a multiple of 8 (one 512-bit vector), otherwise 4 complex.
template <typename T, int Wp>
struct RowChunk {
  static constexpr bool wide = sizeof(T) == 4 && Wp % 8 == 0;
  static constexpr int complex_per_chunk = wide ? 8 : 4;
  static constexpr int lanes = 2 * complex_per_chunk;
  typedef typename std::conditional<wide, typename Vec16<T>::type, typename Vec8<T>::type>::type type;
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
