// glibc's malloc tuning, which Swift's Glibc module does not export (malloc.h).
#pragma once
#include <malloc.h>

/// mallopt(M_ARENA_MAX, n): at most n malloc arenas for the whole process. Returns 1 on success.
static inline int vitalsd_set_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }
