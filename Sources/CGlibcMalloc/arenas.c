// The target's functions are inline in include/CGlibcMalloc.h; a C target needs one source file.
#include "CGlibcMalloc.h"
