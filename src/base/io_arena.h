// IoArena: a bump allocator for what one HTTP message needs while it is read (its parsed header
// fields), so that parsing a message's header costs no heap allocation. For .cc files of
// components that do network I/O.
//
// Memory comes from a fixed block inside the arena; what does not fit comes from the heap and
// goes back to it when deallocated. Deallocating arena memory does nothing: Reset() makes the
// whole block free again at once.
//
// Usage: one arena per message at a time. Destroy everything allocated from it (e.g. the parser)
// before Reset(): memory handed out before Reset() is reused after it.
//
// Thread safety: none; one owner (one loop thread) at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace hivemesh {

template <size_t kBytes>
class IoArena {
 public:
  IoArena() = default;
  IoArena(const IoArena&) = delete;
  IoArena& operator=(const IoArena&) = delete;

  void* Allocate(size_t bytes, size_t align) {
    const size_t start = (used_ + align - 1) & ~(align - 1);
    if (align <= alignof(std::max_align_t) && start + bytes <= kBytes) {
      used_ = start + bytes;
      return block_ + start;
    }
    return ::operator new(bytes);
  }

  void Deallocate(void* p) {
    const auto* c = static_cast<const unsigned char*>(p);
    if (c >= block_ && c < block_ + kBytes) return;  // freed by Reset()
    ::operator delete(p);
  }

  // REQUIRES: nothing allocated from the block is used any more.
  void Reset() { used_ = 0; }

 private:
  alignas(std::max_align_t) unsigned char block_[kBytes];
  size_t used_ = 0;
};

// A standard allocator over an IoArena (e.g. for Boost.Beast's basic_fields). Copies share the
// arena; the arena must outlive every container that uses it.
template <class T, size_t kBytes>
class IoArenaAllocator {
 public:
  using value_type = T;
  template <class U>
  struct rebind {
    using other = IoArenaAllocator<U, kBytes>;
  };

  explicit IoArenaAllocator(IoArena<kBytes>* arena) : arena_(arena) {}
  template <class U>
  IoArenaAllocator(const IoArenaAllocator<U, kBytes>& other) : arena_(other.arena()) {}

  T* allocate(size_t n) { return static_cast<T*>(arena_->Allocate(n * sizeof(T), alignof(T))); }
  void deallocate(T* p, size_t) { arena_->Deallocate(p); }

  IoArena<kBytes>* arena() const { return arena_; }

  template <class U>
  bool operator==(const IoArenaAllocator<U, kBytes>& other) const {
    return arena_ == other.arena();
  }
  template <class U>
  bool operator!=(const IoArenaAllocator<U, kBytes>& other) const {
    return arena_ != other.arena();
  }

 private:
  IoArena<kBytes>* arena_;
};

}  // namespace hivemesh
