/* LD_PRELOAD library: the process (and the processes it starts) sees a CPU without AVX-512.
 *
 * For comparing the AVX2 code paths of nnlite AND of its peers (ONNX Runtime's MLAS, OpenBLAS)
 * on a machine that has AVX-512: every library here picks its kernels from CPUID, so hiding
 * the AVX-512 bits there makes all of them take their AVX2 + FMA kernels, as on an AVX2-only
 * CPU of the same core. Linux on x86-64 with CPUID faulting (`cpuid_fault` in /proc/cpuinfo):
 * a CPUID instruction then raises SIGSEGV; the handler runs it with faulting off, clears the
 * AVX-512 feature bits (leaf 7 and the ZMM state of leaf 0xD) and steps over it. The setting is
 * per thread and inherited by threads and children, so it is made before any thread starts.
 *
 *     gcc -O2 -shared -fPIC -o /tmp/without_avx512.so tools/without_avx512.c
 *     LD_PRELOAD=/tmp/without_avx512.so python benchmarks/bench_inference.py ...
 *
 * nnlite's kernels outside the GEMM are compiled for the build machine (-march=native), so
 * build it for the AVX2 machine being imitated: print the flags GCC would choose there,
 *     LD_PRELOAD=/tmp/without_avx512.so gcc -march=native -E -v - </dev/null 2>&1 \
 *         | grep -o "cc1 .*" | tr ' ' '\n' | grep '^-m' | tr '\n' ' '
 * and build with NNLITE_PORTABLE=1 CFLAGS="<those flags>" (not under the preload: compilers
 * install their own SIGSEGV handlers). Run pytest with -p no:faulthandler for the same reason.
 * Instructions are not hidden, only reported absent: code that uses AVX-512 without asking
 * CPUID still runs it. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012

static long cpuid_faulting(int off)
{
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, off);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    (void)sig;
    /* a faulting CPUID is a general-protection fault (si_code SI_KERNEL); a bad address (which
     * may be the instruction pointer itself, so not read before this test) or any other
     * instruction is a real fault: let it kill */
    if (si->si_code != SI_KERNEL || ip[0] != 0x0F || ip[1] != 0xA2) {
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    const unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX];
    unsigned a, b, c, d;
    cpuid_faulting(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    cpuid_faulting(0);
    if (leaf == 7 && sub == 0) {
        /* EBX: F, DQ, IFMA, PF, ER, CD, BW, VL; ECX: VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ;
         * EDX: 4VNNIW, 4FMAPS, VP2INTERSECT, FP16 */
        b &= ~(1u << 16 | 1u << 17 | 1u << 21 | 1u << 26 | 1u << 27 | 1u << 28 | 1u << 30 |
               1u << 31);
        c &= ~(1u << 1 | 1u << 6 | 1u << 11 | 1u << 12 | 1u << 14);
        d &= ~(1u << 2 | 1u << 3 | 1u << 8 | 1u << 23);
    } else if (leaf == 7 && sub == 1) {
        a &= ~(1u << 5);                   /* AVX512_BF16 */
    } else if (leaf == 0xD && sub == 0) {
        a &= ~0xE0u;                       /* opmask and ZMM state components */
    }
    g[REG_RAX] = a, g[REG_RBX] = b, g[REG_RCX] = c, g[REG_RDX] = d;
    g[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    if (cpuid_faulting(0) != 0) {
        static const char msg[] = "without_avx512: no CPUID faulting here; nothing hidden\n";
        (void)!write(2, msg, sizeof msg - 1);
    }
}
