/* Clears the template parameters that one SIMD kernel instantiation (gemm_simd_tmpl.h) leaves
 * defined, so the next instantiation (other dtype, other ISA) can define its own.
 * Deliberately no include guard: it is included once per instantiation. */
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
#undef V_JOIN
#undef UKR_MR
#undef UKR_NV
#undef UKR_MC
#undef UKR_KC
#undef UKR_NC
