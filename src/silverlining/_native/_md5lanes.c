/* Multi-lane MD5: up to eight independent MD5 streams hashed side by side in SIMD lanes.
 *
 * MD5 is a chain of 64 dependent steps per 64-byte block: one stream cannot go faster than
 * the latency of that chain (~4-5 cycles per byte here, which is what hashlib/OpenSSL
 * reach). Eight streams in the eight 32-bit lanes of a 256-bit register take the same
 * latency per step, so concurrent uploads are hashed for about the cost of one. The node
 * feeds this from one thread that gathers the pending MD5 work of every upload
 * (silverlining.node.domain.md5lanes).
 *
 * A signed upload is hashed with SHA-256 too. With SHA-NI, the SHA-256 of up to four of
 * the streams runs between the MD5 steps of the same call (the "fused" kernels): MD5 keeps
 * the vector units waiting on its chain, SHA-NI fills them, and the two cost little more
 * than the MD5 alone (four streams, MD5 + SHA-256: ~1.9 GB/s on one core, against ~1.0 for
 * OpenSSL's one after the other).
 *
 * Kernels: AVX-512VL (ternary logic and rotate in one instruction each), AVX2, and portable
 * C for one lane at a time; chosen at import from what the CPU reports. The results are
 * checked against hashlib in tests/node/test_md5lanes.py for every kernel the CPU has.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#define LANES 8
/* The 64 steps of one block, in sixteen groups of four (the fused kernels put a group of
 * SHA-256 rounds after each). */
#define STEPS_Q0 \
    STEP(F, a, b, c, d, 0, 0xd76aa478u, 7); \
    STEP(F, d, a, b, c, 1, 0xe8c7b756u, 12); \
    STEP(F, c, d, a, b, 2, 0x242070dbu, 17); \
    STEP(F, b, c, d, a, 3, 0xc1bdceeeu, 22);
#define STEPS_Q1 \
    STEP(F, a, b, c, d, 4, 0xf57c0fafu, 7); \
    STEP(F, d, a, b, c, 5, 0x4787c62au, 12); \
    STEP(F, c, d, a, b, 6, 0xa8304613u, 17); \
    STEP(F, b, c, d, a, 7, 0xfd469501u, 22);
#define STEPS_Q2 \
    STEP(F, a, b, c, d, 8, 0x698098d8u, 7); \
    STEP(F, d, a, b, c, 9, 0x8b44f7afu, 12); \
    STEP(F, c, d, a, b, 10, 0xffff5bb1u, 17); \
    STEP(F, b, c, d, a, 11, 0x895cd7beu, 22);
#define STEPS_Q3 \
    STEP(F, a, b, c, d, 12, 0x6b901122u, 7); \
    STEP(F, d, a, b, c, 13, 0xfd987193u, 12); \
    STEP(F, c, d, a, b, 14, 0xa679438eu, 17); \
    STEP(F, b, c, d, a, 15, 0x49b40821u, 22);
#define STEPS_Q4 \
    STEP(G, a, b, c, d, 1, 0xf61e2562u, 5); \
    STEP(G, d, a, b, c, 6, 0xc040b340u, 9); \
    STEP(G, c, d, a, b, 11, 0x265e5a51u, 14); \
    STEP(G, b, c, d, a, 0, 0xe9b6c7aau, 20);
#define STEPS_Q5 \
    STEP(G, a, b, c, d, 5, 0xd62f105du, 5); \
    STEP(G, d, a, b, c, 10, 0x02441453u, 9); \
    STEP(G, c, d, a, b, 15, 0xd8a1e681u, 14); \
    STEP(G, b, c, d, a, 4, 0xe7d3fbc8u, 20);
#define STEPS_Q6 \
    STEP(G, a, b, c, d, 9, 0x21e1cde6u, 5); \
    STEP(G, d, a, b, c, 14, 0xc33707d6u, 9); \
    STEP(G, c, d, a, b, 3, 0xf4d50d87u, 14); \
    STEP(G, b, c, d, a, 8, 0x455a14edu, 20);
#define STEPS_Q7 \
    STEP(G, a, b, c, d, 13, 0xa9e3e905u, 5); \
    STEP(G, d, a, b, c, 2, 0xfcefa3f8u, 9); \
    STEP(G, c, d, a, b, 7, 0x676f02d9u, 14); \
    STEP(G, b, c, d, a, 12, 0x8d2a4c8au, 20);
#define STEPS_Q8 \
    STEP(H, a, b, c, d, 5, 0xfffa3942u, 4); \
    STEP(H, d, a, b, c, 8, 0x8771f681u, 11); \
    STEP(H, c, d, a, b, 11, 0x6d9d6122u, 16); \
    STEP(H, b, c, d, a, 14, 0xfde5380cu, 23);
#define STEPS_Q9 \
    STEP(H, a, b, c, d, 1, 0xa4beea44u, 4); \
    STEP(H, d, a, b, c, 4, 0x4bdecfa9u, 11); \
    STEP(H, c, d, a, b, 7, 0xf6bb4b60u, 16); \
    STEP(H, b, c, d, a, 10, 0xbebfbc70u, 23);
#define STEPS_Q10 \
    STEP(H, a, b, c, d, 13, 0x289b7ec6u, 4); \
    STEP(H, d, a, b, c, 0, 0xeaa127fau, 11); \
    STEP(H, c, d, a, b, 3, 0xd4ef3085u, 16); \
    STEP(H, b, c, d, a, 6, 0x04881d05u, 23);
#define STEPS_Q11 \
    STEP(H, a, b, c, d, 9, 0xd9d4d039u, 4); \
    STEP(H, d, a, b, c, 12, 0xe6db99e5u, 11); \
    STEP(H, c, d, a, b, 15, 0x1fa27cf8u, 16); \
    STEP(H, b, c, d, a, 2, 0xc4ac5665u, 23);
#define STEPS_Q12 \
    STEP(I, a, b, c, d, 0, 0xf4292244u, 6); \
    STEP(I, d, a, b, c, 7, 0x432aff97u, 10); \
    STEP(I, c, d, a, b, 14, 0xab9423a7u, 15); \
    STEP(I, b, c, d, a, 5, 0xfc93a039u, 21);
#define STEPS_Q13 \
    STEP(I, a, b, c, d, 12, 0x655b59c3u, 6); \
    STEP(I, d, a, b, c, 3, 0x8f0ccc92u, 10); \
    STEP(I, c, d, a, b, 10, 0xffeff47du, 15); \
    STEP(I, b, c, d, a, 1, 0x85845dd1u, 21);
#define STEPS_Q14 \
    STEP(I, a, b, c, d, 8, 0x6fa87e4fu, 6); \
    STEP(I, d, a, b, c, 15, 0xfe2ce6e0u, 10); \
    STEP(I, c, d, a, b, 6, 0xa3014314u, 15); \
    STEP(I, b, c, d, a, 13, 0x4e0811a1u, 21);
#define STEPS_Q15 \
    STEP(I, a, b, c, d, 4, 0xf7537e82u, 6); \
    STEP(I, d, a, b, c, 11, 0xbd3af235u, 10); \
    STEP(I, c, d, a, b, 2, 0x2ad7d2bbu, 15); \
    STEP(I, b, c, d, a, 9, 0xeb86d391u, 21);
#define STEPS_64 \
    STEPS_Q0 STEPS_Q1 STEPS_Q2 STEPS_Q3 STEPS_Q4 STEPS_Q5 STEPS_Q6 STEPS_Q7 \
    STEPS_Q8 STEPS_Q9 STEPS_Q10 STEPS_Q11 STEPS_Q12 STEPS_Q13 STEPS_Q14 STEPS_Q15

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- one lane, portable C ----------------------------------------------------------- */

#define ROTL32(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define F_S(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define G_S(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define H_S(b, c, d) ((b) ^ (c) ^ (d))
#define I_S(b, c, d) ((c) ^ ((b) | ~(d)))
#define STEP(f, a, b, c, d, x, k, s) \
    a += f##_S(b, c, d) + X[x] + (k); \
    a = ROTL32(a, s) + b;

static void md5_blocks_scalar(uint32_t h[4], const unsigned char *p, size_t nblocks)
{
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    uint32_t X[16];
    while (nblocks--) {
        for (int i = 0; i < 16; i++)
            X[i] = load_le32(p + 4 * i);
        uint32_t aa = a, bb = b, cc = c, dd = d;
        STEPS_64
        a += aa;
        b += bb;
        c += cc;
        d += dd;
        p += 64;
    }
    h[0] = a;
    h[1] = b;
    h[2] = c;
    h[3] = d;
}
#undef STEP

/* ---- SHA-256, for signed payloads ---------------------------------------------------- */

/* A request signed with SigV4 commits to the SHA-256 of its payload, so the node hashes
 * every signed upload twice: MD5 for the ETag and SHA-256 to check the signature. With
 * SHA-NI one SHA-256 stream is bound by the latency of sha256rnds2; several streams
 * interleaved keep the SHA unit busy, and interleaved with the MD5 lanes (which are bound
 * by their own chain's latency, not by the vector units) they cost little more than the
 * MD5 alone: see the fused kernels below. */

static const uint32_t SHA_K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static inline uint32_t load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

#define ROTR32(x, s) (((x) >> (s)) | ((x) << (32 - (s))))

static void sha256_blocks_portable(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
    while (nblocks--) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = load_be32(p + 4 * i);
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROTR32(w[i - 15], 7) ^ ROTR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROTR32(w[i - 2], 17) ^ ROTR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = k + (ROTR32(e, 6) ^ ROTR32(e, 11) ^ ROTR32(e, 25))
                          + ((e & f) ^ (~e & g)) + SHA_K[i] + w[i];
            uint32_t t2 = (ROTR32(a, 2) ^ ROTR32(a, 13) ^ ROTR32(a, 22))
                          + ((a & b) ^ (a & c) ^ (b & c));
            k = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += k;
        p += 64;
    }
}

#ifdef HAVE_X86_KERNELS
#define SHA_ATTRS __attribute__((target("sha,sse4.1,ssse3")))
#define SHA_BSWAP _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL)

/* The SHA-NI instructions keep the state as ABEF and CDGH. */
SHA_ATTRS static inline void sha_ni_load(const uint32_t h[8], __m128i *s0, __m128i *s1)
{
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
    *s0 = _mm_alignr_epi8(abcd, efgh, 8);
    *s1 = _mm_blend_epi16(efgh, abcd, 0xF0);
}

SHA_ATTRS static inline void sha_ni_store(uint32_t h[8], __m128i s0, __m128i s1)
{
    __m128i feba = _mm_shuffle_epi32(s0, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(s1, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* Rounds 4g..4g+3 of the block at q[j], for streams j < ns: states S0/S1[j], message
 * words W[j][4] (a ring of the last sixteen), X[j] scratch. */
#define SHA_GROUP(g, ns)                                                                \
    do {                                                                                \
        const __m128i k_ = _mm_loadu_si128((const __m128i *)&SHA_K[4 * (g)]);           \
        _Pragma("GCC unroll 4") for (int j = 0; j < (ns); j++) {                        \
            if ((g) < 4) {                                                              \
                W[j][(g) & 3] = _mm_shuffle_epi8(                                       \
                    _mm_loadu_si128((const __m128i *)(q[j] + 16 * (g))), bswap);        \
            } else {                                                                    \
                __m128i t_ = _mm_sha256msg1_epu32(W[j][(g) & 3], W[j][((g) + 1) & 3]);  \
                t_ = _mm_add_epi32(t_, _mm_alignr_epi8(W[j][((g) + 3) & 3],             \
                                                       W[j][((g) + 2) & 3], 4));        \
                W[j][(g) & 3] = _mm_sha256msg2_epu32(t_, W[j][((g) + 3) & 3]);          \
            }                                                                           \
            X[j] = _mm_add_epi32(W[j][(g) & 3], k_);                                    \
            S1[j] = _mm_sha256rnds2_epu32(S1[j], S0[j], X[j]);                          \
        }                                                                               \
        _Pragma("GCC unroll 4") for (int j = 0; j < (ns); j++)                          \
            S0[j] = _mm_sha256rnds2_epu32(S0[j], S1[j], _mm_shuffle_epi32(X[j], 0x0E)); \
    } while (0)

SHA_ATTRS static void sha256_blocks_ni(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
    const __m128i bswap = SHA_BSWAP;
    __m128i S0[1], S1[1], W[1][4], X[1];
    const unsigned char *q[1] = {p};
    sha_ni_load(h, &S0[0], &S1[0]);
    while (nblocks--) {
        __m128i save0 = S0[0], save1 = S1[0];
        SHA_GROUP(0, 1); SHA_GROUP(1, 1); SHA_GROUP(2, 1); SHA_GROUP(3, 1);
        SHA_GROUP(4, 1); SHA_GROUP(5, 1); SHA_GROUP(6, 1); SHA_GROUP(7, 1);
        SHA_GROUP(8, 1); SHA_GROUP(9, 1); SHA_GROUP(10, 1); SHA_GROUP(11, 1);
        SHA_GROUP(12, 1); SHA_GROUP(13, 1); SHA_GROUP(14, 1); SHA_GROUP(15, 1);
        S0[0] = _mm_add_epi32(S0[0], save0);
        S1[0] = _mm_add_epi32(S1[0], save1);
        q[0] += 64;
    }
    sha_ni_store(h, S0[0], S1[0]);
}
#endif /* HAVE_X86_KERNELS */

typedef void (*sha_blocks_fn)(uint32_t h[8], const unsigned char *p, size_t nblocks);
static sha_blocks_fn sha256_blocks_impl = sha256_blocks_portable;

static void sha256_blocks(uint32_t *h, const unsigned char *p, size_t nblocks)
{
    sha256_blocks_impl(h, p, nblocks);
}

/* ---- eight lanes --------------------------------------------------------------------- */

/* Up to SHA_SLOTS SHA-256 streams ride along with the MD5 lanes in the fused kernels. */
#define SHA_SLOTS 4
typedef struct {
    uint32_t *h[SHA_SLOTS];
    const unsigned char *ptr[SHA_SLOTS];
    size_t stride[SHA_SLOTS];
} ShaSlots;

/* sha is NULL for the MD5-only kernels. */
typedef void (*lanes_kernel)(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                             const size_t stride[LANES], size_t nblocks, const ShaSlots *sha);

#ifdef HAVE_X86_KERNELS

/* Rows are lanes (eight 32-bit words each); columns come out as vectors of one word. */
#define TRANSPOSE8(r, out)                                                       \
    do {                                                                         \
        __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]);                          \
        __m256i t1 = _mm256_unpackhi_epi32(r[0], r[1]);                          \
        __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]);                          \
        __m256i t3 = _mm256_unpackhi_epi32(r[2], r[3]);                          \
        __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]);                          \
        __m256i t5 = _mm256_unpackhi_epi32(r[4], r[5]);                          \
        __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]);                          \
        __m256i t7 = _mm256_unpackhi_epi32(r[6], r[7]);                          \
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2);                              \
        __m256i u1 = _mm256_unpackhi_epi64(t0, t2);                              \
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3);                              \
        __m256i u3 = _mm256_unpackhi_epi64(t1, t3);                              \
        __m256i u4 = _mm256_unpacklo_epi64(t4, t6);                              \
        __m256i u5 = _mm256_unpackhi_epi64(t4, t6);                              \
        __m256i u6 = _mm256_unpacklo_epi64(t5, t7);                              \
        __m256i u7 = _mm256_unpackhi_epi64(t5, t7);                              \
        (out)[0] = _mm256_permute2x128_si256(u0, u4, 0x20);                      \
        (out)[1] = _mm256_permute2x128_si256(u1, u5, 0x20);                      \
        (out)[2] = _mm256_permute2x128_si256(u2, u6, 0x20);                      \
        (out)[3] = _mm256_permute2x128_si256(u3, u7, 0x20);                      \
        (out)[4] = _mm256_permute2x128_si256(u0, u4, 0x31);                      \
        (out)[5] = _mm256_permute2x128_si256(u1, u5, 0x31);                      \
        (out)[6] = _mm256_permute2x128_si256(u2, u6, 0x31);                      \
        (out)[7] = _mm256_permute2x128_si256(u3, u7, 0x31);                      \
    } while (0)

/* The MD5 of eight lanes, and with ns > 0 the SHA-256 of the streams in sha's ns slots:
 * after each group of four MD5 steps, four SHA-256 rounds of every slot. MD5 waits on its
 * chain's latency; the SHA-NI work fills the vector units meanwhile. */
#define ARRAY_N(ns) ((ns) > 0 ? (ns) : 1)
#define LANES_KERNEL_BODY(ns)                                                    \
    const __m128i bswap = SHA_BSWAP;                                             \
    (void)bswap;                                                                 \
    __m256i a = _mm256_loadu_si256((const __m256i *)st[0]);                      \
    __m256i b = _mm256_loadu_si256((const __m256i *)st[1]);                      \
    __m256i c = _mm256_loadu_si256((const __m256i *)st[2]);                      \
    __m256i d = _mm256_loadu_si256((const __m256i *)st[3]);                      \
    __m128i S0[ARRAY_N(ns)], S1[ARRAY_N(ns)];                                    \
    const unsigned char *p[LANES], *q[ARRAY_N(ns)];                              \
    for (int l = 0; l < LANES; l++)                                              \
        p[l] = ptr[l];                                                           \
    for (int j = 0; j < (ns); j++) {                                             \
        sha_ni_load(sha->h[j], &S0[j], &S1[j]);                                  \
        q[j] = sha->ptr[j];                                                      \
    }                                                                            \
    while (nblocks--) {                                                          \
        __m256i r[LANES], M[16];                                                 \
        __m128i W[ARRAY_N(ns)][4], X[ARRAY_N(ns)];                               \
        __m128i save0[ARRAY_N(ns)], save1[ARRAY_N(ns)];                          \
        for (int l = 0; l < LANES; l++)                                          \
            r[l] = _mm256_loadu_si256((const __m256i *)p[l]);                    \
        TRANSPOSE8(r, M);                                                        \
        for (int l = 0; l < LANES; l++)                                          \
            r[l] = _mm256_loadu_si256((const __m256i *)(p[l] + 32));             \
        TRANSPOSE8(r, M + 8);                                                    \
        for (int j = 0; j < (ns); j++) {                                         \
            save0[j] = S0[j];                                                    \
            save1[j] = S1[j];                                                    \
        }                                                                        \
        __m256i aa = a, bb = b, cc = c, dd = d;                                  \
        STEPS_Q0 SHA_GROUP(0, ns); STEPS_Q1 SHA_GROUP(1, ns);                    \
        STEPS_Q2 SHA_GROUP(2, ns); STEPS_Q3 SHA_GROUP(3, ns);                    \
        STEPS_Q4 SHA_GROUP(4, ns); STEPS_Q5 SHA_GROUP(5, ns);                    \
        STEPS_Q6 SHA_GROUP(6, ns); STEPS_Q7 SHA_GROUP(7, ns);                    \
        STEPS_Q8 SHA_GROUP(8, ns); STEPS_Q9 SHA_GROUP(9, ns);                    \
        STEPS_Q10 SHA_GROUP(10, ns); STEPS_Q11 SHA_GROUP(11, ns);                \
        STEPS_Q12 SHA_GROUP(12, ns); STEPS_Q13 SHA_GROUP(13, ns);                \
        STEPS_Q14 SHA_GROUP(14, ns); STEPS_Q15 SHA_GROUP(15, ns);                \
        a = _mm256_add_epi32(a, aa);                                             \
        b = _mm256_add_epi32(b, bb);                                             \
        c = _mm256_add_epi32(c, cc);                                             \
        d = _mm256_add_epi32(d, dd);                                             \
        for (int j = 0; j < (ns); j++) {                                         \
            S0[j] = _mm_add_epi32(S0[j], save0[j]);                              \
            S1[j] = _mm_add_epi32(S1[j], save1[j]);                              \
            q[j] += sha->stride[j];                                              \
        }                                                                        \
        for (int l = 0; l < LANES; l++)                                          \
            p[l] += stride[l];                                                   \
    }                                                                            \
    _mm256_storeu_si256((__m256i *)st[0], a);                                    \
    _mm256_storeu_si256((__m256i *)st[1], b);                                    \
    _mm256_storeu_si256((__m256i *)st[2], c);                                    \
    _mm256_storeu_si256((__m256i *)st[3], d);                                    \
    for (int j = 0; j < (ns); j++)                                               \
        sha_ni_store(sha->h[j], S0[j], S1[j]);

/* a + M + K does not wait for b: only F, one add, the rotation and one add are on the
 * chain from one step to the next. */
#define STEP(f, a, b, c, d, x, k, s)                                             \
    a = _mm256_add_epi32(a, _mm256_add_epi32(M[x], _mm256_set1_epi32((int)(k)))); \
    a = _mm256_add_epi32(a, f##_V(b, c, d));                                     \
    a = _mm256_add_epi32(ROT_V(a, s), b);

/* AVX2: four logic operations for I, two shifts and an OR for the rotation. */
#define F_V(b, c, d) _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define G_V(b, c, d) _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
#define H_V(b, c, d) _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define I_V(b, c, d) \
    _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))))
#define ROT_V(x, s) _mm256_or_si256(_mm256_slli_epi32(x, s), _mm256_srli_epi32(x, 32 - (s)))

/* GCC's reassociation would put the add of b's function last on the chain again. */
#define KERNEL_ATTRS(isa) __attribute__((target(isa), optimize("no-tree-reassoc")))

KERNEL_ATTRS("avx2,sha,sse4.1,ssse3") static void
md5_lanes_avx2(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
               const size_t stride[LANES], size_t nblocks, const ShaSlots *sha)
{
    LANES_KERNEL_BODY(0)
}

KERNEL_ATTRS("avx2,sha,sse4.1,ssse3") static void
md5_sha_lanes_avx2(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                   const size_t stride[LANES], size_t nblocks, const ShaSlots *sha)
{
    LANES_KERNEL_BODY(SHA_SLOTS)
}

#undef F_V
#undef G_V
#undef H_V
#undef I_V
#undef ROT_V

/* AVX-512VL on 256-bit registers: each round function is one vpternlogd (its immediate is
 * the function's truth table over b=0xF0, c=0xCC, d=0xAA) and the rotation one vprold. */
#define F_V(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0xCA)
#define G_V(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0xE4)
#define H_V(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0x96)
#define I_V(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0x39)
#define ROT_V(x, s) _mm256_rol_epi32(x, s)

KERNEL_ATTRS("avx2,avx512f,avx512vl,sha,sse4.1,ssse3") static void
md5_lanes_avx512(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                 const size_t stride[LANES], size_t nblocks, const ShaSlots *sha)
{
    LANES_KERNEL_BODY(0)
}

KERNEL_ATTRS("avx2,avx512f,avx512vl,sha,sse4.1,ssse3") static void
md5_sha_lanes_avx512(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                     const size_t stride[LANES], size_t nblocks, const ShaSlots *sha)
{
    LANES_KERNEL_BODY(SHA_SLOTS)
}

#undef F_V
#undef G_V
#undef H_V
#undef I_V
#undef ROT_V
#undef STEP
#endif /* HAVE_X86_KERNELS */

/* Portable stand-in with the kernel's signature: the lanes one after the other. */
static void
md5_lanes_serial(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                 const size_t stride[LANES], size_t nblocks, const ShaSlots *sha)
{
    (void)sha;
    for (int l = 0; l < LANES; l++) {
        if (stride[l] == 0)
            continue;
        uint32_t h[4] = {st[0][l], st[1][l], st[2][l], st[3][l]};
        md5_blocks_scalar(h, ptr[l], nblocks);
        st[0][l] = h[0];
        st[1][l] = h[1];
        st[2][l] = h[2];
        st[3][l] = h[3];
    }
}

static lanes_kernel kernel = md5_lanes_serial;
/* The same kernel with SHA-256 in its SHA_SLOTS slots; NULL: SHA-256 after, stream by stream. */
static lanes_kernel kernel_sha = NULL;
static const char *kernel_name = "portable";
static const unsigned char zero_block[64];

/* ---- hash objects: MD5 and SHA-256 --------------------------------------------------- */

typedef struct {
    const char *name;
    int digest_size;
    int big_endian; /* SHA-256: the length and the digest's words are big-endian */
    uint32_t iv[8];
    void (*blocks)(uint32_t *h, const unsigned char *p, size_t nblocks);
} HashKind;

static const HashKind MD5_KIND = {
    "md5", 16, 0, {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u}, md5_blocks_scalar,
};
static const HashKind SHA256_KIND = {
    "sha256", 32, 1,
    {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu,
     0x5be0cd19u},
    sha256_blocks,
};

typedef struct {
    PyObject_HEAD
    const HashKind *kind;
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char buf[64];
    int busy; /* set while a call works on the state without the GIL */
} HashObject;

static PyTypeObject MD5Type;
static PyTypeObject SHA256Type;

/* Absorb [p, p+n) into m: its partial block first, whole blocks straight from p. */
static void hash_absorb(HashObject *m, const unsigned char *p, size_t n)
{
    size_t have = (size_t)(m->nbytes & 63);
    m->nbytes += n;
    if (have) {
        size_t take = 64 - have < n ? 64 - have : n;
        memcpy(m->buf + have, p, take);
        p += take;
        n -= take;
        if (have + take < 64)
            return;
        m->kind->blocks(m->h, m->buf, 1);
    }
    if (n >= 64) {
        m->kind->blocks(m->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    memcpy(m->buf, p, n);
}

static void hash_final(const HashObject *m, unsigned char *out)
{
    const HashKind *kind = m->kind;
    uint32_t h[8];
    memcpy(h, m->h, sizeof h);
    unsigned char block[128];
    size_t have = (size_t)(m->nbytes & 63);
    memcpy(block, m->buf, have);
    block[have] = 0x80;
    size_t total = have < 56 ? 64 : 128;
    memset(block + have + 1, 0, total - have - 1);
    uint64_t bits = m->nbytes * 8;
    for (int i = 0; i < 8; i++)
        block[total - 8 + i] = (unsigned char)(bits >> (kind->big_endian ? 56 - 8 * i : 8 * i));
    kind->blocks(h, block, total / 64);
    for (int i = 0; i < kind->digest_size / 4; i++) {
        uint32_t v = h[i];
        for (int b = 0; b < 4; b++)
            out[4 * i + b] = (unsigned char)(v >> (kind->big_endian ? 24 - 8 * b : 8 * b));
    }
}

static int hash_idle(HashObject *m)
{
    if (m->busy) {
        PyErr_Format(PyExc_RuntimeError, "%s object is being updated by another thread",
                     m->kind->name);
        return -1;
    }
    return 0;
}

static int hash_claim(HashObject *m)
{
    if (hash_idle(m) < 0)
        return -1;
    m->busy = 1;
    return 0;
}

#define GIL_RELEASE_AT 8192

static PyObject *Hash_update(HashObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (hash_claim(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len >= GIL_RELEASE_AT) {
        Py_BEGIN_ALLOW_THREADS
        hash_absorb(self, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        hash_absorb(self, view.buf, (size_t)view.len);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *Hash_digest(HashObject *self, PyObject *Py_UNUSED(ignored))
{
    if (hash_idle(self) < 0)
        return NULL;
    unsigned char out[32];
    hash_final(self, out);
    return PyBytes_FromStringAndSize((const char *)out, self->kind->digest_size);
}

static PyObject *Hash_hexdigest(HashObject *self, PyObject *Py_UNUSED(ignored))
{
    static const char hex[] = "0123456789abcdef";
    if (hash_idle(self) < 0)
        return NULL;
    unsigned char out[32];
    char text[64];
    int n = self->kind->digest_size;
    hash_final(self, out);
    for (int i = 0; i < n; i++) {
        text[2 * i] = hex[out[i] >> 4];
        text[2 * i + 1] = hex[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 2 * n);
}

static PyObject *Hash_copy(HashObject *self, PyObject *Py_UNUSED(ignored))
{
    if (hash_idle(self) < 0)
        return NULL;
    HashObject *m = PyObject_New(HashObject, Py_TYPE(self));
    if (m == NULL)
        return NULL;
    m->kind = self->kind;
    memcpy(m->h, self->h, sizeof m->h);
    memcpy(m->buf, self->buf, sizeof m->buf);
    m->nbytes = self->nbytes;
    m->busy = 0;
    return (PyObject *)m;
}

static PyObject *hash_new(PyTypeObject *type, PyObject *args, PyObject *kwargs,
                          const HashKind *kind)
{
    PyObject *data = NULL;
    static char *kwlist[] = {"data", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &data))
        return NULL;
    HashObject *m = (HashObject *)type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    m->kind = kind;
    memcpy(m->h, kind->iv, sizeof m->h);
    m->nbytes = 0;
    m->busy = 0;
    if (data != NULL) {
        PyObject *r = Hash_update(m, data);
        if (r == NULL) {
            Py_DECREF(m);
            return NULL;
        }
        Py_DECREF(r);
    }
    return (PyObject *)m;
}

static PyObject *MD5_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    return hash_new(type, args, kwargs, &MD5_KIND);
}

static PyObject *SHA256_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    return hash_new(type, args, kwargs, &SHA256_KIND);
}

static PyObject *Hash_get_name(HashObject *self, void *c) { return PyUnicode_FromString(self->kind->name); }
static PyObject *Hash_get_digest_size(HashObject *self, void *c) { return PyLong_FromLong(self->kind->digest_size); }
static PyObject *Hash_get_block_size(HashObject *self, void *c) { return PyLong_FromLong(64); }

static PyMethodDef Hash_methods[] = {
    {"update", (PyCFunction)Hash_update, METH_O, "Hash more bytes."},
    {"digest", (PyCFunction)Hash_digest, METH_NOARGS, "The digest so far."},
    {"hexdigest", (PyCFunction)Hash_hexdigest, METH_NOARGS, "The digest so far, in hex."},
    {"copy", (PyCFunction)Hash_copy, METH_NOARGS, "An independent copy of this state."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Hash_getset[] = {
    {"name", (getter)Hash_get_name, NULL, NULL, NULL},
    {"digest_size", (getter)Hash_get_digest_size, NULL, NULL, NULL},
    {"block_size", (getter)Hash_get_block_size, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MD5Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "silverlining._native._md5lanes.MD5",
    .tp_basicsize = sizeof(HashObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An MD5 state whose updates can share SIMD lanes with other states'.",
    .tp_methods = Hash_methods,
    .tp_getset = Hash_getset,
    .tp_new = MD5_new,
};

static PyTypeObject SHA256Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "silverlining._native._md5lanes.SHA256",
    .tp_basicsize = sizeof(HashObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A SHA-256 state that update_lanes can hash alongside an MD5 state.",
    .tp_methods = Hash_methods,
    .tp_getset = Hash_getset,
    .tp_new = SHA256_new,
};

/* ---- update_lanes -------------------------------------------------------------------- */

/* One stream's bytes for this call: one or more buffers, read as if joined, hashed into
 * its MD5 state and, when given one, its SHA-256 state. */
typedef struct {
    HashObject *m;
    HashObject *s;       /* SHA-256 hashed along the lanes, or NULL */
    HashObject *claimed; /* the SHA-256 state given (hashed apart if not block-aligned with m) */
    Py_buffer *views;
    Py_ssize_t nviews;
    Py_ssize_t seg;      /* current buffer */
    size_t off;          /* offset in it */
    size_t left;         /* bytes not yet consumed, all buffers */
    uint64_t total;      /* bytes in all buffers */
    unsigned char scratch[64]; /* a block that straddles two buffers */
} Job;

static void job_skip_empty(Job *j)
{
    while (j->seg < j->nviews && j->off == (size_t)j->views[j->seg].len) {
        j->seg++;
        j->off = 0;
    }
}

/* Copy the next n bytes (n <= left) to dst, across buffers. */
static void job_read(Job *j, unsigned char *dst, size_t n)
{
    while (n) {
        job_skip_empty(j);
        size_t avail = (size_t)j->views[j->seg].len - j->off;
        size_t take = avail < n ? avail : n;
        memcpy(dst, (const unsigned char *)j->views[j->seg].buf + j->off, take);
        dst += take;
        n -= take;
        j->off += take;
        j->left -= take;
    }
}

/* Copy the next n bytes into both states' partial blocks at offset at. */
static void job_read_partial(Job *j, size_t at, size_t n)
{
    job_read(j, j->m->buf + at, n);
    if (j->s != NULL)
        memcpy(j->s->buf + at, j->m->buf + at, n);
}

/* Where the job's next full blocks are: in its buffer (returns how many lie there), or one
 * block assembled in scratch (returns 1 and sets *copied). Requires left >= 64. */
static size_t job_next(Job *j, const unsigned char **ptr, int *copied)
{
    job_skip_empty(j);
    size_t avail = (size_t)j->views[j->seg].len - j->off;
    if (avail >= 64) {
        *ptr = (const unsigned char *)j->views[j->seg].buf + j->off;
        *copied = 0;
        return avail / 64;
    }
    job_read(j, j->scratch, 64);
    *ptr = j->scratch;
    *copied = 1;
    return 1;
}

static void job_advance(Job *j, size_t nbytes)
{
    j->off += nbytes;
    j->left -= nbytes;
}

/* SHA-256 of the lanes that carry one: in the fused kernel's slots when there is one (the
 * first SHA_SLOTS such lanes; idle slots hash a zero block into a scratch state), the rest
 * stream by stream. Returns whether the MD5 lanes were hashed too. */
static int run_sha(lanes_kernel fused, Job *group, Py_ssize_t count, uint32_t st[4][LANES],
                   const unsigned char *ptr[LANES], const size_t stride[LANES], size_t step)
{
    ShaSlots slots;
    uint32_t idle[SHA_SLOTS][8];
    int used = 0;
    for (Py_ssize_t l = 0; l < count; l++) {
        if (group[l].s == NULL || ptr[l] == zero_block)
            continue;
        if (fused != NULL && used < SHA_SLOTS) {
            slots.h[used] = group[l].s->h;
            slots.ptr[used] = ptr[l];
            slots.stride[used] = stride[l];
            used++;
        } else {
            sha256_blocks(group[l].s->h, ptr[l], step);
        }
    }
    if (used == 0)
        return 0;
    for (int k = used; k < SHA_SLOTS; k++) {
        slots.h[k] = idle[k];
        slots.ptr[k] = zero_block;
        slots.stride[k] = 0;
        memcpy(idle[k], SHA256_KIND.iv, sizeof idle[k]);
    }
    fused(st, ptr, stride, step, &slots);
    return 1;
}

/* Hash each job's bytes into its states; jobs with whole blocks to go share the lanes. The
 * kernels are read once: use_kernel may run meanwhile (the GIL is released). */
static void run_jobs(Job *jobs, Py_ssize_t n, lanes_kernel md5_only, lanes_kernel fused)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Job *j = &jobs[i];
        HashObject *m = j->m;
        size_t have = (size_t)(m->nbytes & 63);
        if (j->s != NULL && (j->s->nbytes & 63) != have) {
            /* Not block-aligned with the MD5 (updated apart): hash it apart, first. */
            for (Py_ssize_t v = 0; v < j->nviews; v++)
                hash_absorb(j->s, j->views[v].buf, (size_t)j->views[v].len);
            j->s = NULL;
        }
        if (have) { /* complete the states' partial block first, on their own */
            size_t need = 64 - have;
            if (j->left < need) {
                job_read_partial(j, have, j->left);
                continue;
            }
            job_read_partial(j, have, need);
            md5_blocks_scalar(m->h, m->buf, 1);
            if (j->s != NULL)
                sha256_blocks(j->s->h, j->s->buf, 1);
        }
    }
    for (Py_ssize_t first = 0; first < n; first += LANES) {
        Py_ssize_t count = n - first < LANES ? n - first : LANES;
        Job *group = jobs + first;
        uint32_t st[4][LANES];
        const unsigned char *ptr[LANES];
        size_t stride[LANES];
        int copied[LANES];
        for (;;) {
            size_t step = 0;
            int active = 0;
            for (Py_ssize_t l = 0; l < LANES; l++) {
                if (l < count && group[l].left >= 64) {
                    size_t avail = job_next(&group[l], &ptr[l], &copied[l]);
                    if (step == 0 || avail < step)
                        step = avail;
                    active++;
                } else {
                    ptr[l] = zero_block;
                    copied[l] = 0;
                }
            }
            if (active == 0)
                break;
            /* A block in scratch is one block: then everyone does one this round. */
            for (Py_ssize_t l = 0; l < count; l++)
                if (copied[l])
                    step = 1;
            if (active == 1) { /* nobody to share with: one lane in plain C */
                for (Py_ssize_t l = 0; l < count; l++) {
                    if (ptr[l] == zero_block)
                        continue;
                    md5_blocks_scalar(group[l].m->h, ptr[l], step);
                    if (group[l].s != NULL)
                        sha256_blocks(group[l].s->h, ptr[l], step);
                    if (!copied[l])
                        job_advance(&group[l], 64 * step);
                }
                continue;
            }
            for (Py_ssize_t l = 0; l < LANES; l++) {
                int on = ptr[l] != zero_block;
                for (int w = 0; w < 4; w++)
                    st[w][l] = on ? group[l].m->h[w] : 0;
                stride[l] = on ? 64 : 0;
            }
            if (!run_sha(fused, group, count, st, ptr, stride, step))
                md5_only(st, ptr, stride, step, NULL);
            for (Py_ssize_t l = 0; l < count; l++) {
                if (ptr[l] == zero_block)
                    continue;
                for (int w = 0; w < 4; w++)
                    group[l].m->h[w] = st[w][l];
                if (!copied[l])
                    job_advance(&group[l], 64 * step);
            }
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* Bytes left (fewer than a block) start a block: whatever filled the states'
         * partial block came first. If they all went there, none are left. */
        Job *j = &jobs[i];
        job_read_partial(j, 0, j->left);
        j->m->nbytes += j->total;
        if (j->s != NULL)
            j->s->nbytes += j->total;
    }
}

static void release_job(Job *j)
{
    for (Py_ssize_t v = 0; v < j->nviews; v++)
        PyBuffer_Release(&j->views[v]);
    PyMem_Free(j->views);
    j->views = NULL;
    j->nviews = 0;
}

/* Fill j from (md5, data) or (md5, data, sha256 or None); data is a buffer or a list or
 * tuple of buffers. */
static int prepare_job(Job *j, PyObject *item)
{
    Py_ssize_t size = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 0;
    PyObject *sha = size == 3 ? PyTuple_GET_ITEM(item, 2) : Py_None;
    if ((size != 2 && size != 3) || !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 0), &MD5Type)
        || (sha != Py_None && !PyObject_TypeCheck(sha, &SHA256Type))) {
        PyErr_SetString(PyExc_TypeError,
                        "update_lanes() items must be (MD5, data) or (MD5, data, SHA256 or "
                        "None), data bytes or a list of bytes");
        return -1;
    }
    PyObject *data = PyTuple_GET_ITEM(item, 1);
    int many = PyList_Check(data) || PyTuple_Check(data);
    Py_ssize_t count = many ? PySequence_Fast_GET_SIZE(data) : 1;
    j->views = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Py_buffer));
    if (j->views == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t v = 0; v < count; v++) {
        PyObject *obj = many ? PySequence_Fast_ITEMS(data)[v] : data;
        if (PyObject_GetBuffer(obj, &j->views[v], PyBUF_SIMPLE) < 0) {
            release_job(j);
            return -1;
        }
        j->nviews = v + 1;
        j->total += (uint64_t)j->views[v].len;
    }
    j->left = (size_t)j->total;
    HashObject *m = (HashObject *)PyTuple_GET_ITEM(item, 0);
    if (hash_claim(m) < 0) { /* also catches one state given twice */
        release_job(j);
        return -1;
    }
    if (sha != Py_None && hash_claim((HashObject *)sha) < 0) {
        m->busy = 0;
        release_job(j);
        return -1;
    }
    /* Owned while the GIL is released: the caller's sequence could drop them meanwhile. */
    Py_INCREF(m);
    j->m = m;
    if (sha != Py_None) {
        Py_INCREF(sha);
        j->s = j->claimed = (HashObject *)sha;
    }
    return 0;
}

static PyObject *update_lanes(PyObject *module, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "update_lanes() takes a sequence of (MD5, data)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Job *jobs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Job));
    if (jobs == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t ready = 0;
    PyObject *result = NULL;
    for (; ready < n; ready++) {
        if (prepare_job(&jobs[ready], PySequence_Fast_GET_ITEM(seq, ready)) < 0)
            goto done;
    }
    lanes_kernel md5_only = kernel, fused = kernel_sha;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(jobs, n, md5_only, fused);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t i = 0; i < ready; i++) {
        jobs[i].m->busy = 0;
        Py_DECREF(jobs[i].m);
        if (jobs[i].claimed != NULL) {
            jobs[i].claimed->busy = 0;
            Py_DECREF(jobs[i].claimed);
        }
        release_job(&jobs[i]);
    }
    PyMem_Free(jobs);
    Py_DECREF(seq);
    return result;
}

/* ---- kernel choice ------------------------------------------------------------------- */

static int cpu_has_sha_ni(void)
{
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    unsigned int eax, ebx, ecx, edx;
    /* GCC's __builtin_cpu_supports("sha") is recent; ask CPUID leaf 7 (EBX bit 29). */
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return 0;
    return __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3")
           && ((ebx >> 29) & 1);
#else
    return 0;
#endif
}

/* Select the MD5 lanes kernel by name; SHA-256 uses SHA-NI (fused with the lanes) unless
 * the portable kernel is asked for or the CPU lacks it. Returns 0, or -1 if unavailable. */
static int select_kernel(const char *name)
{
    int sha_ni = cpu_has_sha_ni();
    if (strcmp(name, "portable") == 0) {
        kernel = md5_lanes_serial;
        kernel_sha = NULL;
        kernel_name = "portable";
        sha256_blocks_impl = sha256_blocks_portable;
        return 0;
    }
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        kernel = md5_lanes_avx2;
        kernel_sha = sha_ni ? md5_sha_lanes_avx2 : NULL;
        kernel_name = "avx2";
        sha256_blocks_impl = sha_ni ? sha256_blocks_ni : sha256_blocks_portable;
        return 0;
    }
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        kernel = md5_lanes_avx512;
        kernel_sha = sha_ni ? md5_sha_lanes_avx512 : NULL;
        kernel_name = "avx512";
        sha256_blocks_impl = sha_ni ? sha256_blocks_ni : sha256_blocks_portable;
        return 0;
    }
#endif
    (void)sha_ni;
    return -1;
}

static PyObject *use_kernel(PyObject *module, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    if (select_kernel(name) < 0) {
        PyErr_Format(PyExc_ValueError, "kernel %R is not available on this CPU", arg);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *available_kernels(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    const char *found[3];
    int n = 0;
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512vl"))
        found[n++] = "avx512";
    if (__builtin_cpu_supports("avx2"))
        found[n++] = "avx2";
#endif
    found[n++] = "portable";
    PyObject *names = PyList_New(n);
    if (names == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *name = PyUnicode_FromString(found[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyList_SET_ITEM(names, i, name);
    }
    return names;
}

static PyObject *current_kernel(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(kernel_name);
}

static PyObject *current_sha256_kernel(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    if (kernel_sha != NULL)
        return PyUnicode_FromString("sha-ni, in the lanes");
    return PyUnicode_FromString(sha256_blocks_impl == sha256_blocks_portable ? "portable" : "sha-ni");
}

static PyMethodDef module_methods[] = {
    {"update_lanes", update_lanes, METH_O,
     "update_lanes([(md5, data or [data, ...][, sha256 or None]), ...]): hash into each "
     "state, side by side."},
    {"use_kernel", use_kernel, METH_O, "Select the lanes kernel by name (tests)."},
    {"available_kernels", available_kernels, METH_NOARGS, "Kernels this CPU can run, best first."},
    {"kernel", current_kernel, METH_NOARGS, "The MD5 lanes kernel in use."},
    {"sha256_kernel", current_sha256_kernel, METH_NOARGS, "How SHA256 states are hashed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef md5lanes_module = {
    PyModuleDef_HEAD_INIT, "_md5lanes", "Multi-lane MD5, with SHA-256 alongside.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__md5lanes(void)
{
    if (PyType_Ready(&MD5Type) < 0 || PyType_Ready(&SHA256Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&md5lanes_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "MD5", (PyObject *)&MD5Type) < 0
        || PyModule_AddObjectRef(module, "SHA256", (PyObject *)&SHA256Type) < 0
        || PyModule_AddIntConstant(module, "LANES", LANES) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (select_kernel("avx512") < 0 && select_kernel("avx2") < 0)
        select_kernel("portable");
    return module;
}
