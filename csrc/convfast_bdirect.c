/* AVX-512 float32 8 x 48 micro-kernel of the implicit conv that reads B straight from the wide
 * image: B row k of the panel is the 48 contiguous floats at base + koff[k] (one tap of one
 * channel, see convfast_implicit.c), so the wide layout's panels are never packed.
 *
 *     tile[i, j] = sum_k ap[k*8 + i] * base[koff[k] + j]     i < 8, j < 48, k ascending
 *
 * with one fused multiply-add per k: exactly the arithmetic of the GEMM's AVX-512 micro-kernel
 * (gemm_simd_tmpl.h, 8 x 48 tile, alpha = 1, no epilogue) on the packed panel, so both paths
 * give the same bits. The tile (row stride 48) is then added into y by cf_scatter. Used only
 * when the GEMM family in use is the AVX-512 one with MR x NR = 8 x 48 (checked by the caller
 * through nnl_cf_bdirect_ok). */
#include "convfast.h"

#if NNL_X86_DISPATCH
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))

TGT void nnl_cf_bdirect_8x48_s(nnl_idx kc, const float *ap, const float *base,
                               const nnl_idx *koff, float *tile)
{
    __m512 c[8][3];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        c[i][0] = c[i][1] = c[i][2] = _mm512_setzero_ps();
    for (nnl_idx k = 0; k < kc; k++) {
        const float *b = base + koff[k];
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = _mm512_loadu_ps(b + 16);
        const __m512 b2 = _mm512_loadu_ps(b + 32);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
            c[i][2] = _mm512_fmadd_ps(a, b2, c[i][2]);
        }
        ap += 8;
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        _mm512_storeu_ps(tile + i * 48, c[i][0]);
        _mm512_storeu_ps(tile + i * 48 + 16, c[i][1]);
        _mm512_storeu_ps(tile + i * 48 + 32, c[i][2]);
    }
}

int nnl_cf_bdirect_ok(int isa, int mr, int nr)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_cf_best_isa();
    return isa == NNL_ISA_AVX512 && nnl_cf_isa_available(NNL_ISA_AVX512) && mr == 8 && nr == 48;
}

#else

void nnl_cf_bdirect_8x48_s(nnl_idx kc, const float *ap, const float *base, const nnl_idx *koff,
                           float *tile)
{
    (void)kc, (void)ap, (void)base, (void)koff, (void)tile;
}

int nnl_cf_bdirect_ok(int isa, int mr, int nr)
{
    (void)isa, (void)mr, (void)nr;
    return 0;
}

#endif
