// glibc's malloc tuning, which Swift's Glibc module does not export (malloc.h).
#pragma once
#include <malloc.h>

/// mallopt(M_ARENA_MAX, n): at most n malloc arenas for the whole process. Returns 1 on success.
static inline int vitalsd_set_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/// mallopt(M_MMAP_THRESHOLD, bytes): allocations of at least `bytes` get mappings of their own, returned
/// to the system when freed; also turns off glibc's dynamic raising of that threshold (and of the trim
/// threshold) after a large block is freed. Returns 1 on success.
static inline int vitalsd_set_malloc_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }
