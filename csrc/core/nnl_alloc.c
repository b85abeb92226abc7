/* Cache-line aligned allocation for packing and work buffers (every kernel's, see nnl_core.h).
 * The raw malloc pointer is stored just below the aligned block, so nnl_free64 needs no size
 * and works where aligned_alloc/posix_memalign are missing. */
#include <stdlib.h>

#include "nnl_core.h"

void *nnl_alloc64(size_t bytes)
{
    if (bytes > SIZE_MAX - 64 - sizeof(void *))
        return NULL;
    void *raw = malloc(bytes + 64 + sizeof(void *));
    if (raw == NULL)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void nnl_free64(void *p)
{
    if (p != NULL)
        free(((void **)p)[-1]);
}
