/*
 * PSNR / MAE sums and SSIM means of a batch of 2D slices or 3D volumes in one fused pass.
 *
 * The formulas are scikit-image's structural_similarity (filtered moments, the SSIM map, the mean
 * over the map cropped by (win - 1) / 2, or the mean of the full map inside a mask) with
 * scipy.ndimage's separable filters in mode "reflect" (half-sample symmetric borders). Computing
 * them array by array in numpy costs about a hundred passes over each image; here every row is
 * normalised, filtered along each axis, turned into SSIM values and summed while it is in cache.
 * mrbench/metrics_kernel.py compiles this file and calls it (a thread per group of items or of
 * output planes); mrbench/metrics.py holds the numpy version of the same arithmetic.
 *
 * Layout: items of shape (A, B, C), C-contiguous; a 2D slice is A = 1 with no filtering along A.
 * Output per item (doubles, N_OUT of them), sums over the output planes [o0, o1) of this call:
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    O_SSE,    /* sum of squared differences of the normalised images */
    O_SAE,    /* sum of absolute differences */
    O_SSE_M,  /* the same inside the mask (mask mode 1) */
    O_SAE_M,
    O_N_M,    /* voxels inside the mask */
    O_MAX_X,  /* maximum of the normalised target (its data range in the icon_mean protocol) */
    O_CROP_U, /* sum of the uniform-window SSIM map over the cropped region */
    O_MASK_U, /* sum of the uniform-window SSIM map inside the mask */
    O_CROP_G, /* the same for the Gaussian window */
    O_MASK_G,
    O_CROP_CS, /* sum of the Gaussian-window contrast-structure map (2 vxy + c2) / (vx + vy + c2)
                  over the cropped region (MS-SSIM's per-scale term; only when asked for) */
    N_OUT
};

/* scipy.ndimage mode "reflect": d c b a | a b c d | d c b a (valid for -n <= i < 2n) */
static inline long refl(long i, long n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - 1 - i;
    return i;
}

static inline long lmax(long a, long b) { return a > b ? a : b; }
static inline long lmin(long a, long b) { return a < b ? a : b; }

/* Sum of v[0..n) with eight partial sums (vectorises without reassociation flags). */
static double sum_row(const double *restrict v, long n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) s[k] += v[j + k];
    double r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) r += v[j];
    return r;
}

/* v where m != 0, else +0.0 (a bit mask, not a branch: outside values, NaN included, drop out) */
static inline double keep(double v, uint8_t m) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits &= -(uint64_t)(m != 0);
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Sum of v[j] where m[j] != 0 (tmp: n doubles of scratch). */
static double sum_row_masked(const double *restrict v, const uint8_t *restrict m, long n,
                             double *restrict tmp) {
    for (long j = 0; j < n; j++) tmp[j] = keep(v[j], m[j]);
    return sum_row(tmp, n);
}

/* Per-thread scratch, kept between calls (fresh pages for every call cost more than the work
   on a volume); released when a call needs more. */
static __thread double *tl_buf = NULL;
static __thread size_t tl_cap = 0;

static double *scratch(size_t n) {
    if (n > tl_cap) {
        free(tl_buf);
        tl_buf = malloc(n * sizeof(double));
        tl_cap = tl_buf ? n : 0;
    }
    return tl_buf;
}

/*
 * Normalise planes [q0, q1) of one item into X, Y (rows of C + 2 pc doubles, the pc columns on
 * each side reflected) and add the error sums of planes [o0, o1) to acc. x = t / st (0 where
 * st <= 0, as the numpy version), times the mask in mask mode 2.
 */
#define DEFINE_PREP(NAME, T)                                                                     \
    static void NAME(const T *restrict t, const T *restrict p, const uint8_t *restrict m,     \
                     long B, long C, long q0, long q1, long o0, long o1, long pc, double st,    \
                     double sp, int mask_mode, double *restrict X, double *restrict Y,          \
                     double *restrict d2, double *restrict d1, double *restrict acc) {          \
        const long Cs = C + 2 * pc;                                                             \
        for (long a = q0; a < q1; a++) {                                                        \
            for (long b = 0; b < B; b++) {                                                      \
                const size_t off = ((size_t)a * B + b) * C;                                     \
                const T *restrict tr = t + off;                                                 \
                const T *restrict pr = p + off;                                                 \
                const uint8_t *restrict mr = m ? m + off : NULL;                                \
                double *restrict xr = X + ((size_t)(a - q0) * B + b) * Cs + pc;                 \
                double *restrict yr = Y + ((size_t)(a - q0) * B + b) * Cs + pc;                 \
                if (st > 0) {                                                                   \
                    for (long j = 0; j < C; j++) xr[j] = (double)tr[j] / st;                    \
                } else {                                                                        \
                    for (long j = 0; j < C; j++) xr[j] = 0.0;                                   \
                }                                                                               \
                if (sp > 0) {                                                                   \
                    for (long j = 0; j < C; j++) yr[j] = (double)pr[j] / sp;                    \
                } else {                                                                        \
                    for (long j = 0; j < C; j++) yr[j] = 0.0;                                   \
                }                                                                               \
                if (mask_mode == 2 && mr) {                                                     \
                    for (long j = 0; j < C; j++) {                                              \
                        xr[j] *= (double)mr[j];                                                 \
                        yr[j] *= (double)mr[j];                                                 \
                    }                                                                           \
                }                                                                               \
                for (long k = 1; k <= pc; k++) {                                                \
                    xr[-k] = xr[k - 1];                                                         \
                    yr[-k] = yr[k - 1];                                                         \
                    xr[C - 1 + k] = xr[C - k];                                                  \
                    yr[C - 1 + k] = yr[C - k];                                                  \
                }                                                                               \
                if (a < o0 || a >= o1) continue;                                                \
                double mx = acc[O_MAX_X];                                                       \
                for (long j = 0; j < C; j++) {                                                  \
                    const double d = xr[j] - yr[j];                                             \
                    d2[j] = d * d;                                                              \
                    d1[j] = d < 0 ? -d : d;                                                     \
                    mx = xr[j] > mx ? xr[j] : mx;                                               \
                }                                                                               \
                acc[O_MAX_X] = mx;                                                              \
                acc[O_SSE] += sum_row(d2, C);                                                   \
                acc[O_SAE] += sum_row(d1, C);                                                   \
                if (mask_mode == 1 && mr) {                                                     \
                    long nm = 0;                                                                \
                    for (long j = 0; j < C; j++) nm += mr[j] != 0;                              \
                    acc[O_N_M] += (double)nm;                                                   \
                    acc[O_SSE_M] += sum_row_masked(d2, mr, C, d1 + C);                          \
                    acc[O_SAE_M] += sum_row_masked(d1, mr, C, d1 + C);                          \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_PREP(prep_f64, double)
DEFINE_PREP(prep_f32, float)

/*
 * The moments that SSIM filters: x, y, x^2 + y^2 and xy. scikit-image filters x^2 and y^2
 * separately, but its formula only uses vx + vy, so one filtered image serves both (the
 * filters are linear; the values differ by rounding only).
 */
#define NM 4

static void moments(const double *restrict x, const double *restrict y, long n,
                    double *restrict m2, double *restrict m3) {
    for (long j = 0; j < n; j++) {
        const double xv = x[j], yv = y[j];
        m2[j] = xv * xv + yv * yv;
        m3[j] = xv * yv;
    }
}

/* output planes of a volume filtered along A together: each input plane read once per group */
#ifndef G3
#define G3 4
#endif

/*
 * SSIM map of one item with the separable window w (L taps, radius R = L / 2) for output planes
 * [o0, o1): full map (every voxel, reflected borders; needed for the in-mask mean) or only the
 * cropped interior. Adds the cropped-region sum to *crop and the in-mask sum to *msum.
 * X, Y: normalised planes [q0, q1) with pc >= R reflected columns on each side when full.
 * Row by row: the NM moments (filtered along A for volumes, G3 output planes at a time) are
 * filtered along C into a ring of the last L rows, whose weighted sum (along B) gives the
 * filtered moments and the SSIM values of one output row. L is a compile-time constant (one
 * function per window) so that the tap loops unroll and the row loops vectorise with the sums
 * kept in registers. With want_cs, the cropped-region sum of the contrast-structure map is added
 * to *cssum too.
 */
static inline __attribute__((always_inline)) void ssim_map_body(
    const double *X, const double *Y, long A, long B, long C, long pc, long q0, long q1,
    int dims3, const double *w, long o0, long o1, int full, const uint8_t *m, double c1,
    double c2, double cn, double *crop, double *msum, int want_cs, double *cssum, double *work,
    const int L) {
    const long R = L / 2;
    const long Cs = C + 2 * pc;
    const long j0 = full ? 0 : R, j1 = full ? C : C - R, nj = j1 - j0;
    const long ni = nj + 2 * R; /* padded columns j0 - R .. j1 + R */
    const long r0 = full ? 0 : R, r1 = full ? B : B - R;
    /* rows apart by a stride that is no multiple of 512 bytes: the L x NM rows read together
       must not fall into the same few cache sets */
    const long ns = (nj + 63) / 64 * 64 + 8;
    long a0 = o0, a1 = o1;
    if (dims3 && !full) {
        a0 = lmax(o0, R);
        a1 = lmin(o1, A - R);
    }
    const long G = dims3 ? G3 : 1;
    double wk[11];
    for (int k = 0; k < L; k++) wk[k] = w[k];
    double *am = work;                   /* G3 x NM x ni: moments of one row, filtered along A */
    double *ring = am + G3 * NM * ni;    /* G3 x L x NM x ns: rows filtered along A and C */
    double *s = ring + G3 * L * NM * ns; /* 3 x ns: SSIM of one output row, its masked copy, */
    double *cs = s + 2 * ns;             /* and its contrast-structure values */
    double crop_sum = 0.0, mask_sum = 0.0, cs_sum = 0.0;
    const long col = pc + j0 - R; /* scratch offset of the first needed column */
    for (long a = a0; a < a1; a += G) {
        const long na = lmin(G, a1 - a);
        for (long bp = r0 - R; bp < r1 + R; bp++) {
            const long rb = refl(bp, B);
            const double *cin[G3 * NM]; /* the moment rows to filter along C */
            if (dims3) {
                /* planes a - R .. a + G3 - 1 + R; those only the unused outputs of a short last
                   group would read are clamped into the scratch */
                const double *xp[G3 + 10], *yp[G3 + 10];
                for (int k = 0; k < G3 + L - 1; k++) {
                    const long pl = lmin(lmax(refl(a - R + k, A), q0), q1 - 1) - q0;
                    xp[k] = X + ((size_t)pl * B + rb) * Cs + col;
                    yp[k] = Y + ((size_t)pl * B + rb) * Cs + col;
                }
                #pragma GCC ivdep
                for (long j = 0; j < ni; j++) {
                    double acc[G3][NM];
                    #pragma GCC unroll 4
                    for (int g = 0; g < G3; g++)
                        for (int q = 0; q < NM; q++) acc[g][q] = 0.0;
                    #pragma GCC unroll 16
                    for (int k = 0; k < G3 + L - 1; k++) {
                        const double xv = xp[k][j], yv = yp[k][j];
                        const double ss = xv * xv + yv * yv, xy = xv * yv;
                        #pragma GCC unroll 4
                        for (int g = 0; g < G3; g++) {
                            const int t = k - g;
                            if (t < 0 || t >= L) continue;
                            acc[g][0] += wk[t] * xv;
                            acc[g][1] += wk[t] * yv;
                            acc[g][2] += wk[t] * ss;
                            acc[g][3] += wk[t] * xy;
                        }
                    }
                    #pragma GCC unroll 4
                    for (int g = 0; g < G3; g++)
                        for (int q = 0; q < NM; q++) am[(g * NM + q) * ni + j] = acc[g][q];
                }
                for (int q = 0; q < G3 * NM; q++) cin[q] = am + q * ni;
            } else {
                cin[0] = X + (size_t)rb * Cs + col;
                cin[1] = Y + (size_t)rb * Cs + col;
                cin[2] = am;
                cin[3] = am + ni;
                moments(cin[0], cin[1], ni, am, am + ni);
            }
            const long idx = bp - (r0 - R);
            for (long g = 0; g < na; g++) {
                double *slot = ring + (g * L + idx % L) * NM * ns;
                for (int q = 0; q < NM; q++) {
                    const double *restrict in = cin[g * NM + q];
                    double *restrict out = slot + q * ns;
                    for (long j = 0; j < nj; j++) {
                        double acc = 0.0;
                        #pragma GCC unroll 11
                        for (int k = 0; k < L; k++) acc += wk[k] * in[j + k];
                        out[j] = acc;
                    }
                }
            }
            if (idx < L - 1) continue;
            const long b = bp - R; /* output row: the ring holds rows b - R .. b + R */
            for (long g = 0; g < na; g++) {
                const long ag = a + g;
                const double *rows[11];
                for (int k = 0; k < L; k++) rows[k] = ring + (g * L + (b - r0 + k) % L) * NM * ns;
                #pragma GCC ivdep
                for (long j = 0; j < nj; j++) {
                    double ux = 0, uy = 0, uss = 0, uxy = 0;
                    #pragma GCC unroll 11
                    for (int k = 0; k < L; k++) {
                        ux += wk[k] * rows[k][j];
                        uy += wk[k] * rows[k][ns + j];
                        uss += wk[k] * rows[k][2 * ns + j];
                        uxy += wk[k] * rows[k][3 * ns + j];
                    }
                    const double uu = ux * ux + uy * uy;
                    const double vsum = cn * (uss - uu); /* vx + vy */
                    const double vxy = cn * (uxy - ux * uy);
                    const double a1 = 2 * ux * uy + c1, a2 = 2 * vxy + c2;
                    const double b1 = uu + c1, b2 = vsum + c2;
                    s[j] = (a1 * a2) / (b1 * b2);
                    if (want_cs) cs[j] = a2 / b2;
                }
                const int crop_plane = !dims3 || (ag >= R && ag < A - R);
                if (crop_plane && b >= R && b < B - R) {
                    crop_sum += sum_row(s + (R - j0), C - 2 * R);
                    if (want_cs) cs_sum += sum_row(cs + (R - j0), C - 2 * R);
                }
                if (m) mask_sum += sum_row_masked(s, m + ((size_t)ag * B + b) * C + j0, nj, s + ns);
            }
        }
    }
    *crop += crop_sum;
    *msum += mask_sum;
    *cssum += cs_sum;
}

static void ssim_map7(const double *X, const double *Y, long A, long B, long C, long pc, long q0,
                      long q1, int dims3, const double *w, long o0, long o1, int full, const uint8_t *m,
                      double c1, double c2, double cn, double *crop, double *msum, int want_cs,
                      double *cssum, double *work) {
    ssim_map_body(X, Y, A, B, C, pc, q0, q1, dims3, w, o0, o1, full, m, c1, c2, cn, crop, msum,
                  want_cs, cssum, work, 7);
}

static void ssim_map11(const double *X, const double *Y, long A, long B, long C, long pc, long q0,
                       long q1, int dims3, const double *w, long o0, long o1, int full, const uint8_t *m,
                       double c1, double c2, double cn, double *crop, double *msum, int want_cs,
                       double *cssum, double *work) {
    ssim_map_body(X, Y, A, B, C, pc, q0, q1, dims3, w, o0, o1, full, m, c1, c2, cn, crop, msum,
                  want_cs, cssum, work, 11);
}

static void ssim_map(const double *X, const double *Y, long A, long B, long C, long pc, long q0,
                     long q1, int dims3, const double *w, long L, long o0, long o1, int full,
                     const uint8_t *m, double c1, double c2, double cn, double *crop,
                     double *msum, int want_cs, double *cssum, double *work) {
    if (L == 7)
        ssim_map7(X, Y, A, B, C, pc, q0, q1, dims3, w, o0, o1, full, m, c1, c2, cn, crop, msum,
                  want_cs, cssum, work);
    else
        ssim_map11(X, Y, A, B, C, pc, q0, q1, dims3, w, o0, o1, full, m, c1, c2, cn, crop, msum,
                   want_cs, cssum, work);
}

/*
 * Metrics sums of n items of shape (A, B, C) (f32: float inputs, else double; m: uint8 mask or
 * NULL), output planes [o0, o1) (2D: A = 1, o0 = 0, o1 = 1). st/sp: per-item divisors of target
 * and prediction; mask_mode 0 none, 1 region (in-mask sums, needs full), 2 multiply; range:
 * per-item data range or NULL for the maximum of the normalised target (whole items only);
 * wu (Lu taps, covariance factor cn_u) and wg (Lg taps): the windows, NULL to skip that map.
 * Windows of 7 or 11 taps. want_cs: also the contrast-structure sum of the Gaussian map
 * (O_CROP_CS). Returns 0, -1 when memory runs out, -2 for another window length.
 */
int mrb_metrics(const void *t, const void *p, const uint8_t *m, int f32, long n, long A, long B,
                long C, int dims3, long o0, long o1, const double *st, const double *sp,
                int mask_mode, const double *range, int full, const double *wu, long Lu,
                double cn_u, const double *wg, long Lg, double *out, int want_cs) {
    if ((wu && Lu != 7 && Lu != 11) || (wg && Lg != 7 && Lg != 11)) return -2;
    const long ru = wu ? Lu / 2 : 0, rg = wg ? Lg / 2 : 0, rmax = lmax(ru, rg);
    const long pc = full ? rmax : 0, Cs = C + 2 * pc, Lmax = lmax(wu ? Lu : 1, wg ? Lg : 1);
    const long q0 = dims3 ? lmax(0, o0 - rmax) : 0, q1 = dims3 ? lmin(A, o1 + rmax) : 1;
    const size_t plane = (size_t)B * Cs, nq = (size_t)(q1 - q0);
    const size_t nwork = (size_t)G3 * NM * (C + 2 * rmax) + ((size_t)G3 * Lmax * NM + 3) * (C + 72);
    double *X = scratch(2 * nq * plane + nwork + 3 * (size_t)C);
    if (!X) return -1;
    double *Y = X + nq * plane, *work = Y + nq * plane;
    double *d2 = work + nwork, *d1 = d2 + C; /* and C doubles after d1 */
    const size_t item = (size_t)A * B * C;
    for (long i = 0; i < n; i++) {
        double *acc = out + i * N_OUT;
        for (int k = 0; k < N_OUT; k++) acc[k] = 0.0;
        acc[O_MAX_X] = -1.0 / 0.0;
        const uint8_t *mi = m ? m + i * item : NULL;
        if (f32)
            prep_f32((const float *)t + i * item, (const float *)p + i * item, mi, B, C, q0, q1,
                     o0, o1, pc, st[i], sp[i], mask_mode, X, Y, d2, d1, acc);
        else
            prep_f64((const double *)t + i * item, (const double *)p + i * item, mi, B, C, q0, q1,
                     o0, o1, pc, st[i], sp[i], mask_mode, X, Y, d2, d1, acc);
        const double R = range ? range[i] : acc[O_MAX_X];
        const double c1 = (0.01 * R) * (0.01 * R), c2 = (0.03 * R) * (0.03 * R);
        const uint8_t *mm = mask_mode == 1 ? mi : NULL;
        if (wu)
            ssim_map(X, Y, A, B, C, pc, q0, q1, dims3, wu, Lu, o0, o1, full, mm, c1, c2, cn_u,
                     acc + O_CROP_U, acc + O_MASK_U, 0, acc + O_CROP_CS, work);
        if (wg)
            ssim_map(X, Y, A, B, C, pc, q0, q1, dims3, wg, Lg, o0, o1, full, mm, c1, c2, 1.0,
                     acc + O_CROP_G, acc + O_MASK_G, want_cs, acc + O_CROP_CS, work);
    }
    return 0;
}
