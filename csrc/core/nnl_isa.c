/* Which micro-kernel families this CPU runs (the one ISA check of every kernel). The x86
 * families are compiled with per-function target attributes whatever -march is, so the check
 * is made at run time with the compiler's cpuid wrapper (which also checks that the OS saves
 * the wider registers). */
#include "nnl_core.h"

int nnl_isa_available(int isa)
{
    switch (isa) {
    case NNL_ISA_GENERIC:
        return 1;
#if NNL_X86_DISPATCH
    case NNL_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NNL_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

int nnl_best_isa(void)
{
    for (int isa = NNL_ISA_COUNT - 1; isa > 0; isa--)
        if (nnl_isa_available(isa))
            return isa;
    return NNL_ISA_GENERIC;
}

const char *nnl_isa_name(int isa)
{
    switch (isa) {
    case NNL_ISA_GENERIC:
        return "generic";
    case NNL_ISA_AVX2:
        return "avx2";
    case NNL_ISA_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}

int nnl_cpu_has_avx(void)
{
#if NNL_X86_DISPATCH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}
