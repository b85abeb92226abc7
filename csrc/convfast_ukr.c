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
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef VEC
#undef LANES
#undef MASK_T
#undef V_ZERO
#undef V_SET1
#undef V_LOADU
#undef V_STOREU
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_MAX
#undef V_MIN
#undef V_MASK
#undef V_LOADM
#undef V_STOREM
#undef UKR_MR
#undef UKR_NV
#undef UKR_MC
#undef UKR_KC
#undef UKR_NC
#endif

#include "gemm_avx512.c"
