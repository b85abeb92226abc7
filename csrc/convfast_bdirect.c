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
 * through nnl_cf_bdirect_ok). Also here: nnl_pack_a8_s, the 8-row (and 6-row) A packing of the
 * GEMM driver through AVX 8 x 8 transposes (an exact copy, so any path gives the same packed
 * panel), nnl_pack_t8_s / nnl_pack_tr_s, the same transpose of 8 (1..8) rows into any output
 * row stride (the B packing of a transposed B, a transpose's tail rows), and nnl_copy_even_s,
 * the stride-2 runs of a strided pointwise conv's B. */
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

/* 8 x 8 transpose in registers: c[j] lane i = r[i] lane j. */
static inline __attribute__((target("avx"), always_inline)) void cf_t8x8_reg(const __m256 r[8],
                                                                             __m256 c[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    c[0] = _mm256_permute2f128_ps(u0, u4, 0x20), c[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    c[2] = _mm256_permute2f128_ps(u2, u6, 0x20), c[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    c[4] = _mm256_permute2f128_ps(u0, u4, 0x31), c[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    c[6] = _mm256_permute2f128_ps(u2, u6, 0x31), c[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* The first r (1..8) lanes of v at o, nothing written past o[r - 1]. */
static inline __attribute__((target("avx"), always_inline)) void cf_store_part(float *o,
                                                                               __m256 v, int r)
{
    if (r == 8) {
        _mm256_storeu_ps(o, v);
        return;
    }
    __m128 h = _mm256_castps256_ps128(v);
    if (r >= 4) {
        _mm_storeu_ps(o, h);
        o += 4, r -= 4;
        h = _mm256_extractf128_ps(v, 1);
    }
    if (r >= 2) {
        _mm_storel_pi((__m64 *)o, h);
        o += 2, r -= 2;
        h = _mm_movehl_ps(h, h);
    }
    if (r)
        _mm_store_ss(o, h);
}

/* rows (1..8) rows w[i*ld + k], k < kcb, -> out[k*ldo + i] through 8 x 8 register transposes
 * (missing rows read as zeros; each column stores only its rows floats, so nothing is
 * written past them): an exact copy. */
static inline __attribute__((target("avx"), always_inline)) void cf_pack_t(
    int rows, nnl_idx kcb, const float *w, nnl_idx ld, float *out, nnl_idx ldo)
{
    nnl_idx k = 0;
    for (; k + 8 <= kcb; k += 8) {
        __m256 r[8], c[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < rows ? _mm256_loadu_ps(w + i * ld + k) : _mm256_setzero_ps();
        cf_t8x8_reg(r, c);
        for (int j = 0; j < 8; j++)
            cf_store_part(out + (k + j) * ldo, c[j], rows);
    }
    for (; k < kcb; k++)
        for (int i = 0; i < rows; i++)
            out[k * ldo + i] = w[i * ld + k];
}

/* Eight full rows w[i*ld + k], k < kcb, -> out[k*ldo + i]. The GEMM's B packing of a
 * transposed B (each column of op(B) contiguous) writes its NR-wide micro-panel eight columns
 * at a time through it (ldo = NR). */
__attribute__((target("avx"))) void nnl_pack_t8_s(nnl_idx kcb, const float *w, nnl_idx ld,
                                                  float *out, nnl_idx ldo)
{
    cf_pack_t(8, kcb, w, ld, out, ldo);
}

/* The same for 1..8 rows: the tail rows of a transpose (the GEMM nest's transpose, e.g. a
 * 6-row AVX2 tile of a column-major C). */
__attribute__((target("avx"))) void nnl_pack_tr_s(int rows, nnl_idx kcb, const float *w,
                                                  nnl_idx ld, float *out, nnl_idx ldo)
{
    cf_pack_t(rows, kcb, w, ld, out, ldo);
}

/* mr (6 or 8) full rows w[i*ld + k], k < kcb, -> the k-major micro-panel ap[k*mr + i] (what
 * the scalar loop of the GEMM's pack_a writes). */
__attribute__((target("avx"))) void nnl_pack_a8_s(nnl_idx kcb, const float *w, nnl_idx ld,
                                                  float *ap, int mr)
{
    if (mr == 8)
        cf_pack_t(8, kcb, w, ld, ap, 8);
    else
        cf_pack_t(6, kcb, w, ld, ap, 6);
}

int nnl_pack_a8_ok(void)
{
    return nnl_cpu_has_avx();
}

/* dst[0:n] = src[0], src[2], ..., src[2n - 2] sixteen at a time: two loads, one even-lane
 * permute; the last 1..16 through masked loads and a masked store, so nothing is read past
 * src[2n - 2] nor written past dst[n - 1] (an exact copy). */
__attribute__((target("avx512f"))) void nnl_copy_even_s(nnl_idx n, const float *src, float *dst)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    nnl_idx e = 0;
    for (; e + 16 < n; e += 16) {
        const __m512 a = _mm512_loadu_ps(src + 2 * e), b = _mm512_loadu_ps(src + 2 * e + 16);
        _mm512_storeu_ps(dst + e, _mm512_permutex2var_ps(a, even, b));
    }
    if (e < n) {
        const int r = (int)(n - e), reach = 2 * r - 1;   /* source elements read: 1..31 */
        const __mmask16 lo = reach >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << reach) - 1u);
        const __mmask16 hi = reach > 16 ? (__mmask16)((1u << (reach - 16)) - 1u) : 0;
        const __m512 a = _mm512_maskz_loadu_ps(lo, src + 2 * e);
        const __m512 b = _mm512_maskz_loadu_ps(hi, src + 2 * e + 16);
        _mm512_mask_storeu_ps(dst + e, (__mmask16)((1u << r) - 1u),
                              _mm512_permutex2var_ps(a, even, b));
    }
}

int nnl_copy_even_ok(void)
{
    return nnl_isa_available(NNL_ISA_AVX512);
}

int nnl_cf_bdirect_ok(int isa, int mr, int nr)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_best_isa();
    return isa == NNL_ISA_AVX512 && nnl_isa_available(NNL_ISA_AVX512) && mr == 8 && nr == 48;
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

void nnl_pack_a8_s(nnl_idx kcb, const float *w, nnl_idx ld, float *ap, int mr)
{
    (void)kcb, (void)w, (void)ld, (void)ap, (void)mr;
}

void nnl_pack_t8_s(nnl_idx kcb, const float *w, nnl_idx ld, float *out, nnl_idx ldo)
{
    (void)kcb, (void)w, (void)ld, (void)out, (void)ldo;
}

void nnl_pack_tr_s(int rows, nnl_idx kcb, const float *w, nnl_idx ld, float *out, nnl_idx ldo)
{
    (void)rows, (void)kcb, (void)w, (void)ld, (void)out, (void)ldo;
}

int nnl_pack_a8_ok(void)
{
    return 0;
}

void nnl_copy_even_s(nnl_idx n, const float *src, float *dst)
{
    for (nnl_idx e = 0; e < n; e++)
        dst[e] = src[2 * e];
}

int nnl_copy_even_ok(void)
{
    return 0;
}

#endif
