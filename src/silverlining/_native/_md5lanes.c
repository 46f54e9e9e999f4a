/* Multi-lane MD5: up to eight independent MD5 streams hashed side by side in SIMD lanes.
 *
 * MD5 is a chain of 64 dependent steps per 64-byte block: one stream cannot go faster than
 * the latency of that chain (~4-5 cycles per byte here, which is what hashlib/OpenSSL
 * reach). Eight streams in the eight 32-bit lanes of a 256-bit register take the same
 * latency per step, so concurrent uploads are hashed for about the cost of one. The node
 * feeds this from one thread that gathers the pending MD5 work of every upload
 * (silverlining.node.domain.md5lanes).
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
#include <immintrin.h>
#endif

#define LANES 8
#define STEPS_64 \
    STEP(F, a, b, c, d, 0, 0xd76aa478u, 7); \
STEP(F, d, a, b, c, 1, 0xe8c7b756u, 12); \
STEP(F, c, d, a, b, 2, 0x242070dbu, 17); \
STEP(F, b, c, d, a, 3, 0xc1bdceeeu, 22); \
STEP(F, a, b, c, d, 4, 0xf57c0fafu, 7); \
STEP(F, d, a, b, c, 5, 0x4787c62au, 12); \
STEP(F, c, d, a, b, 6, 0xa8304613u, 17); \
STEP(F, b, c, d, a, 7, 0xfd469501u, 22); \
STEP(F, a, b, c, d, 8, 0x698098d8u, 7); \
STEP(F, d, a, b, c, 9, 0x8b44f7afu, 12); \
STEP(F, c, d, a, b, 10, 0xffff5bb1u, 17); \
STEP(F, b, c, d, a, 11, 0x895cd7beu, 22); \
STEP(F, a, b, c, d, 12, 0x6b901122u, 7); \
STEP(F, d, a, b, c, 13, 0xfd987193u, 12); \
STEP(F, c, d, a, b, 14, 0xa679438eu, 17); \
STEP(F, b, c, d, a, 15, 0x49b40821u, 22); \
STEP(G, a, b, c, d, 1, 0xf61e2562u, 5); \
STEP(G, d, a, b, c, 6, 0xc040b340u, 9); \
STEP(G, c, d, a, b, 11, 0x265e5a51u, 14); \
STEP(G, b, c, d, a, 0, 0xe9b6c7aau, 20); \
STEP(G, a, b, c, d, 5, 0xd62f105du, 5); \
STEP(G, d, a, b, c, 10, 0x02441453u, 9); \
STEP(G, c, d, a, b, 15, 0xd8a1e681u, 14); \
STEP(G, b, c, d, a, 4, 0xe7d3fbc8u, 20); \
STEP(G, a, b, c, d, 9, 0x21e1cde6u, 5); \
STEP(G, d, a, b, c, 14, 0xc33707d6u, 9); \
STEP(G, c, d, a, b, 3, 0xf4d50d87u, 14); \
STEP(G, b, c, d, a, 8, 0x455a14edu, 20); \
STEP(G, a, b, c, d, 13, 0xa9e3e905u, 5); \
STEP(G, d, a, b, c, 2, 0xfcefa3f8u, 9); \
STEP(G, c, d, a, b, 7, 0x676f02d9u, 14); \
STEP(G, b, c, d, a, 12, 0x8d2a4c8au, 20); \
STEP(H, a, b, c, d, 5, 0xfffa3942u, 4); \
STEP(H, d, a, b, c, 8, 0x8771f681u, 11); \
STEP(H, c, d, a, b, 11, 0x6d9d6122u, 16); \
STEP(H, b, c, d, a, 14, 0xfde5380cu, 23); \
STEP(H, a, b, c, d, 1, 0xa4beea44u, 4); \
STEP(H, d, a, b, c, 4, 0x4bdecfa9u, 11); \
STEP(H, c, d, a, b, 7, 0xf6bb4b60u, 16); \
STEP(H, b, c, d, a, 10, 0xbebfbc70u, 23); \
STEP(H, a, b, c, d, 13, 0x289b7ec6u, 4); \
STEP(H, d, a, b, c, 0, 0xeaa127fau, 11); \
STEP(H, c, d, a, b, 3, 0xd4ef3085u, 16); \
STEP(H, b, c, d, a, 6, 0x04881d05u, 23); \
STEP(H, a, b, c, d, 9, 0xd9d4d039u, 4); \
STEP(H, d, a, b, c, 12, 0xe6db99e5u, 11); \
STEP(H, c, d, a, b, 15, 0x1fa27cf8u, 16); \
STEP(H, b, c, d, a, 2, 0xc4ac5665u, 23); \
STEP(I, a, b, c, d, 0, 0xf4292244u, 6); \
STEP(I, d, a, b, c, 7, 0x432aff97u, 10); \
STEP(I, c, d, a, b, 14, 0xab9423a7u, 15); \
STEP(I, b, c, d, a, 5, 0xfc93a039u, 21); \
STEP(I, a, b, c, d, 12, 0x655b59c3u, 6); \
STEP(I, d, a, b, c, 3, 0x8f0ccc92u, 10); \
STEP(I, c, d, a, b, 10, 0xffeff47du, 15); \
STEP(I, b, c, d, a, 1, 0x85845dd1u, 21); \
STEP(I, a, b, c, d, 8, 0x6fa87e4fu, 6); \
STEP(I, d, a, b, c, 15, 0xfe2ce6e0u, 10); \
STEP(I, c, d, a, b, 6, 0xa3014314u, 15); \
STEP(I, b, c, d, a, 13, 0x4e0811a1u, 21); \
STEP(I, a, b, c, d, 4, 0xf7537e82u, 6); \
STEP(I, d, a, b, c, 11, 0xbd3af235u, 10); \
STEP(I, c, d, a, b, 2, 0x2ad7d2bbu, 15); \
STEP(I, b, c, d, a, 9, 0xeb86d391u, 21);

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
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

/* ---- eight lanes --------------------------------------------------------------------- */

typedef void (*lanes_kernel)(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                             const size_t stride[LANES], size_t nblocks);

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

#define LANES_KERNEL_BODY                                                        \
    __m256i a = _mm256_loadu_si256((const __m256i *)st[0]);                      \
    __m256i b = _mm256_loadu_si256((const __m256i *)st[1]);                      \
    __m256i c = _mm256_loadu_si256((const __m256i *)st[2]);                      \
    __m256i d = _mm256_loadu_si256((const __m256i *)st[3]);                      \
    const unsigned char *p[LANES];                                               \
    for (int l = 0; l < LANES; l++)                                              \
        p[l] = ptr[l];                                                           \
    while (nblocks--) {                                                          \
        __m256i r[LANES], M[16];                                                 \
        for (int l = 0; l < LANES; l++)                                          \
            r[l] = _mm256_loadu_si256((const __m256i *)p[l]);                    \
        TRANSPOSE8(r, M);                                                        \
        for (int l = 0; l < LANES; l++)                                          \
            r[l] = _mm256_loadu_si256((const __m256i *)(p[l] + 32));             \
        TRANSPOSE8(r, M + 8);                                                    \
        __m256i aa = a, bb = b, cc = c, dd = d;                                  \
        STEPS_64                                                                 \
        a = _mm256_add_epi32(a, aa);                                             \
        b = _mm256_add_epi32(b, bb);                                             \
        c = _mm256_add_epi32(c, cc);                                             \
        d = _mm256_add_epi32(d, dd);                                             \
        for (int l = 0; l < LANES; l++)                                          \
            p[l] += stride[l];                                                   \
    }                                                                            \
    _mm256_storeu_si256((__m256i *)st[0], a);                                    \
    _mm256_storeu_si256((__m256i *)st[1], b);                                    \
    _mm256_storeu_si256((__m256i *)st[2], c);                                    \
    _mm256_storeu_si256((__m256i *)st[3], d);

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

KERNEL_ATTRS("avx2") static void
md5_lanes_avx2(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
               const size_t stride[LANES], size_t nblocks)
{
    LANES_KERNEL_BODY
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

KERNEL_ATTRS("avx2,avx512f,avx512vl") static void
md5_lanes_avx512(uint32_t st[4][LANES], const unsigned char *ptr[LANES],
                 const size_t stride[LANES], size_t nblocks)
{
    LANES_KERNEL_BODY
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
                 const size_t stride[LANES], size_t nblocks)
{
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
static const char *kernel_name = "portable";
static const unsigned char zero_block[64];

/* ---- the MD5 object ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    uint32_t h[4];
    uint64_t nbytes;
    unsigned char buf[64];
    int busy; /* set while a call works on the state without the GIL */
} MD5Object;

static PyTypeObject MD5Type;

static void md5_init_state(MD5Object *m)
{
    m->h[0] = 0x67452301u;
    m->h[1] = 0xefcdab89u;
    m->h[2] = 0x98badcfeu;
    m->h[3] = 0x10325476u;
    m->nbytes = 0;
    m->busy = 0;
}

/* Absorb [p, p+n) into m; full blocks go through md5_blocks_scalar. */
static void md5_absorb(MD5Object *m, const unsigned char *p, size_t n)
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
        md5_blocks_scalar(m->h, m->buf, 1);
    }
    if (n >= 64) {
        md5_blocks_scalar(m->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    memcpy(m->buf, p, n);
}

static void md5_final(const MD5Object *m, unsigned char out[16])
{
    uint32_t h[4] = {m->h[0], m->h[1], m->h[2], m->h[3]};
    unsigned char block[128];
    size_t have = (size_t)(m->nbytes & 63);
    memcpy(block, m->buf, have);
    block[have] = 0x80;
    size_t total = have < 56 ? 64 : 128;
    memset(block + have + 1, 0, total - have - 1);
    uint64_t bits = m->nbytes * 8;
    for (int i = 0; i < 8; i++)
        block[total - 8 + i] = (unsigned char)(bits >> (8 * i));
    md5_blocks_scalar(h, block, total / 64);
    for (int i = 0; i < 4; i++)
        store_le32(out + 4 * i, h[i]);
}

static int md5_claim(MD5Object *m)
{
    if (m->busy) {
        PyErr_SetString(PyExc_RuntimeError, "MD5 object is being updated by another thread");
        return -1;
    }
    m->busy = 1;
    return 0;
}

#define GIL_RELEASE_AT 8192

static PyObject *MD5_update(MD5Object *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (md5_claim(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len >= GIL_RELEASE_AT) {
        Py_BEGIN_ALLOW_THREADS
        md5_absorb(self, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        md5_absorb(self, view.buf, (size_t)view.len);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *MD5_digest(MD5Object *self, PyObject *Py_UNUSED(ignored))
{
    unsigned char out[16];
    md5_final(self, out);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyObject *MD5_hexdigest(MD5Object *self, PyObject *Py_UNUSED(ignored))
{
    static const char hex[] = "0123456789abcdef";
    unsigned char out[16];
    char text[32];
    md5_final(self, out);
    for (int i = 0; i < 16; i++) {
        text[2 * i] = hex[out[i] >> 4];
        text[2 * i + 1] = hex[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 32);
}

static PyObject *MD5_copy(MD5Object *self, PyObject *Py_UNUSED(ignored))
{
    MD5Object *m = PyObject_New(MD5Object, &MD5Type);
    if (m == NULL)
        return NULL;
    memcpy(m->h, self->h, sizeof m->h);
    memcpy(m->buf, self->buf, sizeof m->buf);
    m->nbytes = self->nbytes;
    m->busy = 0;
    return (PyObject *)m;
}

static PyObject *MD5_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *data = NULL;
    static char *kwlist[] = {"data", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:MD5", kwlist, &data))
        return NULL;
    MD5Object *m = (MD5Object *)type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    md5_init_state(m);
    if (data != NULL) {
        PyObject *r = MD5_update(m, data);
        if (r == NULL) {
            Py_DECREF(m);
            return NULL;
        }
        Py_DECREF(r);
    }
    return (PyObject *)m;
}

static PyObject *MD5_get_name(PyObject *self, void *closure) { return PyUnicode_FromString("md5"); }
static PyObject *MD5_get_digest_size(PyObject *self, void *c) { return PyLong_FromLong(16); }
static PyObject *MD5_get_block_size(PyObject *self, void *c) { return PyLong_FromLong(64); }

static PyMethodDef MD5_methods[] = {
    {"update", (PyCFunction)MD5_update, METH_O, "Hash more bytes."},
    {"digest", (PyCFunction)MD5_digest, METH_NOARGS, "The 16-byte digest so far."},
    {"hexdigest", (PyCFunction)MD5_hexdigest, METH_NOARGS, "The digest so far, in hex."},
    {"copy", (PyCFunction)MD5_copy, METH_NOARGS, "An independent copy of this state."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef MD5_getset[] = {
    {"name", MD5_get_name, NULL, NULL, NULL},
    {"digest_size", MD5_get_digest_size, NULL, NULL, NULL},
    {"block_size", MD5_get_block_size, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MD5Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "silverlining._native._md5lanes.MD5",
    .tp_basicsize = sizeof(MD5Object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An MD5 state whose updates can share SIMD lanes with other states'.",
    .tp_methods = MD5_methods,
    .tp_getset = MD5_getset,
    .tp_new = MD5_new,
};

/* ---- update_lanes -------------------------------------------------------------------- */

/* One state's bytes for this call: one or more buffers, read as if joined. */
typedef struct {
    MD5Object *m;
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

/* Hash each job's bytes into its state; states with whole blocks to go share the lanes. */
static void run_jobs(Job *jobs, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Job *j = &jobs[i];
        MD5Object *m = j->m;
        size_t have = (size_t)(m->nbytes & 63);
        if (have) { /* complete the state's partial block first, on its own */
            size_t need = 64 - have;
            if (j->left < need) {
                job_read(j, m->buf + have, j->left);
                continue;
            }
            job_read(j, m->buf + have, need);
            md5_blocks_scalar(m->h, m->buf, 1);
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
                    md5_blocks_scalar(group[l].m->h, ptr[l], copied[l] ? 1 : step);
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
            kernel(st, ptr, stride, step);
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
        /* Bytes left (fewer than a block) start a block: whatever filled the state's
         * partial block came first. If they all went there, none are left. */
        Job *j = &jobs[i];
        job_read(j, j->m->buf, j->left);
        j->m->nbytes += j->total;
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

/* Fill j from (md5, data) where data is a buffer or a list/tuple of buffers. */
static int prepare_job(Job *j, PyObject *item)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 0), &MD5Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "update_lanes() items must be (MD5, bytes or list of bytes) pairs");
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
    MD5Object *m = (MD5Object *)PyTuple_GET_ITEM(item, 0);
    if (md5_claim(m) < 0) { /* also catches one state given twice */
        release_job(j);
        return -1;
    }
    j->m = m;
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
    Py_BEGIN_ALLOW_THREADS
    run_jobs(jobs, n);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t i = 0; i < ready; i++) {
        jobs[i].m->busy = 0;
        release_job(&jobs[i]);
    }
    PyMem_Free(jobs);
    Py_DECREF(seq);
    return result;
}

static PyObject *use_kernel(PyObject *module, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    if (strcmp(name, "portable") == 0) {
        kernel = md5_lanes_serial;
        kernel_name = "portable";
        Py_RETURN_NONE;
    }
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        kernel = md5_lanes_avx2;
        kernel_name = "avx2";
        Py_RETURN_NONE;
    }
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        kernel = md5_lanes_avx512;
        kernel_name = "avx512";
        Py_RETURN_NONE;
    }
#endif
    PyErr_Format(PyExc_ValueError, "kernel %R is not available on this CPU", arg);
    return NULL;
}

static PyObject *available_kernels(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *names = PyList_New(0);
    if (names == NULL)
        return NULL;
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512vl") && PyList_Append(names, PyUnicode_FromString("avx512")) < 0)
        goto fail;
    if (__builtin_cpu_supports("avx2") && PyList_Append(names, PyUnicode_FromString("avx2")) < 0)
        goto fail;
#endif
    if (PyList_Append(names, PyUnicode_FromString("portable")) < 0)
        goto fail;
    return names;
fail:
    Py_DECREF(names);
    return NULL;
}

static PyObject *current_kernel(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(kernel_name);
}

static PyMethodDef module_methods[] = {
    {"update_lanes", update_lanes, METH_O,
     "update_lanes([(md5, data or [data, ...]), ...]): hash into each MD5 state, side by side."},
    {"use_kernel", use_kernel, METH_O, "Select the lanes kernel by name (tests)."},
    {"available_kernels", available_kernels, METH_NOARGS, "Kernels this CPU can run, best first."},
    {"kernel", current_kernel, METH_NOARGS, "The kernel in use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef md5lanes_module = {
    PyModuleDef_HEAD_INIT, "_md5lanes", "Multi-lane MD5.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__md5lanes(void)
{
    if (PyType_Ready(&MD5Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&md5lanes_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&MD5Type);
    if (PyModule_AddObject(module, "MD5", (PyObject *)&MD5Type) < 0
        || PyModule_AddIntConstant(module, "LANES", LANES) < 0) {
        Py_DECREF(&MD5Type);
        Py_DECREF(module);
        return NULL;
    }
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512vl")) {
        kernel = md5_lanes_avx512;
        kernel_name = "avx512";
    } else if (__builtin_cpu_supports("avx2")) {
        kernel = md5_lanes_avx2;
        kernel_name = "avx2";
    }
#endif
    return module;
}
