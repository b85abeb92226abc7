/* Cache sizes of this CPU and the GEMM cache blocking derived from them.
 *
 * Detection, first answer wins:
 *   1. NNLITE_CACHE_SIZES="L1d,L2,L3" in the environment (bytes, K/M suffixes; for machines or
 *      VMs that report wrong sizes, and to try other blockings without rebuilding);
 *   2. Linux sysfs: /sys/devices/system/cpu/cpu0/cache/index<i>/{level,type,size,
 *      shared_cpu_list} (the L3 is divided by the number of CPUs sharing it);
 *   3. x86 cpuid: deterministic cache parameters, leaf 4 (Intel) or 0x8000001D (AMD);
 *   4. conservative defaults: 32 KB L1d, 256 KB L2, 1 MB of L3 per core.
 * Sizes are read once per process (the blocking of every GEMM call must stay the same for the
 * whole process: pre-packed operands and bit-identical results depend on it).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnl_core.h"

#if NNL_X86_DISPATCH
#include <cpuid.h>
#endif

#define NNL_DEFAULT_L1D (32L << 10)
#define NNL_DEFAULT_L2 (256L << 10)
#define NNL_DEFAULT_L3 (1L << 20)

/* "48K", "2048K", "1M", "32768" -> bytes; 0 when unreadable */
static long parse_size(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v <= 0)
        return 0;
    while (*end == ' ')
        end++;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        return v << 10;
    case 'M':
        return v << 20;
    case 'G':
        return v << 30;
    default:
        return v;
    }
}

static int read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    const int ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    return ok;
}

/* CPUs in a list such as "0-3,8-11" */
static int count_cpus(const char *s)
{
    int count = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10);
        if (end == s)
            break;
        long b = a;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        count += b >= a ? (int)(b - a + 1) : 1;
        s = end;
        while (*s == ',' || *s == ' ' || *s == '\n')
            s++;
    }
    return count;
}

static int from_env(nnl_cache_info *ci)
{
    const char *env = getenv("NNLITE_CACHE_SIZES");
    if (env == NULL || *env == '\0')
        return 0;
    long v[3] = {0, 0, 0};
    const char *s = env;
    for (int i = 0; i < 3; i++) {
        v[i] = parse_size(s);
        if (v[i] <= 0)
            return 0;
        s = strchr(s, ',');
        if (s == NULL && i < 2)
            return 0;
        if (s)
            s++;
    }
    ci->l1d = v[0], ci->l2 = v[1], ci->l3 = v[2];
    ci->source = "env";
    return 1;
}

static int from_sysfs(nnl_cache_info *ci)
{
    char path[128], buf[256];
    int found = 0;
    for (int i = 0; i < 16; i++) {
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!read_line(path, buf, sizeof buf))
            break;
        const int level = atoi(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (!read_line(path, buf, sizeof buf) || strncmp(buf, "Instruction", 11) == 0)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!read_line(path, buf, sizeof buf))
            continue;
        const long size = parse_size(buf);
        if (size <= 0)
            continue;
        if (level == 1) {
            ci->l1d = size, found |= 1;
        } else if (level == 2) {
            ci->l2 = size, found |= 2;
        } else if (level == 3) {
            int share = 1;
            snprintf(path, sizeof path,
                     "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", i);
            if (read_line(path, buf, sizeof buf))
                share = count_cpus(buf);
            ci->l3 = size / (share > 0 ? share : 1), found |= 4;
        }
    }
    if ((found & 3) != 3)
        return 0;
    if (!(found & 4))
        ci->l3 = ci->l2;   /* no L3: the blocks that target it use the L2 */
    ci->source = "sysfs";
    return 1;
}

static int from_cpuid(nnl_cache_info *ci)
{
#if NNL_X86_DISPATCH
    unsigned a, b, c, d;
    unsigned leaf;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    if (b == 0x756e6547u && a >= 4) {              /* "Genu"ineIntel */
        leaf = 4;
    } else if (b == 0x68747541u) {                 /* "Auth"enticAMD */
        if (__get_cpuid_max(0x80000000u, NULL) < 0x8000001Du)
            return 0;
        leaf = 0x8000001Du;
    } else {
        return 0;
    }
    int found = 0;
    for (unsigned sub = 0; sub < 16; sub++) {
        __cpuid_count(leaf, sub, a, b, c, d);
        const unsigned type = a & 31u;
        if (type == 0)
            break;
        if (type == 2)                             /* instruction cache */
            continue;
        const unsigned level = (a >> 5) & 7u;
        const long sharing = (long)((a >> 14) & 0xfffu) + 1;
        const long size = (long)(((b >> 22) & 0x3ffu) + 1) * (long)(((b >> 12) & 0x3ffu) + 1) *
                          (long)((b & 0xfffu) + 1) * (long)(c + 1);
        if (level == 1)
            ci->l1d = size, found |= 1;
        else if (level == 2)
            ci->l2 = size, found |= 2;
        else if (level == 3)
            ci->l3 = size / sharing, found |= 4;
    }
    if ((found & 3) != 3)
        return 0;
    if (!(found & 4))
        ci->l3 = ci->l2;
    ci->source = "cpuid";
    return 1;
#else
    (void)ci;
    return 0;
#endif
}

static nnl_cache_info detected;
static pthread_once_t detected_once = PTHREAD_ONCE_INIT;

static void detect(void)
{
    nnl_cache_info ci = {NNL_DEFAULT_L1D, NNL_DEFAULT_L2, NNL_DEFAULT_L3, "default"};
    if (!from_env(&ci) && !from_sysfs(&ci) && !from_cpuid(&ci)) {
        ci.l1d = NNL_DEFAULT_L1D, ci.l2 = NNL_DEFAULT_L2, ci.l3 = NNL_DEFAULT_L3;
        ci.source = "default";
    }
    detected = ci;
}

const nnl_cache_info *nnl_cache_sizes(void)
{
    pthread_once(&detected_once, detect);
    return &detected;
}

static long round_down(long v, long m, long lo, long hi)
{
    v = v / m * m;
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi / m * m;
    return v;
}

void nnl_blocking_rule(long l1d, long l2, long l3, int mr, int nr, int elsize, int *mc,
                       int *kc, int *nc)
{
    /* KC: one KC x NR micro-panel of B (reused by every MR-row micro-kernel call of a block)
     * and the MR x KC micro-panel of A streaming past it fill NNL_KC_L1_SHARE of the L1d
     * (BLIS's rule), a multiple of 8, but at least NNL_KC_MIN deep: a wide register tile
     * (AVX-512's 8 x 48) would get only 72 on a 32 KB L1d, and then loading and storing the C
     * tile once per K slice costs more than the L1 misses it saves (see NNL_KC_MIN). */
    const long k = (long)(l1d * NNL_KC_L1_SHARE) / ((long)(mr + nr) * elsize);
    *kc = (int)round_down(k, 8, NNL_KC_MIN, 1024);
    /* MC: the MC x KC block of A, packed once per K slice and reused across the whole B
     * chunk, fills half of the L2 (the other half holds the B micro-panels streaming through
     * and the C tiles). */
    *mc = (int)round_down(l2 / 2 / ((long)*kc * elsize), mr, mr, 4096);
    /* NC: the KC x NC chunk of B, packed once per unit and K slice and swept once per MR-row
     * panel of A, fills half of this core's share of the L3 (BLIS's rule for its B block). */
    *nc = (int)round_down(l3 / 2 / ((long)*kc * elsize), nr, nr, 8192);
}
