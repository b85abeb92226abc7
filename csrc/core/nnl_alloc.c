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

/* Large long-lived buffers (an inference plan's activation arena) in their own mapping, its
 * start on a 2 MB boundary and advised for transparent huge pages: every whole 2 MB of it can
 * then be one TLB entry instead of 512. Steps of a plan sweep megabytes of the arena each and
 * evict each other's page translations (and, in a virtual machine, each miss walks two page
 * tables). A mapping of exactly round_up(bytes, 4 KB) is kept; the partial last 2 MB stays in
 * 4 KB pages, so it costs no memory beyond the page rounding. */
#if defined(__linux__)
#include <sys/mman.h>
#define NNL_HUGE_PAGE ((size_t)2 << 20)
#define NNL_SMALL_PAGE ((size_t)4096)

static size_t huge_len(size_t bytes)
{
    return (bytes + NNL_SMALL_PAGE - 1) & ~(NNL_SMALL_PAGE - 1);
}

void *nnl_huge_alloc(size_t bytes)
{
    if (bytes < NNL_HUGE_PAGE || bytes > SIZE_MAX / 2)
        return NULL;
    size_t len = huge_len(bytes);
    char *raw = mmap(NULL, len + NNL_HUGE_PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + NNL_HUGE_PAGE - 1) & ~(uintptr_t)(NNL_HUGE_PAGE - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + len + NNL_HUGE_PAGE - (p + len));
    if (tail)
        munmap(p + len, tail);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);    /* advice only: THP off or unsupported leaves 4 KB pages */
#endif
    return p;
}

void nnl_huge_free(void *p, size_t bytes)
{
    if (p != NULL)
        munmap(p, huge_len(bytes));
}
#else
void *nnl_huge_alloc(size_t bytes)
{
    (void)bytes;
    return NULL;
}

void nnl_huge_free(void *p, size_t bytes)
{
    (void)p;
    (void)bytes;
}
#endif
