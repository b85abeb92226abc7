/* The GEMM's register micro-kernels (csrc/gemm_generic.c, gemm_avx2.c, gemm_avx512.c),
 * compiled a second time into nnlite._convfast: the implicit-GEMM convolution calls exactly the
 * kernels, packed layouts and blocking of nnlite's GEMM (and follows its tuning), while the
 * two extensions stay independent (convfast.h renames the exported symbols). Each included
 * file leaves its float64 template parameters defined: they are cleared in between. */
#include "convfast.h"

#include "gemm_generic.c"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef G_MR
#undef G_NR
#undef G_MC
#undef G_KC
#undef G_NC

#include "gemm_avx2.c"
#if NNL_X86_DISPATCH
#undef TGT
#include "gemm_simd_undef.h"
#endif

#include "gemm_avx512.c"
