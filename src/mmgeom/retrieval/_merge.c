/*
 * Running top-c merge of a score block, one pass over the block (mmgeom.retrieval, not public API).
 *
 * Built at first use by mmgeom/retrieval/_native.py (plain C, no Python or torch headers) and called
 * through ctypes, which releases the GIL: the caller runs row ranges on several Python threads.
 *
 * Order: higher score first; equal scores, lower gallery index first. Each row's running top-c is kept
 * as a binary heap whose root is its worst entry (lowest score; among equal scores the highest index).
 * Blocks arrive in gallery order and a block is scanned left to right, so a new element always has a
 * higher index than every kept one: it enters exactly when its score is strictly greater than the
 * root's. NaN never compares greater, so it never enters (the callers reject NaN input beforehand).
 * The heap is rebuilt at the start of every call, so callers may hand in rows in any order.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MM_GROUP 32

typedef float mm_v8f __attribute__((vector_size(32)));
typedef double mm_v4d __attribute__((vector_size(32)));
typedef int32_t mm_v8i __attribute__((vector_size(32)));
typedef int64_t mm_v4l __attribute__((vector_size(32)));

/* Whether any of s[0..31] is greater than thr: four vector compares instead of 32 branches. */
static inline int mm_any_f32(const float *s, float thr) {
    mm_v8f a, b, c, d, t = {thr, thr, thr, thr, thr, thr, thr, thr};
    memcpy(&a, s, 32);
    memcpy(&b, s + 8, 32);
    memcpy(&c, s + 16, 32);
    memcpy(&d, s + 24, 32);
    mm_v8i m = (a > t) | (b > t) | (c > t) | (d > t);
    int64_t x[4];
    memcpy(x, &m, 32);
    return (x[0] | x[1] | x[2] | x[3]) != 0;
}

static inline int mm_any_f64(const double *s, double thr) {
    mm_v4d t = {thr, thr, thr, thr};
    mm_v4l m = {0, 0, 0, 0};
    for (int i = 0; i < MM_GROUP; i += 16) {
        mm_v4d a, b, c, d;
        memcpy(&a, s + i, 32);
        memcpy(&b, s + i + 4, 32);
        memcpy(&c, s + i + 8, 32);
        memcpy(&d, s + i + 12, 32);
        m |= (a > t) | (b > t) | (c > t) | (d > t);
    }
    int64_t x[4];
    memcpy(x, &m, 32);
    return (x[0] | x[1] | x[2] | x[3]) != 0;
}

#define MM_WORSE(va, ia, vb, ib) ((va) < (vb) || ((va) == (vb) && (ia) > (ib)))

#define MM_DEFINE_MERGE(NAME, T, ANY)                                                               \
    static void NAME##_sift(T *v, int64_t *ix, int64_t n, int64_t i) {                              \
        for (;;) {                                                                                  \
            int64_t l = 2 * i + 1, w = i;                                                           \
            if (l >= n) return;                                                                     \
            if (MM_WORSE(v[l], ix[l], v[w], ix[w])) w = l;                                          \
            if (l + 1 < n && MM_WORSE(v[l + 1], ix[l + 1], v[w], ix[w])) w = l + 1;                 \
            if (w == i) return;                                                                     \
            T tv = v[i];                                                                            \
            v[i] = v[w];                                                                            \
            v[w] = tv;                                                                              \
            int64_t ti = ix[i];                                                                     \
            ix[i] = ix[w];                                                                          \
            ix[w] = ti;                                                                             \
            i = w;                                                                                  \
        }                                                                                           \
    }                                                                                               \
                                                                                                    \
    void NAME(const T *block, int64_t rows, int64_t width, int64_t ld, int64_t offset, T *run_v,    \
              int64_t *run_i, int64_t c) {                                                          \
        for (int64_t r = 0; r < rows; r++) {                                                        \
            T *hv = run_v + r * c;                                                                  \
            int64_t *hi = run_i + r * c;                                                            \
            for (int64_t i = c / 2 - 1; i >= 0; i--) NAME##_sift(hv, hi, c, i);                     \
            T thr = hv[0];                                                                          \
            const T *s = block + r * ld;                                                            \
            int64_t j = 0;                                                                          \
            for (; j < width; j++) {                                                                \
                if (j % MM_GROUP == 0 && j + MM_GROUP <= width && !ANY(s + j, thr)) {               \
                    j += MM_GROUP - 1;                                                              \
                    continue;                                                                       \
                }                                                                                   \
                T x = s[j];                                                                         \
                if (x > thr) {                                                                      \
                    hv[0] = x;                                                                      \
                    hi[0] = offset + j;                                                             \
                    NAME##_sift(hv, hi, c, 0);                                                      \
                    thr = hv[0];                                                                    \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

MM_DEFINE_MERGE(mmgeom_merge_f32, float, mm_any_f32)
MM_DEFINE_MERGE(mmgeom_merge_f64, double, mm_any_f64)

/*
 * Rank counting of a score block against each query's positives (mmgeom.retrieval._fused_ranks).
 *
 * For row r with P positive bands [lo[r,p], hi[r,p]] (padding: lo = hi = +inf): adds to above[r,p] the
 * number of block entries strictly greater than hi[r,p], and writes every entry inside a band as a
 * triple (row, column, p) to band[] while fewer than cap were written. Returns the number of band
 * entries found; a result above cap tells the caller the block must be settled another way. The count
 * loop runs over one row at a time (a row of a block fits in L1), one positive after another, in
 * vectors; the same pass flags the entries inside the band. Band entries are rare: only the flagged
 * entries take the per-entry test that finds their positives (measured on 1024 x 2048 float32 blocks
 * with five narrow bands per row spread over the score range: 0.8 ns an entry, against 10 ns for a
 * per-entry test of every entry between the lowest and the highest band).
 */

/* Entries of a row handled per segment (the lane flags of a segment live on the stack). */
#define MM_SEGMENT 2048

#define MM_DEFINE_COUNT(NAME, T, VT, MT, LT, LANES)                                                 \
    /* entry j of row r: written as (r, j, p) for every band p it lies in; returns the new total */ \
    static inline int64_t NAME##_entry(const T *s, int64_t j, int64_t r, const T *l, const T *h,    \
                                       int64_t npos, T lmin, T hmax, int64_t *band, int64_t cap,    \
                                       int64_t found) {                                             \
        T x = s[j];                                                                                 \
        if (x < lmin || x > hmax) return found;                                                     \
        for (int64_t p = 0; p < npos; ++p) {                                                        \
            if (x >= l[p] && x <= h[p]) {                                                           \
                if (found < cap) {                                                                  \
                    band[3 * found] = r;                                                            \
                    band[3 * found + 1] = j;                                                        \
                    band[3 * found + 2] = p;                                                        \
                }                                                                                   \
                ++found;                                                                            \
            }                                                                                       \
        }                                                                                           \
        return found;                                                                               \
    }                                                                                               \
                                                                                                    \
    int64_t NAME(const T *block, int64_t rows, int64_t width, int64_t ld, const T *lo, const T *hi, \
                 int64_t npos, int64_t *above, int64_t *band, int64_t cap) {                        \
        MT flags[MM_SEGMENT / LANES]; /* per vector of LANES entries: the lanes inside some band */ \
        int64_t found = 0;                                                                          \
        for (int64_t r = 0; r < rows; ++r) {                                                        \
            const T *s = block + r * ld;                                                            \
            const T *l = lo + r * npos, *h = hi + r * npos;                                         \
            T lmin = l[0], hmax = h[0];                                                             \
            int any = 0;                                                                            \
            for (int64_t p = 0; p < npos; ++p) {                                                    \
                if (!(h[p] < (T)INFINITY)) continue;                                                \
                if (!any || l[p] < lmin) lmin = l[p];                                               \
                if (!any || h[p] > hmax) hmax = h[p];                                               \
                any = 1;                                                                            \
            }                                                                                       \
            if (!any) continue;                                                                     \
            for (int64_t j0 = 0; j0 < width; j0 += MM_SEGMENT) {                                    \
                int64_t j1 = j0 + MM_SEGMENT < width ? j0 + MM_SEGMENT : width;                     \
                int64_t nv = (j1 - j0) / LANES, jt = j0 + nv * LANES;                               \
                memset(flags, 0, (size_t)nv * sizeof(MT));                                          \
                /* one vector pass per positive counts the entries above its band and flags the    \
                   lanes inside it; then only flagged lanes take the per-entry test (before, every  \
                   entry between the lowest and the highest band did: with positives spread over   \
                   the score range that cost 20x the counting) */                                   \
                for (int64_t p = 0; p < npos; ++p) {                                                \
                    T t = h[p], u = l[p];                                                           \
                    if (!(t < (T)INFINITY)) continue;                                               \
                    MT cnt;                                                                         \
                    memset(&cnt, 0, sizeof(MT));                                                    \
                    for (int64_t v = 0; v < nv; ++v) {                                              \
                        VT x;                                                                       \
                        memcpy(&x, s + j0 + v * LANES, sizeof(VT));                                 \
                        MT above_t = x > t;                                                         \
                        cnt -= above_t; /* a true lane is -1 */                                     \
                        flags[v] |= (x >= u) & ~above_t;                                            \
                    }                                                                               \
                    LT lanes[LANES];                                                                \
                    memcpy(lanes, &cnt, sizeof(MT));                                                \
                    int64_t count = 0;                                                              \
                    for (int i = 0; i < LANES; ++i) count += lanes[i];                              \
                    for (int64_t j = jt; j < j1; ++j) count += s[j] > t;                            \
                    above[r * npos + p] += count;                                                   \
                }                                                                                   \
                for (int64_t v = 0; v < nv; ++v) {                                                  \
                    int64_t f[4];                                                                   \
                    memcpy(f, &flags[v], 32);                                                       \
                    if ((f[0] | f[1] | f[2] | f[3]) == 0) continue;                                 \
                    LT lane[LANES];                                                                 \
                    memcpy(lane, &flags[v], sizeof(MT));                                            \
                    for (int i = 0; i < LANES; ++i)                                                 \
                        if (lane[i])                                                                \
                            found = NAME##_entry(s, j0 + v * LANES + i, r, l, h, npos, lmin, hmax,  \
                                                 band, cap, found);                                 \
                }                                                                                   \
                for (int64_t j = jt; j < j1; ++j)                                                   \
                    found = NAME##_entry(s, j, r, l, h, npos, lmin, hmax, band, cap, found);        \
            }                                                                                       \
        }                                                                                           \
        return found;                                                                               \
    }

MM_DEFINE_COUNT(mmgeom_count_f32, float, mm_v8f, mm_v8i, int32_t, 8)
MM_DEFINE_COUNT(mmgeom_count_f64, double, mm_v4d, mm_v4l, int64_t, 4)

/*
 * float64 dot products of float32 row pairs, for the exact keys of mmgeom.retrieval._ties.
 *
 * For pair i: dot[i] = sum_k (double)q[rows[i], k] * (double)g[cols[i], k], and optionally
 * absdot[i] = sum_k |q g| and gsq[i] = sum_k g^2 (a NULL pointer skips that output).
 * A float32 x float32 product is exact in float64, so each output carries only its summation's rounding,
 * whatever the order of the additions (here: eight lanes, two accumulators each, then the lanes and the
 * tail): the caller bounds that against torch's own float64 reduction and certifies the rounded key.
 * The rows are read in place (no float64 copies). Pairs sorted by gallery row read the gallery in order,
 * once, each row from cache for all of its pairs (the query matrix is the smaller one and stays in cache).
 */
typedef double mm_v8d __attribute__((vector_size(64)));

/* pairs ahead whose rows are prefetched: 330 -> 215 ns a pair at 10^4 queries x 10^5 x 512 (2 and 4
 * measured alike, 8 worse) */
#define MM_AHEAD 4

static inline mm_v8d mm_widen8(const float *p) {
    mm_v8f x;
    memcpy(&x, p, 32);
    return __builtin_convertvector(x, mm_v8d);
}

typedef int64_t mm_v8l __attribute__((vector_size(64)));

static inline mm_v8d mm_abs8(mm_v8d v) { /* clears the sign bits */
    mm_v8l m;
    memcpy(&m, &v, 64);
    m &= (mm_v8l){INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
    memcpy(&v, &m, 64);
    return v;
}

static inline double mm_hsum8(mm_v8d v) {
    double x[8];
    memcpy(x, &v, 64);
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

static inline mm_v8d mm_load8(const double *p) {
    mm_v8d x;
    memcpy(&x, p, 64);
    return x;
}

/* sum of a[k] * b[k] (and of |a[k] b[k]| when want_abs, of b[k]^2 when want_sq) over k < d. The query
 * row a holds float32 values, stored as float32 (a32) or already widened to float64 (a64, the other
 * NULL): the widening is exact, so both give the same bits; a row reused for many pairs is widened once.
 */
static inline void mm_pair(const float *a32, const double *a64, const float *b, int64_t d, int want_abs,
                           int want_sq, double *dot, double *absdot, double *sq) {
    mm_v8d z = {0, 0, 0, 0, 0, 0, 0, 0};
    mm_v8d s0 = z, s1 = z, a0 = z, a1 = z, q0 = z, q1 = z;
    int64_t k = 0;
    for (; k + 16 <= d; k += 16) {
        mm_v8d x0 = a64 != NULL ? mm_load8(a64 + k) : mm_widen8(a32 + k);
        mm_v8d x1 = a64 != NULL ? mm_load8(a64 + k + 8) : mm_widen8(a32 + k + 8);
        mm_v8d y0 = mm_widen8(b + k), y1 = mm_widen8(b + k + 8);
        mm_v8d p0 = x0 * y0, p1 = x1 * y1;
        s0 += p0;
        s1 += p1;
        if (want_abs) {
            a0 += mm_abs8(p0);
            a1 += mm_abs8(p1);
        }
        if (want_sq) {
            q0 += y0 * y0;
            q1 += y1 * y1;
        }
    }
    double s = mm_hsum8(s0 + s1), sa = mm_hsum8(a0 + a1), sq2 = mm_hsum8(q0 + q1);
    for (; k < d; k++) {
        double x = a64 != NULL ? a64[k] : (double)a32[k], y = (double)b[k], p = x * y;
        s += p;
        sa += fabs(p);
        sq2 += y * y;
    }
    *dot = s;
    if (want_abs) *absdot = sa;
    if (want_sq) *sq = sq2;
}

/* The pairs (rows[i], cols[i]) of a query matrix (q32 or q64, see mm_pair) and the gallery g. */
static inline void mm_pairs(const float *q32, const double *q64, int64_t ldq, const float *g, int64_t ldg,
                            int64_t d, const int64_t *rows, const int64_t *cols, int64_t n, double *dot,
                            double *absdot, double *gsq) {
    double unused = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *a32 = q32 != NULL ? q32 + rows[i] * ldq : NULL, *b = g + cols[i] * ldg;
        const double *a64 = q64 != NULL ? q64 + rows[i] * ldq : NULL;
        if (i + MM_AHEAD < n) { /* the rows of a later pair: the loads of this one hide their latency */
            const float *nb = g + cols[i + MM_AHEAD] * ldg;
            for (int64_t k = 0; k < d; k += 16) __builtin_prefetch(nb + k);
            if (q32 != NULL) {
                const float *na = q32 + rows[i + MM_AHEAD] * ldq;
                for (int64_t k = 0; k < d; k += 16) __builtin_prefetch(na + k);
            }
        }
        double *pa = absdot != NULL ? absdot + i : &unused, *pg = gsq != NULL ? gsq + i : &unused;
        /* constant flags: the compiler specialises each call of the inline body */
        if (absdot != NULL && gsq != NULL)
            mm_pair(a32, a64, b, d, 1, 1, dot + i, pa, pg);
        else if (absdot != NULL)
            mm_pair(a32, a64, b, d, 1, 0, dot + i, pa, pg);
        else if (gsq != NULL)
            mm_pair(a32, a64, b, d, 0, 1, dot + i, pa, pg);
        else
            mm_pair(a32, a64, b, d, 0, 0, dot + i, pa, pg);
    }
}

int64_t mmgeom_pair_dots_f32(const float *q, int64_t ldq, const float *g, int64_t ldg, int64_t d,
                             const int64_t *rows, const int64_t *cols, int64_t n, double *dot,
                             double *absdot, double *gsq) {
    mm_pairs(q, NULL, ldq, g, ldg, d, rows, cols, n, dot, absdot, gsq);
    return n;
}

/* As mmgeom_pair_dots_f32 with the query rows already widened to float64: the pairs of one score block
 * reuse a few hundred query rows, each widened once instead of once per pair. */
int64_t mmgeom_pair_dots_q64(const double *q, int64_t ldq, const float *g, int64_t ldg, int64_t d,
                             const int64_t *rows, const int64_t *cols, int64_t n, double *dot,
                             double *absdot, double *gsq) {
    mm_pairs(NULL, q, ldq, g, ldg, d, rows, cols, n, dot, absdot, gsq);
    return n;
}

/*
 * Settling of the band entries of one score block (mmgeom.retrieval._fused_ranks).
 *
 * Entry i is (row, column, p) of the block (hits[3i..3i+2]); its pair is query row r = q0 + row and
 * gallery row j = c0 + column, and its positive pos[r * npos + p] (the positive itself is skipped). The
 * pair's exact key is certified exactly as mmgeom.retrieval._ties.ExactKeys.native_keys does it (the
 * same float64 operations in the same order, the same bound; tests compare the two): s is the float64
 * sum of mm_pair (divided by sqrt(sum g^2) * sqrt(qsq[r]) and times mags[j] for cosine / magnitude
 * scoring), eps = bound * (sum |q g|) for dot scoring, bound (* mags[j]) otherwise, and the key is
 * (float)s when all of [s - eps, s + eps] rounds to that float. A certain entry adds one to
 * above[r * npos + p] when it is exactly before its positive (higher key, or equal key and lower
 * index: key_p holds the positives' keys); an uncertain one (or a norm product at most den_min) is
 * listed in unsure[] for the caller's exact_scores. Query rows come as float32 (q32) or widened
 * (q64, holding rows q64_first..). Returns the number of unsure entries.
 */
static inline uint32_t mm_bits32(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b;
}

int64_t mmgeom_settle_f32(const float *q32, int64_t ldq32, const double *q64, int64_t ldq64,
                          int64_t q64_first, const float *g, int64_t ldg, int64_t d, const int64_t *hits,
                          int64_t n, int64_t q0, int64_t c0, const int64_t *pos, const double *key_p,
                          int64_t npos, int64_t *above, int normalise, const double *qsq,
                          const double *mags, double bound, double den_min, int64_t *unsure) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = q0 + hits[3 * i], j = c0 + hits[3 * i + 1], idx = r * npos + hits[3 * i + 2];
        int64_t pi = pos[idx];
        if (i + MM_AHEAD < n) {
            const float *nb = g + (c0 + hits[3 * (i + MM_AHEAD) + 1]) * ldg;
            for (int64_t k = 0; k < d; k += 16) __builtin_prefetch(nb + k);
        }
        if (j == pi) continue;
        const float *a32 = q64 != NULL ? NULL : q32 + r * ldq32, *b = g + j * ldg;
        const double *a64 = q64 != NULL ? q64 + (r - q64_first) * ldq64 : NULL;
        double dot = 0.0, absdot = 0.0, gsq = 0.0, s, eps;
        if (normalise) {
            mm_pair(a32, a64, b, d, 0, 1, &dot, &absdot, &gsq);
            double den = sqrt(gsq) * sqrt(qsq[r]);
            if (!(den > den_min)) {
                unsure[m++] = i;
                continue;
            }
            s = dot / den;
            eps = bound;
            if (mags != NULL) {
                s = s * mags[j];
                eps = bound * mags[j];
            }
        } else {
            mm_pair(a32, a64, b, d, 1, 0, &dot, &absdot, &gsq);
            s = dot;
            eps = bound * absdot;
        }
        float lo = (float)nextafter(s - eps, -INFINITY), hi = (float)nextafter(s + eps, INFINITY);
        if (mm_bits32(lo) != mm_bits32(hi) || !isfinite(s) || !isfinite(eps)) {
            unsure[m++] = i;
            continue;
        }
        double key = (double)(float)s, kp = key_p[idx];
        above[idx] += key > kp || (key == kp && j < pi);
    }
    return m;
}

/* Lets the loader check it opened the build of this source revision. */
int mmgeom_merge_abi(void) { return 5; }
