/*
 * The hot path's byte walks in C: the reply scanner (`scan`), the request framing check
 * (`framed`) and the one-call split of plain requests (`split`).
 *
 * Reply boundary scanning: the same contract as `proxy.resp.replies._scan`.
 *
 * Python finds reply boundaries at ~300 ns per element: fine for GET/SET, slow for
 * aggregate replies (LRANGE, HGETALL, SMEMBERS) whose cost is all in that loop. This
 * function walks the same state machine in C. It only finds where elements end; it
 * never builds objects and never copies: the proxy still forwards the bytes as Redis
 * sent them (docs/architecture.md, "Invariants"). `replies.py` falls back to the Python loop when
 * this extension is not built.
 *
 * scan(buf, pos, pending, end) -> (pos, pending)
 *   `pending` elements are still to be read from `pos`; returns at the first
 *   incomplete element (its start) or when pending reaches 0. Raises ValueError on
 *   bytes that are not RESP.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <string.h>

/* Parse "[-]digits" in [s, e); 0 on success. Bounded so arithmetic cannot overflow. */
static int parse_len(const char *s, const char *e, long long *out)
{
    int neg = 0;
    long long v = 0;
    if (s < e && *s == '-') {
        neg = 1;
        s++;
    }
    if (s >= e)
        return -1;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > (1LL << 50))
            return -1;
    }
    *out = neg ? -v : v;
    return 0;
}

/* Index of the "\r\n" at or after pos, or -1. */
static Py_ssize_t find_crlf(const char *b, Py_ssize_t pos, Py_ssize_t end)
{
    while (pos < end) {
        const char *cr = memchr(b + pos, '\r', (size_t)(end - pos));
        if (cr == NULL)
            return -1;
        Py_ssize_t i = cr - b;
        if (i + 1 >= end)
            return -1;
        if (b[i + 1] == '\n')
            return i;
        pos = i + 1;
    }
    return -1;
}

/* The scan's state machine over b[pos:end]: 0, or -1 (bad length) / -2 (bad type byte,
 * in *bad) with an error to raise. *pos and *pending move as elements complete. */
static int scan_elements(const char *b, Py_ssize_t *pos_io, Py_ssize_t *pending_io,
                         Py_ssize_t end, int *bad)
{
    Py_ssize_t pos = *pos_io, pending = *pending_io;
    int rc = 0;
    while (pending > 0) {
        if (pos >= end)
            break;
        char t = b[pos];
        Py_ssize_t nl = find_crlf(b, pos, end);
        if (nl < 0)
            break;
        long long n = 0;
        switch (t) {
        case '+': case '-': case ':': case '_': case ',': case '#': case '(':
            pos = nl + 2;
            pending -= 1;
            break;
        case '$': case '=': case '!': {
            if (parse_len(b + pos + 1, b + nl, &n) != 0) {
                rc = -1;
                goto out;
            }
            Py_ssize_t next = n < 0 ? nl + 2 : nl + 4 + (Py_ssize_t)n;
            if (next > end)
                goto out;
            pos = next;
            pending -= 1;
            break;
        }
        case '*': case '~': case '>':
            if (parse_len(b + pos + 1, b + nl, &n) != 0) {
                rc = -1;
                goto out;
            }
            pos = nl + 2;
            pending += n > 0 ? (Py_ssize_t)n - 1 : -1;
            break;
        case '%':
            if (parse_len(b + pos + 1, b + nl, &n) != 0) {
                rc = -1;
                goto out;
            }
            pos = nl + 2;
            pending += n > 0 ? 2 * (Py_ssize_t)n - 1 : -1;
            break;
        case '|':
            /* An attribute comes before the value it describes: 2n more elements. */
            if (parse_len(b + pos + 1, b + nl, &n) != 0 || n < 0) {
                rc = -1;
                goto out;
            }
            pos = nl + 2;
            pending += 2 * (Py_ssize_t)n;
            break;
        default:
            *bad = (unsigned char)t;
            rc = -2;
            goto out;
        }
    }
out:
    *pos_io = pos;
    *pending_io = pending < 0 ? 0 : pending;
    return rc;
}

static PyObject *scan_error(int rc, int bad)
{
    if (rc == -2)
        return PyErr_Format(PyExc_ValueError, "unexpected reply type byte %d", bad);
    PyErr_SetString(PyExc_ValueError, "invalid length in reply");
    return NULL;
}

static PyObject *speedups_scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, pending, end;
    int bad = 0;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &pos, &pending, &end))
        return NULL;
    if (end > view.len)
        end = view.len;
    int rc = scan_elements((const char *)view.buf, &pos, &pending, end, &bad);
    PyBuffer_Release(&view);
    if (rc != 0)
        return scan_error(rc, bad);
    return Py_BuildValue("nn", pos, pending);
}

/*
 * cut(buf) -> (replies, start, pos, pending): every complete reply of `buf` (bytes, as
 * Redis sent them), then where the incomplete one after them starts, how far the scan
 * got into it and how many elements it still waits for (pending 0: none is left).
 * The splitter's loop over a read of replies in one call, by the scan's state machine.
 */
static PyObject *speedups_cut(PyObject *self, PyObject *args)
{
    PyObject *data;
    if (!PyArg_ParseTuple(args, "S", &data))
        return NULL;
    const char *b = PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data), start = 0, pos = 0, pending = 0;
    int bad = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (start < end) {
        pos = start;
        pending = 1;
        int rc = scan_elements(b, &pos, &pending, end, &bad);
        if (rc != 0) {
            Py_DECREF(out);
            return scan_error(rc, bad);
        }
        if (pending)
            break;
        PyObject *reply = (start == 0 && pos == end)
                              ? (Py_INCREF(data), data)
                              : PyBytes_FromStringAndSize(b + start, pos - start);
        if (reply == NULL || PyList_Append(out, reply) != 0) {
            Py_XDECREF(reply);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(reply);
        start = pos;
        pending = 0;
    }
    return Py_BuildValue("Nnnn", out, start, pos, pending);
}

/*
 * framed(buf) -> int: 0 when `buf` is complete multibulk requests exactly as Redis reads
 * them: `*N` lines, each followed by N `$len` bulk strings (the 2 bytes after a value
 * skipped unchecked, as Redis does). Else the offending type byte, plus 256 when it is
 * an element (not a request's first byte), -1 for a bad length, -2 when the bytes end
 * inside a request (fine for a read that ends mid-command, not for a complete one).
 * hiredis reads more of RESP than that (RESP3 sets, `+x` elements), and bytes
 * forwarded as is must mean to the node what they meant to the proxy.
 */
static PyObject *speedups_framed(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    const char *b = (const char *)view.buf;
    Py_ssize_t end = view.len, pos = 0;
    long result = 0;
    while (pos < end && result == 0) {
        long long n = 0, size = 0;
        if (b[pos] != '*') {
            result = (unsigned char)b[pos];
            break;
        }
        Py_ssize_t nl = find_crlf(b, pos, end);
        if (nl < 0) {
            result = -2;
            break;
        }
        if (parse_len(b + pos + 1, b + nl, &n) != 0) {
            result = -1;
            break;
        }
        pos = nl + 2;
        for (long long i = 0; i < n; i++) {
            if (pos >= end) {
                result = -2;
                break;
            }
            if (b[pos] != '$') {
                result = 256 + (unsigned char)b[pos];
                break;
            }
            nl = find_crlf(b, pos, end);
            if (nl < 0) {
                result = -2;
                break;
            }
            if (parse_len(b + pos + 1, b + nl, &size) != 0 || size < 0) {
                result = -1;
                break;
            }
            pos = nl + 4 + (Py_ssize_t)size;
        }
    }
    if (result == 0 && pos > end)
        result = -2;
    PyBuffer_Release(&view);
    return PyLong_FromLong(result);
}

/*
 * split(buf, max_count, max_bulk) -> list[list[bytes]] | None: the commands of `buf`
 * when it is nothing but complete multibulk requests in their plainest form: `*N` with
 * 1 <= N <= max_count, then N `$len` bulk strings of len <= max_bulk, every count and
 * length plain digits (no sign, no leading zero) and every line and value ended by CRLF.
 * Anything else, however legal, gives None: the caller then reads `buf` the long way
 * (hiredis, then Redis' own rules), which knows every other case. So this needs to be
 * right only about what it accepts, and what it accepts the long way reads the same.
 *
 * A read from a client that sent one command or a pipeline is almost always of this
 * form; one C call replaces hiredis' feed, a Python loop over `gets` and `framed`.
 * Two passes: the first checks, the second builds, so nothing is allocated for a
 * count the bytes do not hold.
 */

/* Plain digits in [s, e), at most 18 of them, no leading zero (but "0"); -1 if not. */
static long long plain_len(const char *s, const char *e)
{
    Py_ssize_t n = e - s;
    if (n < 1 || n > 18 || (n > 1 && *s == '0'))
        return -1;
    long long v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* The line at pos after its type byte `t`: its value, *pos moved past its CRLF; -1 if
 * it is not `t`, plain digits and CRLF. */
static long long plain_line(const char *b, Py_ssize_t *pos, Py_ssize_t end, char t)
{
    Py_ssize_t p = *pos;
    if (p >= end || b[p] != t)
        return -1;
    const char *s = b + p + 1, *e = s;
    const char *stop = b + end;
    while (e < stop && *e >= '0' && *e <= '9')
        e++;
    if (e + 1 >= stop || e[0] != '\r' || e[1] != '\n')
        return -1;
    *pos = (e + 2) - b;
    return plain_len(s, e);
}

/* Commands in buf[0:end] when it is all plain requests, else -1. */
static Py_ssize_t plain_requests(const char *b, Py_ssize_t end, long long max_count,
                                 long long max_bulk)
{
    Py_ssize_t pos = 0, commands = 0;
    while (pos < end) {
        long long n = plain_line(b, &pos, end, '*');
        if (n < 1 || n > max_count)
            return -1;
        for (long long i = 0; i < n; i++) {
            long long size = plain_line(b, &pos, end, '$');
            if (size < 0 || size > max_bulk || size + 2 > end - pos)
                return -1;
            pos += (Py_ssize_t)size;
            if (b[pos] != '\r' || b[pos + 1] != '\n')
                return -1;
            pos += 2;
        }
        commands++;
    }
    return commands;
}

static PyObject *speedups_split(PyObject *self, PyObject *args)
{
    Py_buffer view;
    long long max_count, max_bulk;
    if (!PyArg_ParseTuple(args, "y*LL", &view, &max_count, &max_bulk))
        return NULL;
    const char *b = (const char *)view.buf;
    Py_ssize_t end = view.len, pos = 0;
    Py_ssize_t commands = plain_requests(b, end, max_count, max_bulk);
    if (commands <= 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyObject *out = PyList_New(commands);
    for (Py_ssize_t c = 0; out != NULL && c < commands; c++) {
        long long n = plain_line(b, &pos, end, '*');
        PyObject *cmd = PyList_New((Py_ssize_t)n);
        if (cmd == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, c, cmd);
        for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
            Py_ssize_t size = (Py_ssize_t)plain_line(b, &pos, end, '$');
            PyObject *arg = PyBytes_FromStringAndSize(b + pos, size);
            if (arg == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(cmd, i, arg);
            pos += size + 2;
        }
    }
    PyBuffer_Release(&view);
    return out;
}

/*
 * errors(replies, start, stop) -> int: how many of replies[start:stop] are error
 * replies (their first byte is '-'). A slot takes a run of replies at once only when
 * none is: an error has paths of its own (retries, reroutes).
 */
static PyObject *speedups_errors(PyObject *self, PyObject *args)
{
    PyObject *list;
    Py_ssize_t start, stop, count = 0;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &list, &start, &stop))
        return NULL;
    if (stop > PyList_GET_SIZE(list))
        stop = PyList_GET_SIZE(list);
    for (Py_ssize_t i = start < 0 ? 0 : start; i < stop; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "replies must be bytes");
            return NULL;
        }
        if (PyBytes_GET_SIZE(item) > 0 && PyBytes_AS_STRING(item)[0] == '-')
            count++;
    }
    return PyLong_FromSsize_t(count);
}

/*
 * same_first(cmds) -> bool: every command of the batch has the first argument (the
 * command name) of the first, byte for byte. Then one table lookup stands for all.
 */
static PyObject *speedups_same_first(PyObject *self, PyObject *args)
{
    PyObject *cmds;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &cmds))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(cmds);
    if (n == 0)
        Py_RETURN_TRUE;
    PyObject *head = PyList_GET_ITEM(cmds, 0);
    if (!PyList_Check(head) || PyList_GET_SIZE(head) == 0 ||
        !PyBytes_Check(PyList_GET_ITEM(head, 0)))
        Py_RETURN_FALSE;
    PyObject *name = PyList_GET_ITEM(head, 0);
    Py_ssize_t len = PyBytes_GET_SIZE(name);
    const char *text = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *cmd = PyList_GET_ITEM(cmds, i);
        if (!PyList_Check(cmd) || PyList_GET_SIZE(cmd) == 0)
            Py_RETURN_FALSE;
        PyObject *other = PyList_GET_ITEM(cmd, 0);
        if (other == name)
            continue;
        if (!PyBytes_Check(other) || PyBytes_GET_SIZE(other) != len ||
            memcmp(PyBytes_AS_STRING(other), text, (size_t)len) != 0)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/*
 * Whether `key` (bytes) starts with one of `prefixes` (a tuple of bytes): -1 with an
 * exception set when either is not bytes.
 */
static int starts_with_any(PyObject *key, PyObject *prefixes)
{
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "keys_match: keys must be bytes");
        return -1;
    }
    Py_ssize_t klen = PyBytes_GET_SIZE(key);
    const char *k = PyBytes_AS_STRING(key);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(prefixes); j++) {
        PyObject *p = PyTuple_GET_ITEM(prefixes, j);
        if (!PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "keys_match: prefixes must be bytes");
            return -1;
        }
        Py_ssize_t plen = PyBytes_GET_SIZE(p);
        if (plen <= klen && memcmp(k, PyBytes_AS_STRING(p), (size_t)plen) == 0)
            return 1;
    }
    return 0;
}

/*
 * keys_match(cmds, pos, match) -> bool: every command has an argument at `pos` and
 * `match` says yes to it: a user's key rule over a pipeline of one command, the loop in
 * C. `match` is a callable (called per key), or a tuple of bytes prefixes, tested here
 * with no call at all (the common rule shape: `~key:*`, `~app:*`).
 */
static PyObject *speedups_keys_match(PyObject *self, PyObject *args)
{
    PyObject *cmds, *match;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "O!nO", &PyList_Type, &cmds, &pos, &match))
        return NULL;
    int prefixes = PyTuple_CheckExact(match);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cmds); i++) {
        PyObject *cmd = PyList_GET_ITEM(cmds, i);
        if (!PyList_Check(cmd) || pos < 0 || PyList_GET_SIZE(cmd) <= pos)
            Py_RETURN_FALSE;
        PyObject *key = PyList_GET_ITEM(cmd, pos);
        int yes;
        if (prefixes) {
            yes = starts_with_any(key, match);
        } else {
            PyObject *got = PyObject_CallOneArg(match, key);
            if (got == NULL)
                return NULL;
            yes = PyObject_IsTrue(got);
            Py_DECREF(got);
        }
        if (yes < 0)
            return NULL;
        if (!yes)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/*
 * Redis Cluster's key hash: CRC16/XMODEM (polynomial 0x1021, initial 0: Python's
 * binascii.crc_hqx(data, 0)) of the key's hash tag, or of the whole key, mod 16384.
 */
static unsigned short crc16_table[256];

static void crc16_init(void)
{
    for (int i = 0; i < 256; i++) {
        unsigned short crc = (unsigned short)(i << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (unsigned short)((crc << 1) ^ 0x1021) : (unsigned short)(crc << 1);
        crc16_table[i] = crc;
    }
}

static unsigned int key_hash_slot(const char *key, Py_ssize_t len)
{
    /* The tag: between the first '{' and the first '}' after it, when not empty. */
    const char *open = memchr(key, '{', (size_t)len);
    if (open != NULL) {
        const char *from = open + 1;
        const char *close = memchr(from, '}', (size_t)(key + len - from));
        if (close != NULL && close > from) {
            key = from;
            len = close - from;
        }
    }
    unsigned short crc = 0;
    for (Py_ssize_t i = 0; i < len; i++)
        crc = (unsigned short)((crc << 8) ^ crc16_table[((crc >> 8) ^ (unsigned char)key[i]) & 0xff]);
    return crc & 16383;
}

/*
 * key_slots(cmds, pos) -> [slot, ...] or None: the cluster slot of every command's
 * argument at `pos` (a pipeline of one single-key command: its slots in one call);
 * None when a command has no argument there, or it is not bytes.
 */
static PyObject *speedups_key_slots(PyObject *self, PyObject *args)
{
    PyObject *cmds;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &cmds, &pos))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(cmds);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cmd = PyList_GET_ITEM(cmds, i);
        PyObject *key;
        if (!PyList_Check(cmd) || pos < 0 || PyList_GET_SIZE(cmd) <= pos ||
            !PyBytes_Check(key = PyList_GET_ITEM(cmd, pos))) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        PyObject *slot = PyLong_FromLong(
            (long)key_hash_slot(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)));
        if (slot == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, slot);
    }
    return out;
}

/* Decimal digits of n >= 0. */
static Py_ssize_t digits(Py_ssize_t n)
{
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static char *put_header(char *w, char kind, Py_ssize_t n)
{
    *w++ = kind;
    w += sprintf(w, "%zd", n);
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

/*
 * pack_at(cmds, idx) -> bytes: the commands cmds[i] for i in idx, in that order, each
 * as a RESP multibulk of bulk strings, in one bytes object: a cluster batch's run for
 * one node, packed in one call instead of one hiredis call per command.
 */
static PyObject *speedups_pack_at(PyObject *self, PyObject *args)
{
    PyObject *cmds, *idx;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &cmds, &PyList_Type, &idx))
        return NULL;
    Py_ssize_t total = 0, ncmds = PyList_GET_SIZE(cmds);
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(idx); k++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(idx, k));
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0 || i >= ncmds) {
            PyErr_SetString(PyExc_IndexError, "pack_at: index out of range");
            return NULL;
        }
        PyObject *cmd = PyList_GET_ITEM(cmds, i);
        if (!PyList_Check(cmd)) {
            PyErr_SetString(PyExc_TypeError, "pack_at: a command must be a list");
            return NULL;
        }
        Py_ssize_t argc = PyList_GET_SIZE(cmd);
        total += 3 + digits(argc);
        for (Py_ssize_t a = 0; a < argc; a++) {
            PyObject *arg = PyList_GET_ITEM(cmd, a);
            if (!PyBytes_Check(arg)) {
                PyErr_SetString(PyExc_TypeError, "pack_at: arguments must be bytes");
                return NULL;
            }
            Py_ssize_t len = PyBytes_GET_SIZE(arg);
            total += 5 + digits(len) + len;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(idx); k++) {
        PyObject *cmd = PyList_GET_ITEM(cmds, PyLong_AsSsize_t(PyList_GET_ITEM(idx, k)));
        Py_ssize_t argc = PyList_GET_SIZE(cmd);
        w = put_header(w, '*', argc);
        for (Py_ssize_t a = 0; a < argc; a++) {
            PyObject *arg = PyList_GET_ITEM(cmd, a);
            Py_ssize_t len = PyBytes_GET_SIZE(arg);
            w = put_header(w, '$', len);
            memcpy(w, PyBytes_AS_STRING(arg), (size_t)len);
            w += len;
            *w++ = '\r';
            *w++ = '\n';
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"scan", speedups_scan, METH_VARARGS, "scan(buf, pos, pending, end) -> (pos, pending)"},
    {"framed", speedups_framed, METH_VARARGS, "framed(buf) -> 0, or what breaks it"},
    {"same_first", speedups_same_first, METH_VARARGS,
     "same_first(cmds) -> every command has the first one's name"},
    {"keys_match", speedups_keys_match, METH_VARARGS,
     "keys_match(cmds, pos, match) -> every command's argument at pos matches"},
    {"key_slots", speedups_key_slots, METH_VARARGS,
     "key_slots(cmds, pos) -> every command's cluster slot of its argument at pos, or None"},
    {"pack_at", speedups_pack_at, METH_VARARGS,
     "pack_at(cmds, idx) -> the commands at idx as RESP multibulks, in one bytes"},
    {"errors", speedups_errors, METH_VARARGS,
     "errors(replies, start, stop) -> how many of replies[start:stop] are errors"},
    {"cut", speedups_cut, METH_VARARGS,
     "cut(buf) -> (replies, start of the incomplete one, its scan pos, its pending)"},
    {"split", speedups_split, METH_VARARGS,
     "split(buf, max_count, max_bulk) -> commands, or None when not plain requests"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "proxy.resp._speedups", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    crc16_init();
    return PyModule_Create(&module);
}
