/* blocklist._native: the two hot-path pieces of blocklist in C.
 *
 * U64Set: an immutable, compact set of unsigned 64-bit integers (the national list's resident
 * layout), with membership, rank and range counts, and a merge that builds a new set.
 *
 * FastPath: `Screener.check`'s fast path for the dial forms a PBX sends most (national 0...,
 * +CC..., 00CC..., each also behind stacked dial prefixes such as 9 and 141, each also with
 * separators), over one snapshot. It answers only where its answer is exactly the Python
 * screener's, and returns None for everything else, which the Python screener then reads from
 * the start (see FastPath below).
 *
 * Why not pyroaring's FrozenBitMap64 (the layout the list was first held in): in bench.lookup's
 * floors on 1M seeded UK-like numbers, a cold `in` on it costs about three times a Python set's
 * (~680 against ~235 ns: its 64-bit map walks an adaptive radix tree, then searches a container)
 * and it keeps ~5.4 bytes/number by RSS (one allocation per few entries); an `in` on this layout
 * costs what a set's does, in ~2.7 bytes/number (3.3 by RSS). Roaring stays the snapshot file's
 * and the sync wire's payload format; only what is resident changed.
 *
 * Layout. Values are split into shards by their high 32 bits (an E.164 number < 10^15 < 2^50, so
 * a country's numbers fall in a few shards). A shard has a directory over the top `bits` bits of
 * the low 32 (2^bits + 1 offsets into its entries) and its entries sorted: as uint16 (the low 16
 * bits) when bits == 16, else as uint32 (the low 32). `bits` grows with the shard until a bucket
 * holds at most 2 entries on average, up to 16 (a bucket is then one 65,536-value block: 6 to 9
 * entries for the bench's million). A lookup is a binary search over the few shard keys (hot in
 * cache), two directory reads and a search of one bucket: about two cache misses when cold.
 *
 * Immutable after construction, so readers on any thread need no lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Directory bits per shard: at most 16 (then the bucket is the bits 31..16 and an entry keeps
 * only its low 16 bits). */
#define MAX_DIR_BITS 16
/* Average entries per bucket the directory is sized for. */
#define BUCKET_ENTRIES 2

typedef struct {
    uint64_t hi;    /* the entries' value >> 32 */
    uint64_t rank;  /* entries in the shards before this one */
    uint32_t count; /* entries in this shard */
    uint32_t bits;  /* directory bits, 0..MAX_DIR_BITS */
    uint32_t *dir;  /* (1 << bits) + 1 offsets into lows */
    void *lows;     /* uint16_t[count] when bits == 16, else uint32_t[count] */
} Shard;

typedef struct {
    PyObject_HEAD
    Py_ssize_t nshards;
    Shard *shards;
    uint64_t len;
    size_t nbytes; /* bytes allocated for shards, directories and entries */
} U64Set;

static PyTypeObject U64SetType;

static inline uint32_t bucket_of(const Shard *s, uint32_t low) {
    return s->bits ? low >> (32 - s->bits) : 0;
}

/* Index of the first entry in [lo, hi) of the shard not less than `low`. */
static inline uint32_t lower_bound(const Shard *s, uint32_t lo, uint32_t hi, uint32_t low) {
    if (s->bits == MAX_DIR_BITS) {
        const uint16_t *a = (const uint16_t *)s->lows;
        uint16_t key = (uint16_t)(low & 0xFFFFu);
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (a[mid] < key) lo = mid + 1; else hi = mid;
        }
    } else {
        const uint32_t *a = (const uint32_t *)s->lows;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (a[mid] < low) lo = mid + 1; else hi = mid;
        }
    }
    return lo;
}

static inline uint32_t entry_low(const Shard *s, uint32_t i, uint32_t bucket) {
    if (s->bits == MAX_DIR_BITS) return (bucket << 16) | ((const uint16_t *)s->lows)[i];
    return ((const uint32_t *)s->lows)[i];
}

/* First shard whose hi is not less than `hi` (nshards when none). */
static inline Py_ssize_t shard_lower_bound(const U64Set *u, uint64_t hi) {
    Py_ssize_t lo = 0, top = u->nshards;
    while (lo < top) {
        Py_ssize_t mid = lo + (top - lo) / 2;
        if (u->shards[mid].hi < hi) lo = mid + 1; else top = mid;
    }
    return lo;
}

static inline int u64set_has(const U64Set *u, uint64_t x) {
    uint64_t hi = x >> 32;
    Py_ssize_t i = shard_lower_bound(u, hi);
    if (i == u->nshards || u->shards[i].hi != hi) return 0;
    const Shard *s = &u->shards[i];
    uint32_t low = (uint32_t)x;
    uint32_t b = bucket_of(s, low);
    uint32_t end = s->dir[b + 1];
    uint32_t at = lower_bound(s, s->dir[b], end, low);
    return at < end && entry_low(s, at, b) == low;
}

/* Entries less than x. */
static uint64_t u64set_rank(const U64Set *u, uint64_t x) {
    uint64_t hi = x >> 32;
    Py_ssize_t i = shard_lower_bound(u, hi);
    if (i == u->nshards) return u->len;
    const Shard *s = &u->shards[i];
    if (s->hi != hi) return s->rank;
    uint32_t low = (uint32_t)x;
    uint32_t b = bucket_of(s, low);
    return s->rank + lower_bound(s, s->dir[b], s->dir[b + 1], low);
}

static void free_shards(Shard *shards, Py_ssize_t n) {
    if (shards == NULL) return;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMem_Free(shards[i].dir);
        PyMem_Free(shards[i].lows);
    }
    PyMem_Free(shards);
}

/* A new set of the n values, which must be strictly ascending (checked: ValueError otherwise). */
static PyObject *u64set_from_sorted(const uint64_t *v, Py_ssize_t n) {
    for (Py_ssize_t i = 1; i < n; i++) {
        if (v[i - 1] >= v[i]) {
            return PyErr_Format(PyExc_ValueError,
                                "U64Set values must be strictly ascending: entry %zd is not "
                                "greater than entry %zd", i, i - 1);
        }
    }
    Py_ssize_t nshards = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i == 0 || (v[i] >> 32) != (v[i - 1] >> 32)) nshards++;
    }
    U64Set *u = (U64Set *)U64SetType.tp_alloc(&U64SetType, 0);
    if (u == NULL) return NULL;
    u->shards = PyMem_Calloc(nshards ? (size_t)nshards : 1, sizeof(Shard));
    if (u->shards == NULL) {
        Py_DECREF(u);
        return PyErr_NoMemory();
    }
    u->nshards = nshards;
    u->len = (uint64_t)n;
    u->nbytes = (size_t)(nshards ? nshards : 1) * sizeof(Shard);
    Py_ssize_t start = 0;
    for (Py_ssize_t k = 0; k < nshards; k++) {
        Py_ssize_t end = start + 1;
        while (end < n && (v[end] >> 32) == (v[start] >> 32)) end++;
        Shard *s = &u->shards[k];
        uint64_t count = (uint64_t)(end - start);  /* at most 2^32: one shard spans 2^32 values */
        uint32_t bits = 0;
        while (bits < MAX_DIR_BITS && ((uint64_t)BUCKET_ENTRIES << bits) < count) bits++;
        uint32_t nb = 1u << bits;
        size_t width = bits == MAX_DIR_BITS ? sizeof(uint16_t) : sizeof(uint32_t);
        s->hi = v[start] >> 32;
        s->rank = (uint64_t)start;
        /* count == 2^32 (a shard holding every value) does not fit uint32_t offsets: refuse. */
        if (count > UINT32_MAX) {
            Py_DECREF(u);
            return PyErr_Format(PyExc_OverflowError, "U64Set: more than 2^32 - 1 values share "
                                "their high 32 bits");
        }
        s->count = (uint32_t)count;
        s->bits = bits;
        s->dir = PyMem_Malloc(((size_t)nb + 1) * sizeof(uint32_t));
        s->lows = PyMem_Malloc(count ? (size_t)count * width : 1);
        if (s->dir == NULL || s->lows == NULL) {
            Py_DECREF(u);
            return PyErr_NoMemory();
        }
        u->nbytes += ((size_t)nb + 1) * sizeof(uint32_t) + (size_t)count * width;
        Py_ssize_t j = start;
        for (uint32_t b = 0; b < nb; b++) {
            s->dir[b] = (uint32_t)(j - start);
            while (j < end && bucket_of(s, (uint32_t)v[j]) == b) {
                if (width == sizeof(uint16_t))
                    ((uint16_t *)s->lows)[j - start] = (uint16_t)(v[j] & 0xFFFFu);
                else
                    ((uint32_t *)s->lows)[j - start] = (uint32_t)v[j];
                j++;
            }
        }
        s->dir[nb] = (uint32_t)count;
        start = end;
    }
    return (PyObject *)u;
}

/* Every value, ascending, into out (which holds u->len values). */
static void u64set_decode(const U64Set *u, uint64_t *out) {
    uint64_t at = 0;
    for (Py_ssize_t k = 0; k < u->nshards; k++) {
        const Shard *s = &u->shards[k];
        uint64_t high = s->hi << 32;
        uint32_t nb = 1u << s->bits;
        for (uint32_t b = 0; b < nb; b++) {
            for (uint32_t i = s->dir[b]; i < s->dir[b + 1]; i++) {
                out[at++] = high | entry_low(s, i, b);
            }
        }
    }
}

/* A buffer argument as native uint64 values: a C-contiguous buffer of 8-byte items. */
static int get_u64_buffer(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    int ok = view->itemsize == 8 && (strcmp(f, "Q") == 0 || strcmp(f, "L") == 0 ||
                                     strcmp(f, "K") == 0);
    if (!ok) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "U64Set: %s must be a buffer of unsigned 64-bit integers "
                     "(array('Q')), not format '%s' of %zd-byte items", what,
                     view->format ? view->format : "B", view->itemsize);
        return -1;
    }
    return 0;
}

static PyObject *u64set_new(PyTypeObject *Py_UNUSED(type), PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"values", NULL};
    PyObject *obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:U64Set", kwlist, &obj)) return NULL;
    if (obj == NULL) return u64set_from_sorted(NULL, 0);
    Py_buffer view;
    if (get_u64_buffer(obj, &view, "values") < 0) return NULL;
    PyObject *res = u64set_from_sorted((const uint64_t *)view.buf, view.len / 8);
    PyBuffer_Release(&view);
    return res;
}

static void u64set_dealloc(U64Set *u) {
    free_shards(u->shards, u->nshards);
    Py_TYPE(u)->tp_free((PyObject *)u);
}

/* What a Python object is as a uint64: FITS (value in *out), NOT_INT, BELOW (a negative int) or
 * ABOVE (an int >= 2^64); ERROR with an exception set. */
enum { FITS, NOT_INT, BELOW, ABOVE, ERROR };

static int as_u64(PyObject *o, uint64_t *out) {
    if (!PyLong_Check(o)) return NOT_INT;
    int overflow = 0;
    long long sv = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (sv == -1 && PyErr_Occurred()) return ERROR;
    if (overflow == 0) {
        if (sv < 0) return BELOW;
        *out = (uint64_t)sv;
        return FITS;
    }
    if (overflow < 0) return BELOW;
    unsigned long long uv = PyLong_AsUnsignedLongLong(o);
    if (uv == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return ERROR;
        PyErr_Clear();
        return ABOVE;
    }
    *out = (uint64_t)uv;
    return FITS;
}

static int u64set_contains(U64Set *u, PyObject *o) {
    uint64_t x = 0;
    switch (as_u64(o, &x)) {
    case FITS: return u64set_has(u, x);
    case ERROR: return -1;
    default: return 0; /* not an int, or no uint64: never a member */
    }
}

static Py_ssize_t u64set_length(U64Set *u) { return (Py_ssize_t)u->len; }

/* Entries less than o (an int, any size). */
static int rank_of(const U64Set *u, PyObject *o, uint64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "U64Set: bounds must be int, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    uint64_t x = 0;
    switch (as_u64(o, &x)) {
    case FITS: *out = u64set_rank(u, x); return 0;
    case BELOW: *out = 0; return 0;
    case ABOVE: *out = u->len; return 0;
    default: return -1;
    }
}

static PyObject *u64set_range_cardinality(U64Set *u, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        return PyErr_Format(PyExc_TypeError, "range_cardinality() takes 2 arguments (%zd given)",
                            nargs);
    }
    uint64_t a, b;
    if (rank_of(u, args[0], &a) < 0 || rank_of(u, args[1], &b) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(b > a ? b - a : 0);
}

static PyObject *u64set_rank_method(U64Set *u, PyObject *o) {
    uint64_t r;
    if (rank_of(u, o, &r) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(r);
}

/* array('Q') of every value, ascending. */
static PyObject *u64set_to_array(U64Set *u, PyObject *Py_UNUSED(ignored)) {
    PyObject *mod = PyImport_ImportModule("array");
    if (mod == NULL) return NULL;
    PyObject *arr = PyObject_CallMethod(mod, "array", "s", "Q");
    Py_DECREF(mod);
    if (arr == NULL) return NULL;
    if (u->len == 0) return arr;
    /* Decoded straight into a bytes object, which the array then copies once. */
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(u->len * sizeof(uint64_t)));
    if (bytes == NULL) {
        Py_DECREF(arr);
        return NULL;
    }
    u64set_decode(u, (uint64_t *)PyBytes_AS_STRING(bytes));
    PyObject *r = PyObject_CallMethod(arr, "frombytes", "O", bytes);
    Py_DECREF(bytes);
    if (r == NULL) {
        Py_DECREF(arr);
        return NULL;
    }
    Py_DECREF(r);
    return arr;
}

/* (self | adds) - removes as a new set; adds and removes are buffers of strictly ascending
 * uint64 values (checked). One pass over the three sorted sequences. */
static PyObject *u64set_merged(U64Set *u, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        return PyErr_Format(PyExc_TypeError, "merged() takes 2 arguments (%zd given)", nargs);
    }
    Py_buffer av, rv;
    if (get_u64_buffer(args[0], &av, "adds") < 0) return NULL;
    if (get_u64_buffer(args[1], &rv, "removes") < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    const uint64_t *add = av.buf, *rem = rv.buf;
    Py_ssize_t na = av.len / 8, nr = rv.len / 8;
    PyObject *res = NULL;
    uint64_t *cur = NULL, *out = NULL;
    for (Py_ssize_t i = 1; i < na; i++) {
        if (add[i - 1] >= add[i]) {
            PyErr_SetString(PyExc_ValueError, "merged(): adds must be strictly ascending");
            goto done;
        }
    }
    for (Py_ssize_t i = 1; i < nr; i++) {
        if (rem[i - 1] >= rem[i]) {
            PyErr_SetString(PyExc_ValueError, "merged(): removes must be strictly ascending");
            goto done;
        }
    }
    cur = PyMem_Malloc(((size_t)u->len + 1) * sizeof(uint64_t));
    out = PyMem_Malloc(((size_t)u->len + (size_t)na + 1) * sizeof(uint64_t));
    if (cur == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    u64set_decode(u, cur);
    {
        Py_ssize_t n = (Py_ssize_t)u->len, i = 0, j = 0, r = 0, o = 0;
        while (i < n || j < na) {
            uint64_t x;
            if (j >= na || (i < n && cur[i] < add[j])) {
                x = cur[i++];
            } else if (i >= n || add[j] < cur[i]) {
                x = add[j++];
            } else {
                x = cur[i++];
                j++;
            }
            while (r < nr && rem[r] < x) r++;
            if (r < nr && rem[r] == x) continue;
            out[o++] = x;
        }
        res = u64set_from_sorted(out, o);
    }
done:
    PyMem_Free(cur);
    PyMem_Free(out);
    PyBuffer_Release(&av);
    PyBuffer_Release(&rv);
    return res;
}

static PyObject *u64set_min(U64Set *u, PyObject *Py_UNUSED(ignored)) {
    if (u->len == 0) {
        PyErr_SetString(PyExc_ValueError, "min() of an empty U64Set");
        return NULL;
    }
    const Shard *s = &u->shards[0];
    uint32_t b = 0;
    while (s->dir[b + 1] == 0) b++;
    return PyLong_FromUnsignedLongLong((s->hi << 32) | entry_low(s, 0, b));
}

static PyObject *u64set_max(U64Set *u, PyObject *Py_UNUSED(ignored)) {
    if (u->len == 0) {
        PyErr_SetString(PyExc_ValueError, "max() of an empty U64Set");
        return NULL;
    }
    const Shard *s = &u->shards[u->nshards - 1];
    uint32_t last = s->count - 1;
    uint32_t b = 1u << s->bits;
    while (s->dir[b - 1] > last) b--;
    return PyLong_FromUnsignedLongLong((s->hi << 32) | entry_low(s, last, b - 1));
}

static PyObject *u64set_get_nbytes(U64Set *u, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(u->nbytes);
}

static PyObject *u64set_get_shards(U64Set *u, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(u->nshards);
}

static PyObject *u64set_repr(U64Set *u) {
    /* Never the values: they are victims' numbers (invariant 4). */
    return PyUnicode_FromFormat("U64Set(len=%llu)", (unsigned long long)u->len);
}

static PyObject *u64set_iter(U64Set *u) {
    PyObject *arr = u64set_to_array(u, NULL);
    if (arr == NULL) return NULL;
    PyObject *it = PyObject_GetIter(arr);
    Py_DECREF(arr);
    return it;
}

static PyObject *u64set_richcompare(PyObject *a, PyObject *b, int op) {
    if (!PyObject_TypeCheck(b, &U64SetType) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const U64Set *x = (const U64Set *)a, *y = (const U64Set *)b;
    int eq = x->len == y->len;
    if (eq && x->len) {
        uint64_t *p = PyMem_Malloc((size_t)x->len * sizeof(uint64_t));
        uint64_t *q = PyMem_Malloc((size_t)y->len * sizeof(uint64_t));
        if (p == NULL || q == NULL) {
            PyMem_Free(p);
            PyMem_Free(q);
            return PyErr_NoMemory();
        }
        u64set_decode(x, p);
        u64set_decode(y, q);
        eq = memcmp(p, q, (size_t)x->len * sizeof(uint64_t)) == 0;
        PyMem_Free(p);
        PyMem_Free(q);
    }
    if (op == Py_NE) eq = !eq;
    return PyBool_FromLong(eq);
}

static PySequenceMethods u64set_as_sequence = {
    .sq_length = (lenfunc)u64set_length,
    .sq_contains = (objobjproc)u64set_contains,
};

static PyMethodDef u64set_methods[] = {
    {"range_cardinality", (PyCFunction)(void (*)(void))u64set_range_cardinality, METH_FASTCALL,
     "range_cardinality(start, end): how many values v satisfy start <= v < end."},
    {"rank", (PyCFunction)u64set_rank_method, METH_O, "rank(x): how many values are below x."},
    {"to_array", (PyCFunction)u64set_to_array, METH_NOARGS,
     "to_array(): every value, ascending, as array('Q')."},
    {"merged", (PyCFunction)(void (*)(void))u64set_merged, METH_FASTCALL,
     "merged(adds, removes): (self | adds) - removes as a new set; both strictly ascending "
     "array('Q')."},
    {"min", (PyCFunction)u64set_min, METH_NOARGS, "The smallest value."},
    {"max", (PyCFunction)u64set_max, METH_NOARGS, "The largest value."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef u64set_getset[] = {
    {"nbytes", (getter)u64set_get_nbytes, NULL, "Bytes allocated for the values.", NULL},
    {"shards", (getter)u64set_get_shards, NULL, "Number of shards (distinct high 32 bits).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject U64SetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blocklist._native.U64Set",
    .tp_doc = PyDoc_STR("U64Set(values=array('Q')): an immutable compact set of uint64, built "
                        "from strictly ascending values."),
    .tp_basicsize = sizeof(U64Set),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = u64set_new,
    .tp_dealloc = (destructor)u64set_dealloc,
    .tp_repr = (reprfunc)u64set_repr,
    .tp_as_sequence = &u64set_as_sequence,
    .tp_iter = (getiterfunc)u64set_iter,
    .tp_richcompare = u64set_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_methods = u64set_methods,
    .tp_getset = u64set_getset,
};

/* ---------------------------------------------------------------------------------------------
 * FastPath
 *
 * `Screener.check` in blocklist/screen.py is the reference: this is its fast path (the block from
 * "Fast paths for what a PBX usually puts in a Request-URI" to the first `return _ALLOWED`)
 * transcribed step for step, over one snapshot's tables. Every place where the Python code leaves
 * the fast path (for `_check_parsed`, `_unstack` or `_guess`) returns None here, and the Python
 * screener then does the whole check itself; so a None costs time, never a verdict. The dial
 * string is read as the Python code reads it: digits, at most one '+' before the first digit, and
 * the visual separators it is given; any other character returns None (the Python parser decides).
 * tests/blocklist/test_fastpath.py checks, over generated dial strings and lists with overlays,
 * never-block entries and trunk-kept entries, that every non-None answer is the Python one.
 * ------------------------------------------------------------------------------------------- */

#define FP_MAX_DIAL 64   /* blocklist.screen.MAX_DIAL_CHARS; checked equal at construction */
#define FP_MAX_PART 16   /* the longest cc, trunk, intl, outside line or separator set accepted */
#define FP_MAX_TOTALS 16 /* E.164 lengths 6..15: at most 10 */
#define FP_MAX_PREFIXES 16 /* dial prefixes of a plan: 141, 1470, 18001, 18002 and the line */
/* The guess cache's keys have at most this many digits (blocklist._tables.GUESS_DIGITS is 6). */
#define FP_MAX_GUESS_DIGITS 6
/* Slots of the C memo of guess-cache keys known to need no lookup (a power of two; half may be
 * filled): twice blocklist._tables.MAX_NEARS, the bound of the Python cache it mirrors. */
#define FP_MEMO_SLOTS (1u << 15)

typedef struct {
    PyObject_HEAD
    char cc[FP_MAX_PART + 1], trunk[FP_MAX_PART + 1], intl[FP_MAX_PART + 1];
    char cc_trunk[2 * FP_MAX_PART + 1], outside_trunk[2 * FP_MAX_PART + 1];
    Py_ssize_t cc_len, trunk_len, intl_len, cc_trunk_len, outside_trunk_len, outside_line_len;
    unsigned char prefix_first[10]; /* 1 when some dial prefix starts with this digit */
    char prefixes[FP_MAX_PREFIXES][FP_MAX_PART + 1]; /* the plan's dial prefixes, as given */
    Py_ssize_t prefix_len[FP_MAX_PREFIXES], nprefixes, max_variants;
    unsigned char separator[128];   /* 1 for each visual separator */
    Py_ssize_t never_long, min_total, ntotals, guess_digits;
    /* Keys (digits * 8 + count + 1; 0 = empty) that the snapshot's guess cache maps to
     * NO_GUESSES: an entry there never changes for the snapshot, so the answer is kept here and
     * the common "9 0..." dial needs no Python string or dict lookup. Open addressing. */
    uint32_t *memo;
    uint32_t memo_used;
    Py_ssize_t totals[FP_MAX_TOTALS];
    int never_listed, trunk_listed;
    PyObject *base;       /* a U64Set (direct lookups) or any container (`in`) */
    PyObject *added, *removed, *never_ints; /* frozensets */
    PyObject *guesses;    /* the snapshot's guess cache (a dict the Python screener fills) */
    PyObject *no_guesses; /* blocklist._tables.NO_GUESSES */
    PyObject *allowed;    /* the ALLOWED CheckResult */
    PyObject *result_type, *blocked; /* CheckResult, Verdict.BLOCKED */
} FastPath;

static int copy_part(PyObject *o, char *out, Py_ssize_t cap, Py_ssize_t *len, const char *what) {
    if (!PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o)) {
        PyErr_Format(PyExc_TypeError, "FastPath: %s must be an ASCII str", what);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    if (n > cap) {
        PyErr_Format(PyExc_ValueError, "FastPath: %s is longer than %zd characters", what, cap);
        return -1;
    }
    memcpy(out, PyUnicode_1BYTE_DATA(o), (size_t)n);
    out[n] = '\0';
    *len = n;
    return 0;
}

static int all_digits(const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
    }
    return 1;
}

static void fastpath_dealloc(FastPath *f) {
    PyMem_Free(f->memo);
    Py_XDECREF(f->base);
    Py_XDECREF(f->added);
    Py_XDECREF(f->removed);
    Py_XDECREF(f->never_ints);
    Py_XDECREF(f->guesses);
    Py_XDECREF(f->no_guesses);
    Py_XDECREF(f->allowed);
    Py_XDECREF(f->result_type);
    Py_XDECREF(f->blocked);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyObject *fastpath_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"cc", "trunk", "intl", "outside_line", "outside_trunk",
                             "prefixes", "max_variants", "separators", "never_long", "max_dial",
                             "min_total", "totals", "base", "added", "removed", "never_ints",
                             "never_listed", "trunk_listed", "guesses", "no_guesses",
                             "guess_digits", "allowed", "result_type", "blocked", NULL};
    PyObject *cc, *trunk, *intl, *outside_line, *outside_trunk, *prefixes, *separators;
    PyObject *totals, *base, *added, *removed, *never_ints, *guesses, *no_guesses, *allowed;
    PyObject *result_type, *blocked;
    Py_ssize_t never_long, max_dial, min_total, guess_digits, max_variants;
    int never_listed, trunk_listed;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "$UUUUUO!nUnnnO!OO!O!O!ppO!OnOO!O:FastPath", kwlist, &cc, &trunk, &intl,
            &outside_line, &outside_trunk, &PyTuple_Type, &prefixes, &max_variants, &separators,
            &never_long, &max_dial,
            &min_total, &PyTuple_Type, &totals, &base, &PyFrozenSet_Type, &added,
            &PyFrozenSet_Type, &removed, &PyFrozenSet_Type, &never_ints, &never_listed,
            &trunk_listed, &PyDict_Type, &guesses, &no_guesses, &guess_digits, &allowed,
            &PyType_Type, &result_type, &blocked)) {
        return NULL;
    }
    if (max_dial != FP_MAX_DIAL) {
        return PyErr_Format(PyExc_ValueError, "FastPath: max_dial %zd, this build reads %d",
                            max_dial, FP_MAX_DIAL);
    }
    if (!PyType_IsSubtype((PyTypeObject *)result_type, &PyTuple_Type)) {
        return PyErr_Format(PyExc_TypeError, "FastPath: result_type must be a tuple subclass");
    }
    FastPath *f = (FastPath *)type->tp_alloc(type, 0);
    if (f == NULL) return NULL;
    Py_ssize_t outside_line_len, sep_len;
    char seps[FP_MAX_PART + 1], line[FP_MAX_PART + 1];
    if (copy_part(cc, f->cc, FP_MAX_PART, &f->cc_len, "cc") < 0 ||
        copy_part(trunk, f->trunk, FP_MAX_PART, &f->trunk_len, "trunk") < 0 ||
        copy_part(intl, f->intl, FP_MAX_PART, &f->intl_len, "intl") < 0 ||
        copy_part(outside_line, line, FP_MAX_PART, &outside_line_len, "outside_line") < 0 ||
        copy_part(outside_trunk, f->outside_trunk, 2 * FP_MAX_PART, &f->outside_trunk_len,
                  "outside_trunk") < 0 ||
        copy_part(separators, seps, FP_MAX_PART, &sep_len, "separators") < 0) {
        Py_DECREF(f);
        return NULL;
    }
    if (f->cc_len == 0 || f->intl_len == 0 || !all_digits(f->cc, f->cc_len) ||
        !all_digits(f->trunk, f->trunk_len) || !all_digits(f->intl, f->intl_len) ||
        !all_digits(line, outside_line_len) ||
        !all_digits(f->outside_trunk, f->outside_trunk_len)) {
        Py_DECREF(f);
        return PyErr_Format(PyExc_ValueError, "FastPath: a dial plan part is not digits");
    }
    f->outside_line_len = outside_line_len;
    if (f->trunk_len) {
        memcpy(f->cc_trunk, f->cc, (size_t)f->cc_len);
        memcpy(f->cc_trunk + f->cc_len, f->trunk, (size_t)f->trunk_len);
        f->cc_trunk_len = f->cc_len + f->trunk_len;
        f->cc_trunk[f->cc_trunk_len] = '\0';
    }
    f->nprefixes = PyTuple_GET_SIZE(prefixes);
    if (f->nprefixes > FP_MAX_PREFIXES) {
        Py_DECREF(f);
        return PyErr_Format(PyExc_ValueError, "FastPath: more than %d dial prefixes",
                            FP_MAX_PREFIXES);
    }
    for (Py_ssize_t i = 0; i < f->nprefixes; i++) {
        if (copy_part(PyTuple_GET_ITEM(prefixes, i), f->prefixes[i], FP_MAX_PART,
                      &f->prefix_len[i], "a dial prefix") < 0) {
            Py_DECREF(f);
            return NULL;
        }
        if (f->prefix_len[i] == 0 || !all_digits(f->prefixes[i], f->prefix_len[i])) {
            Py_DECREF(f);
            return PyErr_Format(PyExc_ValueError, "FastPath: a dial prefix is not digits");
        }
        f->prefix_first[f->prefixes[i][0] - '0'] = 1;
    }
    if (max_variants < 1 || max_variants > FP_MAX_DIAL) {
        Py_DECREF(f);
        return PyErr_Format(PyExc_ValueError, "FastPath: max_variants %zd out of range",
                            max_variants);
    }
    f->max_variants = max_variants;
    for (Py_ssize_t i = 0; i < sep_len; i++) {
        unsigned char ch = (unsigned char)seps[i];
        if ((ch >= '0' && ch <= '9') || ch == '+') {
            Py_DECREF(f);
            return PyErr_Format(PyExc_ValueError, "FastPath: a separator is a digit or '+'");
        }
        f->separator[ch] = 1;
    }
    Py_ssize_t nt = PyTuple_GET_SIZE(totals);
    if (nt > FP_MAX_TOTALS) {
        Py_DECREF(f);
        return PyErr_Format(PyExc_ValueError, "FastPath: more than %d totals", FP_MAX_TOTALS);
    }
    for (Py_ssize_t i = 0; i < nt; i++) {
        Py_ssize_t t = PyLong_AsSsize_t(PyTuple_GET_ITEM(totals, i));
        if (t == -1 && PyErr_Occurred()) {
            Py_DECREF(f);
            return NULL;
        }
        /* 19 digits always fit a uint64; E.164 numbers have at most 15. */
        if (t < 1 || t > 19 || (i && t <= f->totals[i - 1])) {
            Py_DECREF(f);
            return PyErr_Format(PyExc_ValueError,
                                "FastPath: totals must be ascending lengths of 1 to 19 digits");
        }
        f->totals[i] = t;
    }
    f->ntotals = nt;
    f->never_long = never_long;
    f->min_total = min_total;
    if (guess_digits < 1 || guess_digits > FP_MAX_GUESS_DIGITS) {
        Py_DECREF(f);
        return PyErr_Format(PyExc_ValueError, "FastPath: guess_digits %zd out of range 1..%d",
                            guess_digits, FP_MAX_GUESS_DIGITS);
    }
    f->guess_digits = guess_digits;
    f->never_listed = never_listed;
    f->trunk_listed = trunk_listed;
    f->base = Py_NewRef(base);
    f->added = Py_NewRef(added);
    f->removed = Py_NewRef(removed);
    f->never_ints = Py_NewRef(never_ints);
    f->guesses = Py_NewRef(guesses);
    f->no_guesses = Py_NewRef(no_guesses);
    f->allowed = Py_NewRef(allowed);
    f->result_type = Py_NewRef(result_type);
    f->blocked = Py_NewRef(blocked);
    return (PyObject *)f;
}

static inline int has_prefix(const char *s, Py_ssize_t n, const char *p, Py_ssize_t pn) {
    return n >= pn && memcmp(s, p, (size_t)pn) == 0;
}

/* Whether the list bars `value`: 1, 0, or -1 with an exception set. Exactly Tables.barred
 * with the fast path's never-block test: `(value in base and not (removed and value in
 * removed)) or (added and value in added)`, then not a never-block number if the list holds any. */
static int fastpath_barred(FastPath *f, uint64_t value) {
    PyObject *v = NULL;
    int hit;
    if (Py_IS_TYPE(f->base, &U64SetType)) {
        hit = u64set_has((U64Set *)f->base, value);
    } else {
        v = PyLong_FromUnsignedLongLong(value);
        if (v == NULL) return -1;
        hit = PySequence_Contains(f->base, v);
        if (hit < 0) goto fail;
    }
    if ((hit && PySet_GET_SIZE(f->removed)) || (!hit && PySet_GET_SIZE(f->added)) ||
        f->never_listed) {
        if (v == NULL && (v = PyLong_FromUnsignedLongLong(value)) == NULL) return -1;
    }
    if (hit && PySet_GET_SIZE(f->removed)) {
        int r = PySet_Contains(f->removed, v);
        if (r < 0) goto fail;
        hit = !r;
    }
    if (!hit && PySet_GET_SIZE(f->added)) {
        hit = PySet_Contains(f->added, v);
        if (hit < 0) goto fail;
    }
    if (hit && f->never_listed) {
        int never = PySet_Contains(f->never_ints, v);
        if (never < 0) goto fail;
        hit = !never;
    }
    Py_XDECREF(v);
    return hit;
fail:
    Py_XDECREF(v);
    return -1;
}

static PyObject *fastpath_blocked(FastPath *f, uint64_t value) {
    PyObject *v = PyLong_FromUnsignedLongLong(value);
    if (v == NULL) return NULL;
    /* CheckResult(BLOCKED, value) as tuple.__new__ builds an instance of a tuple subclass. */
    PyTypeObject *type = (PyTypeObject *)f->result_type;
    PyObject *res = type->tp_alloc(type, 2);
    if (res == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, Py_NewRef(f->blocked));
    PyTuple_SET_ITEM(res, 1, v);
    return res;
}

static inline uint32_t memo_key(const char *digits, Py_ssize_t n) {
    uint32_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = v * 10 + (uint32_t)(digits[i] - '0');
    return v * 8 + (uint32_t)n + 1;
}

static inline uint32_t memo_slot(uint32_t key) { return (key * 2654435761u) & (FP_MEMO_SLOTS - 1); }

static int memo_has(const FastPath *f, uint32_t key) {
    if (f->memo == NULL) return 0;
    for (uint32_t i = memo_slot(key);; i = (i + 1) & (FP_MEMO_SLOTS - 1)) {
        if (f->memo[i] == key) return 1;
        if (f->memo[i] == 0) return 0;
    }
}

static void memo_add(FastPath *f, uint32_t key) {
    if (f->memo_used >= FP_MEMO_SLOTS / 2) return; /* full enough: ask Python from now on */
    if (f->memo == NULL) {
        f->memo = PyMem_Calloc(FP_MEMO_SLOTS, sizeof(uint32_t));
        if (f->memo == NULL) return; /* only a cache: go without */
    }
    uint32_t i = memo_slot(key);
    while (f->memo[i] != 0) {
        if (f->memo[i] == key) return;
        i = (i + 1) & (FP_MEMO_SLOTS - 1);
    }
    f->memo[i] = key;
    f->memo_used++;
}

/* Screener._step: the length of the one dial prefix `s` starts with; 0 when it starts with no
 * prefix's first digit, -1 when no prefix or two could apply (a prefix listed twice counts
 * twice, as in the Python list). */
static Py_ssize_t fastpath_step(const FastPath *f, const char *s, Py_ssize_t n) {
    if (n == 0 || !f->prefix_first[s[0] - '0']) return 0;
    Py_ssize_t cut = -1, applying = 0;
    for (Py_ssize_t i = 0; i < f->nprefixes; i++) {
        if (has_prefix(s, n, f->prefixes[i], f->prefix_len[i])) {
            applying++;
            cut = f->prefix_len[i];
        }
    }
    return applying == 1 ? cut : -1;
}

static PyObject *fastpath_call(FastPath *f, PyObject *dialled) {
    if (!PyUnicode_Check(dialled)) Py_RETURN_NONE;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(dialled) < 0) return NULL; /* legacy strings exist until 3.12 */
#endif
    if (!PyUnicode_IS_ASCII(dialled)) Py_RETURN_NONE;
    Py_ssize_t n = PyUnicode_GET_LENGTH(dialled);
    if (n > FP_MAX_DIAL) Py_RETURN_NONE;
    const unsigned char *c = PyUnicode_1BYTE_DATA(dialled);
    /* The digits, with separators removed and at most one '+' before them. */
    char num[FP_MAX_DIAL + 1];
    Py_ssize_t len = 0;
    int plus = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = c[i];
        if (ch >= '0' && ch <= '9') {
            num[len++] = (char)ch;
        } else if (ch == '+' && len == 0 && !plus) {
            plus = 1;
        } else if (ch >= 128 || !f->separator[ch]) {
            Py_RETURN_NONE;
        }
    }
    if (len == 0) Py_RETURN_NONE;
    const char *cand;
    Py_ssize_t cand_len;
    char built[FP_MAX_DIAL + 2 * FP_MAX_PART + 1];
    /* Where each variant still starting with a dial prefix begins (Python's `stacked`). */
    Py_ssize_t stacked[FP_MAX_DIAL + 1];
    Py_ssize_t nstacked = 0;
    const char *international = NULL;
    Py_ssize_t international_len = 0;
    if (plus) {
        international = num;
        international_len = len;
    } else {
        if (len <= f->never_long || f->trunk_len == 0) Py_RETURN_NONE;
        const char *rest = num;
        Py_ssize_t rest_len = len;
        if (f->prefix_first[num[0] - '0']) {
            if (f->outside_trunk_len &&
                has_prefix(num, len, f->outside_trunk, f->outside_trunk_len)) {
                stacked[nstacked++] = 0;
                rest = num + f->outside_line_len;
                rest_len = len - f->outside_line_len;
            } else {
                /* Python: _unstack, stripping one prefix at a time while exactly one applies. */
                Py_ssize_t pos = 0, found = 1;
                for (;;) {
                    Py_ssize_t cut = fastpath_step(f, num + pos, len - pos);
                    if (cut == 0) break;
                    if (cut < 0 || found >= f->max_variants) Py_RETURN_NONE;
                    stacked[nstacked++] = pos;
                    pos += cut;
                    found++;
                }
                rest = num + pos;
                rest_len = len - pos;
            }
            if (rest_len <= f->never_long) Py_RETURN_NONE;
        }
        if (!has_prefix(rest, rest_len, f->trunk, f->trunk_len)) Py_RETURN_NONE;
        if (has_prefix(rest, rest_len, f->intl, f->intl_len)) {
            international = rest + f->intl_len;
            international_len = rest_len - f->intl_len;
        } else {
            memcpy(built, f->cc, (size_t)f->cc_len);
            memcpy(built + f->cc_len, rest + f->trunk_len, (size_t)(rest_len - f->trunk_len));
            cand = built;
            cand_len = f->cc_len + rest_len - f->trunk_len;
        }
    }
    if (international != NULL) {
        cand = international;
        cand_len = international_len;
        if (cand_len <= f->never_long || !has_prefix(cand, cand_len, f->cc, f->cc_len)) {
            Py_RETURN_NONE;
        }
        if (f->cc_trunk_len && has_prefix(cand, cand_len, f->cc_trunk, f->cc_trunk_len)) {
            memcpy(built, f->cc, (size_t)f->cc_len);
            memcpy(built + f->cc_len, cand + f->cc_trunk_len,
                   (size_t)(cand_len - f->cc_trunk_len));
            cand_len = f->cc_len + cand_len - f->cc_trunk_len;
            cand = built;
            if (f->trunk_listed || cand_len <= f->never_long) Py_RETURN_NONE;
        }
    }
    if (cand_len < f->min_total) Py_RETURN_NONE;
    /* Each length the list holds for the country, shortest first (overdialling, rule 3). */
    uint64_t value = 0;
    Py_ssize_t have = 0;
    for (Py_ssize_t k = 0; k < f->ntotals; k++) {
        Py_ssize_t total = f->totals[k];
        if (total > cand_len) break;
        while (have < total) value = value * 10 + (uint64_t)(cand[have++] - '0');
        int barred = fastpath_barred(f, value);
        if (barred < 0) return NULL;
        if (barred) return fastpath_blocked(f, value);
    }
    for (Py_ssize_t k = 0; k < nstacked; k++) {
        /* Python: the prefixed variants' speculative readings, unless the snapshot's guess
         * cache says that none of them has one worth a lookup. */
        Py_ssize_t left = len - stacked[k];
        Py_ssize_t g = left < f->guess_digits ? left : f->guess_digits;
        uint32_t mk = memo_key(num + stacked[k], g);
        if (memo_has(f, mk)) continue;
        PyObject *key = PyUnicode_FromStringAndSize(num + stacked[k], g);
        if (key == NULL) return NULL;
        PyObject *found = PyDict_GetItemWithError(f->guesses, key);
        Py_DECREF(key);
        if (found == NULL && PyErr_Occurred()) return NULL;
        if (found != f->no_guesses) Py_RETURN_NONE; /* Python: _guess */
        memo_add(f, mk);
    }
    Py_INCREF(f->allowed);
    return f->allowed;
}

static PyMethodDef fastpath_methods[] = {
    {"check", (PyCFunction)fastpath_call, METH_O,
     "check(dialled): the Python screener's CheckResult for the dial string, or None where the "
     "fast path does not decide."},
    {NULL, NULL, 0, NULL},
};

static PyObject *fastpath_repr(FastPath *f) {
    return PyUnicode_FromFormat("FastPath(cc=%s, trunk=%s, intl=%s)", f->cc, f->trunk, f->intl);
}

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blocklist._native.FastPath",
    .tp_doc = PyDoc_STR("FastPath(**plan and snapshot tables): Screener.check's fast path in C."),
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = fastpath_new,
    .tp_dealloc = (destructor)fastpath_dealloc,
    .tp_repr = (reprfunc)fastpath_repr,
    .tp_methods = fastpath_methods,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "blocklist._native",
    .m_doc = PyDoc_STR("The list's compact set (U64Set) and the screener's fast path (FastPath)."),
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&U64SetType) < 0 || PyType_Ready(&FastPathType) < 0) return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    Py_INCREF(&U64SetType);
    if (PyModule_AddObject(m, "U64Set", (PyObject *)&U64SetType) < 0) {
        Py_DECREF(&U64SetType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(&FastPathType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
