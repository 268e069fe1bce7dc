/* Compiled twin of the segment codec's hot path (udptcp/core/segment.py).
 *
 * segment.py is the reference: this module must return the same bytes, the same decoded
 * segments and raise the same MalformedSegment (reason and detail) for every input, and
 * tests/core/test_speedups.py checks that it does. Anything unusual -- an argument that is
 * not exactly bytes or a Segment, a field out of range, options this file does not encode
 * -- is handed to the pure-Python function, so errors and corner cases have one
 * implementation.
 *
 * Peer input is hostile (every length and offset below is checked against the buffer
 * before it is read); the module never keeps a reference to a datagram.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Control bits and option kinds (RFC 9293 §3.1 and §3.2, RFC 7323, RFC 2018). */
#define HEADER_LEN 20
#define MAX_OPTIONS_LEN 40
#define OPT_EOL 0
#define OPT_NOP 1
#define OPT_MSS 2
#define OPT_WSCALE 3
#define OPT_SACK_PERMITTED 4
#define OPT_SACK 5
#define OPT_TIMESTAMPS 8

/* What setup() hands over from segment.py. */
static PyTypeObject *segment_type = NULL;
static PyTypeObject *options_type = NULL;
static PyObject *malformed_type = NULL;
static PyObject *pure_encode = NULL;
static PyObject *pure_decode = NULL;
static PyObject *pure_checksum = NULL;

/* The __slots__ member descriptors, read and written through their tp_descr_get/set. */
enum { S_SRC, S_DST, S_SEQ, S_ACK, S_FLAGS, S_WINDOW, S_OPTIONS, S_PAYLOAD, S_COUNT };
static const char *const segment_slots[S_COUNT] = {
    "src_port", "dst_port", "seq", "ack", "flags", "window", "options", "payload",
};
static PyObject *segment_descr[S_COUNT];

enum { O_MSS, O_WSCALE, O_SACK_PERMITTED, O_SACK_BLOCKS, O_TIMESTAMPS, O_UNKNOWN, O_COUNT };
static const char *const options_slots[O_COUNT] = {
    "mss", "wscale", "sack_permitted", "sack_blocks", "timestamps", "unknown",
};
static PyObject *options_descr[O_COUNT];

static PyObject *empty_tuple = NULL;

/* ------------------------------------------------------------------ checksum */

/* RFC 1071: the ones' complement sum of the big-endian 16-bit words of buf (an odd last
 * byte padded with zero), folded to 16 bits. The sum is byte-order independent
 * (RFC 1071 §2(B)) and any word size will do once the carries are folded back in, so
 * 32-bit words are added in native order, the sum folded, and swapped once at the end.
 * A non-zero sum never folds to 0, so 0 means every byte was zero, as in segment.py. */
static uint16_t
ones_sum(const unsigned char *buf, Py_ssize_t len)
{
    /* 32-bit words into four 64-bit sums: no carry to test per word (a sum overflows only
     * after 2**32 words), and independent sums the compiler can vectorise. */
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t w[4];
    while (len >= 16) {
        memcpy(w, buf, 16);
        a0 += w[0];
        a1 += w[1];
        a2 += w[2];
        a3 += w[3];
        buf += 16;
        len -= 16;
    }
    uint64_t acc = a0 + a1 + a2 + a3;
    while (len >= 4) {
        memcpy(w, buf, 4);
        acc += w[0];
        buf += 4;
        len -= 4;
    }
    if (len > 0) {
        unsigned char last[4] = {0};
        memcpy(last, buf, (size_t)len); /* zero padding, odd byte included */
        memcpy(w, last, 4);
        acc += w[0];
    }
    /* Fold 64 -> 16 bits with end-around carry. */
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    uint16_t sum = (uint16_t)acc;
#if PY_LITTLE_ENDIAN
    sum = (uint16_t)((sum >> 8) | (sum << 8));
#endif
    return sum;
}

static uint16_t
checksum_of(const unsigned char *buf, Py_ssize_t len)
{
    return (uint16_t)(~ones_sum(buf, len) & 0xFFFFu);
}

static PyObject *
speedups_checksum(PyObject *module, PyObject *data)
{
    if (PyBytes_CheckExact(data)) {
        return PyLong_FromLong(
            checksum_of((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)));
    }
    if (PyByteArray_CheckExact(data)) {
        return PyLong_FromLong(checksum_of(
            (const unsigned char *)PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data)));
    }
    return PyObject_CallOneArg(pure_checksum, data);
}

/* ------------------------------------------------------------------ helpers */

static inline uint16_t
be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
put16(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void
put32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A slot's value (a new reference), or NULL with no exception set if it is unset. */
static PyObject *
get_slot(PyObject *descr, PyObject *obj)
{
    PyObject *value = Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)Py_TYPE(obj));
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* Set a slot, stealing the reference to value; -1 if value is NULL or setting failed. */
static int
set_slot(PyObject *descr, PyObject *obj, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int rc = Py_TYPE(descr)->tp_descr_set(descr, obj, value);
    Py_DECREF(value);
    return rc;
}

/* An exact int in [0, limit], else -1 (no exception left set). */
static long long
small_uint(PyObject *obj, unsigned long long limit)
{
    if (obj == NULL || !PyLong_CheckExact(obj)) {
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || v < 0 || (unsigned long long)v > limit) {
        PyErr_Clear();
        return -1;
    }
    return v;
}

/* ------------------------------------------------------------------ encode */

/* Options in the order and layout of segment._encode_options(aligned=True). Returns the
 * padded length written into out (at most MAX_OPTIONS_LEN), 0 for no options, or -1 when
 * the options need the pure-Python encoder (unknown options, a value out of range, more
 * than fits when aligned). */
static int
encode_options(PyObject *options, unsigned char *out)
{
    PyObject *v[O_COUNT];
    int n = 0;
    int result = -1;
    for (int i = 0; i < O_COUNT; i++) {
        v[i] = get_slot(options_descr[i], options);
    }
    for (int i = 0; i < O_COUNT; i++) {
        if (v[i] == NULL) {
            goto done; /* an unset slot: let segment.py raise what it raises */
        }
    }
    if (!PyTuple_CheckExact(v[O_UNKNOWN]) || PyTuple_GET_SIZE(v[O_UNKNOWN]) != 0) {
        goto done;
    }
    unsigned char buf[64];
    if (v[O_MSS] != Py_None) {
        long long mss = small_uint(v[O_MSS], 0xFFFF);
        if (mss < 0) {
            goto done;
        }
        buf[n++] = OPT_MSS;
        buf[n++] = 4;
        put16(buf + n, (unsigned long)mss);
        n += 2;
    }
    if (v[O_WSCALE] != Py_None) {
        long long ws = small_uint(v[O_WSCALE], 0xFF);
        if (ws < 0) {
            goto done;
        }
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_WSCALE;
        buf[n++] = 3;
        buf[n++] = (unsigned char)ws;
    }
    if (v[O_SACK_PERMITTED] == Py_True) {
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_SACK_PERMITTED;
        buf[n++] = 2;
    }
    else if (v[O_SACK_PERMITTED] != Py_False) {
        goto done; /* truthiness of another object: the pure path decides */
    }
    if (v[O_TIMESTAMPS] != Py_None) {
        PyObject *ts = v[O_TIMESTAMPS];
        if (!PyTuple_CheckExact(ts) || PyTuple_GET_SIZE(ts) != 2) {
            goto done;
        }
        long long tsval = small_uint(PyTuple_GET_ITEM(ts, 0), 0xFFFFFFFFu);
        long long tsecr = small_uint(PyTuple_GET_ITEM(ts, 1), 0xFFFFFFFFu);
        if (tsval < 0 || tsecr < 0) {
            goto done;
        }
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_TIMESTAMPS;
        buf[n++] = 10;
        put32(buf + n, (unsigned long)tsval);
        put32(buf + n + 4, (unsigned long)tsecr);
        n += 8;
    }
    PyObject *blocks = v[O_SACK_BLOCKS];
    if (!PyTuple_CheckExact(blocks)) {
        goto done;
    }
    Py_ssize_t nblocks = PyTuple_GET_SIZE(blocks);
    if (nblocks > 0) {
        if (nblocks > 4 || n + 4 + 8 * nblocks > MAX_OPTIONS_LEN) {
            goto done; /* an error, or the unaligned layout: segment.py's business */
        }
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_NOP;
        buf[n++] = OPT_SACK;
        buf[n++] = (unsigned char)(2 + 8 * nblocks);
        for (Py_ssize_t b = 0; b < nblocks; b++) {
            PyObject *block = PyTuple_GET_ITEM(blocks, b);
            if (!PyTuple_CheckExact(block) || PyTuple_GET_SIZE(block) != 2) {
                goto done;
            }
            long long left = small_uint(PyTuple_GET_ITEM(block, 0), 0xFFFFFFFFu);
            long long right = small_uint(PyTuple_GET_ITEM(block, 1), 0xFFFFFFFFu);
            if (left < 0 || right < 0) {
                goto done;
            }
            put32(buf + n, (unsigned long)left);
            put32(buf + n + 4, (unsigned long)right);
            n += 8;
        }
    }
    while (n & 3) {
        buf[n++] = OPT_EOL; /* EOL ends option parsing (RFC 9293 §3.2) */
    }
    if (n > MAX_OPTIONS_LEN) {
        goto done; /* the unaligned fallback layout lives in segment.py */
    }
    memcpy(out, buf, (size_t)n);
    result = n;
done:
    for (int i = 0; i < O_COUNT; i++) {
        Py_XDECREF(v[i]);
    }
    return result;
}

/* The wire form of seg, or NULL with no exception set when segment.py must encode it. */
static PyObject *
encode_fast(PyObject *seg)
{
    PyObject *v[S_COUNT];
    PyObject *result = NULL;
    long long f[6];
    static const unsigned long long limits[6] = {
        0xFFFF, 0xFFFF, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFF, 0xFFFF,
    };
    for (int i = 0; i < S_COUNT; i++) {
        v[i] = get_slot(segment_descr[i], seg);
    }
    for (int i = 0; i < S_COUNT; i++) {
        if (v[i] == NULL) {
            goto done;
        }
    }
    for (int i = 0; i < 6; i++) {
        f[i] = small_uint(v[i], limits[i]);
        if (f[i] < 0) {
            goto done;
        }
    }
    PyObject *payload = v[S_PAYLOAD];
    if (!PyBytes_CheckExact(payload)) {
        goto done;
    }
    unsigned char opts[MAX_OPTIONS_LEN];
    int olen = 0;
    PyObject *options = v[S_OPTIONS];
    if (options != Py_None) {
        if (Py_TYPE(options) != options_type) {
            goto done;
        }
        olen = encode_options(options, opts);
        if (olen < 0) {
            goto done;
        }
    }
    Py_ssize_t plen = PyBytes_GET_SIZE(payload);
    if (plen > PY_SSIZE_T_MAX - HEADER_LEN - MAX_OPTIONS_LEN) {
        goto done;
    }
    Py_ssize_t hlen = HEADER_LEN + olen;
    result = PyBytes_FromStringAndSize(NULL, hlen + plen);
    if (result == NULL) {
        goto done; /* MemoryError stays set */
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    put16(out, (unsigned long)f[S_SRC]);
    put16(out + 2, (unsigned long)f[S_DST]);
    put32(out + 4, (unsigned long)f[S_SEQ]);
    put32(out + 8, (unsigned long)f[S_ACK]);
    out[12] = (unsigned char)(hlen << 2); /* data offset in words, high nibble */
    out[13] = (unsigned char)f[S_FLAGS];
    put16(out + 14, (unsigned long)f[S_WINDOW]);
    put16(out + 16, 0); /* checksum, computed below over the zeroed field */
    put16(out + 18, 0); /* urgent pointer: URG is not supported */
    memcpy(out + HEADER_LEN, opts, (size_t)olen);
    memcpy(out + hlen, PyBytes_AS_STRING(payload), (size_t)plen);
    put16(out + 16, checksum_of(out, hlen + plen));
done:
    for (int i = 0; i < S_COUNT; i++) {
        Py_XDECREF(v[i]);
    }
    return result;
}

static PyObject *
speedups_encode(PyObject *module, PyObject *seg)
{
    if (Py_TYPE(seg) == segment_type) {
        PyObject *wire = encode_fast(seg);
        if (wire != NULL || PyErr_Occurred()) {
            return wire;
        }
    }
    return PyObject_CallOneArg(pure_encode, seg);
}

/* ------------------------------------------------------------------ decode */

static void
malformed(const char *reason, PyObject *detail)
{
    if (detail == NULL) {
        return; /* building the detail failed: that exception stays */
    }
    PyObject *exc = PyObject_CallFunction(malformed_type, "sO", reason, detail);
    Py_DECREF(detail);
    if (exc != NULL) {
        PyErr_SetObject(malformed_type, exc);
        Py_DECREF(exc);
    }
}

static PyObject *
new_instance(PyTypeObject *type)
{
    return type->tp_alloc(type, 0);
}

/* Options parsed from buf[start:end] exactly as segment._decode_options parses them. */
static PyObject *
decode_options(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end)
{
    long mss = -1, wscale = -1;
    int sack_permitted = 0;
    int have_ts = 0;
    uint32_t tsval = 0, tsecr = 0;
    int nblocks = 0;
    uint32_t edges[8];
    PyObject *unknown = NULL; /* a list, made on the first unknown option */
    PyObject *options = NULL;
    Py_ssize_t i = start;
    while (i < end) {
        unsigned int kind = buf[i];
        if (kind == OPT_EOL) {
            break;
        }
        if (kind == OPT_NOP) {
            i += 1;
            continue;
        }
        if (i + 1 >= end) {
            malformed("option-overrun",
                      PyUnicode_FromFormat("kind %u at %zd has no length byte", kind, i));
            goto fail;
        }
        unsigned int opt_len = buf[i + 1];
        if (opt_len < 2) {
            malformed("option-length",
                      PyUnicode_FromFormat("kind %u at %zd has length %u", kind, i, opt_len));
            goto fail;
        }
        Py_ssize_t next_i = i + opt_len;
        if (next_i > end) {
            malformed("option-overrun", PyUnicode_FromFormat("kind %u at %zd length %u passes %zd",
                                                             kind, i, opt_len, end));
            goto fail;
        }
        int ok = 1;
        switch (kind) {
        case OPT_MSS:
            ok = opt_len == 4;
            if (ok) {
                mss = be16(buf + i + 2);
            }
            break;
        case OPT_WSCALE:
            ok = opt_len == 3;
            if (ok) {
                wscale = buf[i + 2];
            }
            break;
        case OPT_SACK_PERMITTED:
            ok = opt_len == 2;
            if (ok) {
                sack_permitted = 1;
            }
            break;
        case OPT_SACK: {
            /* 2 + 8n bytes; n <= 4 because a header has 40 option bytes (RFC 2018 §3). */
            unsigned int blocks = (opt_len - 2) / 8;
            ok = blocks >= 1 && blocks <= 4 && (opt_len - 2) % 8 == 0;
            if (ok) {
                nblocks = (int)blocks;
                for (unsigned int e = 0; e < 2 * blocks; e++) {
                    edges[e] = be32(buf + i + 2 + 4 * e);
                }
            }
            break;
        }
        case OPT_TIMESTAMPS:
            ok = opt_len == 10;
            if (ok) {
                have_ts = 1;
                tsval = be32(buf + i + 2);
                tsecr = be32(buf + i + 6);
            }
            break;
        default: {
            if (unknown == NULL && (unknown = PyList_New(0)) == NULL) {
                goto fail;
            }
            PyObject *item = Py_BuildValue("(Iy#)", kind, (const char *)buf + i + 2,
                                           (Py_ssize_t)(opt_len - 2));
            if (item == NULL || PyList_Append(unknown, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
        }
        if (!ok) {
            malformed("option-length",
                      PyUnicode_FromFormat("kind %u cannot have length %u", kind, opt_len));
            goto fail;
        }
        i = next_i;
    }
    options = new_instance(options_type);
    if (options == NULL) {
        goto fail;
    }
    PyObject *blocks = NULL;
    if (nblocks) {
        blocks = PyTuple_New(nblocks);
        if (blocks == NULL) {
            goto fail;
        }
        for (int b = 0; b < nblocks; b++) {
            PyObject *pair = Py_BuildValue("(kk)", (unsigned long)edges[2 * b],
                                           (unsigned long)edges[2 * b + 1]);
            if (pair == NULL) {
                Py_DECREF(blocks);
                goto fail;
            }
            PyTuple_SET_ITEM(blocks, b, pair);
        }
    }
    else {
        blocks = Py_NewRef(empty_tuple);
    }
    /* blocks and the unknown tuple first: set_slot() takes them over even when it fails. */
    if (set_slot(options_descr[O_SACK_BLOCKS], options, blocks) < 0 ||
        set_slot(options_descr[O_UNKNOWN], options,
                 unknown == NULL ? Py_NewRef(empty_tuple) : PyList_AsTuple(unknown)) < 0 ||
        set_slot(options_descr[O_MSS], options,
                 mss < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(mss)) < 0 ||
        set_slot(options_descr[O_WSCALE], options,
                 wscale < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(wscale)) < 0 ||
        set_slot(options_descr[O_SACK_PERMITTED], options, PyBool_FromLong(sack_permitted)) < 0 ||
        set_slot(options_descr[O_TIMESTAMPS], options,
                 have_ts ? Py_BuildValue("(kk)", (unsigned long)tsval, (unsigned long)tsecr)
                         : Py_NewRef(Py_None)) < 0) {
        goto fail;
    }
    Py_XDECREF(unknown);
    return options;
fail:
    Py_XDECREF(unknown);
    Py_XDECREF(options);
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "udptcp._speedups: option decoding failed");
    }
    return NULL;
}

static PyObject *
speedups_decode(PyObject *module, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        return PyObject_CallOneArg(pure_decode, data); /* it flattens other buffers */
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t length = PyBytes_GET_SIZE(data);
    /* The checks in the order segment.py's docstring lists them. */
    if (length < HEADER_LEN) {
        malformed("short", PyUnicode_FromFormat("%zd bytes", length));
        return NULL;
    }
    if (checksum_of(buf, length) != 0) {
        malformed("checksum", PyUnicode_FromString(""));
        return NULL;
    }
    Py_ssize_t header_len = (Py_ssize_t)(buf[12] >> 4) << 2;
    if (header_len < HEADER_LEN || header_len > length) {
        malformed("data-offset",
                  PyUnicode_FromFormat("header %zd bytes, datagram %zd", header_len, length));
        return NULL;
    }
    PyObject *options;
    if (header_len == HEADER_LEN) {
        options = Py_NewRef(Py_None);
    }
    else {
        options = decode_options(buf, HEADER_LEN, header_len);
        if (options == NULL) {
            return NULL;
        }
    }
    PyObject *seg = new_instance(segment_type);
    if (seg == NULL) {
        Py_DECREF(options);
        return NULL;
    }
    if (set_slot(segment_descr[S_SRC], seg, PyLong_FromLong(be16(buf))) < 0 ||
        set_slot(segment_descr[S_DST], seg, PyLong_FromLong(be16(buf + 2))) < 0 ||
        set_slot(segment_descr[S_SEQ], seg, PyLong_FromUnsignedLong(be32(buf + 4))) < 0 ||
        set_slot(segment_descr[S_ACK], seg, PyLong_FromUnsignedLong(be32(buf + 8))) < 0 ||
        set_slot(segment_descr[S_FLAGS], seg, PyLong_FromLong(buf[13])) < 0 ||
        set_slot(segment_descr[S_WINDOW], seg, PyLong_FromLong(be16(buf + 14))) < 0 ||
        set_slot(segment_descr[S_OPTIONS], seg, options) < 0 ||
        set_slot(segment_descr[S_PAYLOAD], seg,
                 PyBytes_FromStringAndSize((const char *)buf + header_len,
                                           length - header_len)) < 0) {
        Py_DECREF(seg);
        return NULL;
    }
    return seg;
}

/* ------------------------------------------------------------------ setup */

static int
load_descriptors(PyTypeObject *type, const char *const *names, PyObject **out, int count)
{
    for (int i = 0; i < count; i++) {
        PyObject *descr = PyDict_GetItemString(type->tp_dict, names[i]); /* borrowed */
        if (descr == NULL || Py_TYPE(descr)->tp_descr_get == NULL ||
            Py_TYPE(descr)->tp_descr_set == NULL) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", type->tp_name,
                         names[i]);
            return -1;
        }
        Py_XSETREF(out[i], Py_NewRef(descr));
    }
    return 0;
}

static PyObject *
speedups_setup(PyObject *module, PyObject *args)
{
    PyObject *seg_t, *opt_t, *mal_t, *enc, *dec, *csum;
    if (!PyArg_ParseTuple(args, "O!O!OOOO:setup", &PyType_Type, &seg_t, &PyType_Type, &opt_t,
                          &mal_t, &enc, &dec, &csum)) {
        return NULL;
    }
    if (load_descriptors((PyTypeObject *)seg_t, segment_slots, segment_descr, S_COUNT) < 0 ||
        load_descriptors((PyTypeObject *)opt_t, options_slots, options_descr, O_COUNT) < 0) {
        return NULL;
    }
    Py_XSETREF(segment_type, (PyTypeObject *)Py_NewRef(seg_t));
    Py_XSETREF(options_type, (PyTypeObject *)Py_NewRef(opt_t));
    Py_XSETREF(malformed_type, Py_NewRef(mal_t));
    Py_XSETREF(pure_encode, Py_NewRef(enc));
    Py_XSETREF(pure_decode, Py_NewRef(dec));
    Py_XSETREF(pure_checksum, Py_NewRef(csum));
    Py_RETURN_NONE;
}

static PyObject *
not_set_up(PyObject *module, PyObject *arg)
{
    PyErr_SetString(PyExc_RuntimeError, "udptcp.core._speedups: setup() was not called");
    return NULL;
}

#define REQUIRE_SETUP()                                                                        \
    if (segment_type == NULL) {                                                                \
        return not_set_up(module, arg);                                                        \
    }

static PyObject *
checksum_entry(PyObject *module, PyObject *arg)
{
    REQUIRE_SETUP();
    return speedups_checksum(module, arg);
}

static PyObject *
encode_entry(PyObject *module, PyObject *arg)
{
    REQUIRE_SETUP();
    return speedups_encode(module, arg);
}

static PyObject *
decode_entry(PyObject *module, PyObject *arg)
{
    REQUIRE_SETUP();
    return speedups_decode(module, arg);
}

static PyMethodDef speedups_methods[] = {
    {"setup", speedups_setup, METH_VARARGS,
     "setup(Segment, Options, MalformedSegment, encode, decode, checksum): the classes to "
     "build and the pure-Python functions to hand unusual arguments to."},
    {"checksum", checksum_entry, METH_O, "segment.checksum, compiled."},
    {"encode", encode_entry, METH_O, "segment.encode, compiled."},
    {"decode", decode_entry, METH_O, "segment.decode, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "udptcp.core._speedups",
    "The segment codec's hot path in C; udptcp.core.segment is the reference.",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}
