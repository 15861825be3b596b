/* Records stored deflated (docs/archive.md, "Record compression"): the
 * records a transaction stores go into chunks of up to XA_CHUNK_BYTES, each
 * chunk one raw deflate stream (RFC 1951) primed with a dictionary the
 * archive learnt from its own first records (table dict), so that what every
 * record repeats (the account, the peers' JIDs, the namespaces, the field
 * tags) costs a back-reference, even in a chunk of one record (a live
 * message). message.rec names a record: chunk id << 15 | its offset in the
 * inflated chunk, where it starts with its length (a varint). chunk.zdict:
 * NULL plain, 0 deflated without a dictionary, N with dict N; a chunk is
 * stored deflated only when that is smaller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "archive.h"
#include "db_internal.h"

#define XA_ZLEVEL 1
#define XA_REC_SHIFT 15 /* offsets in a chunk: below XA_CHUNK_BYTES = 32 KiB */
#define XA_ZMEMLEVEL 8

static int zerr(char *err, size_t errlen, const char *what)
{
    if (err && errlen) snprintf(err, errlen, "record compression: %s (zlib)", what);
    return XA_ENOMEM;
}

/* Room for cap bytes in b (xpb_buf has no reserve of its own). */
static int xpb_buf_reserve(xpb_buf *b, size_t cap)
{
    if (b->cap >= cap) return 0;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void dict_free(xa_zdict *d)
{
    free(d->bytes);
    memset(d, 0, sizeof *d);
}

void xa_z_close(xa_db *db)
{
    if (db->z.def_ready) deflateEnd(&db->z.def);
    if (db->z.inf_ready) inflateEnd(&db->z.inf);
    for (size_t i = 0; i < XA_ZDICT_MAX; i++)
        dict_free(&db->z.dict[i]);
    xpb_buf_free(&db->z.sample);
    xpb_buf_free(&db->z.out);
    xpb_buf_free(&db->z.open);
    xpb_buf_free(&db->z.cache);
    xpb_buf_free(&db->z.whole);
    xpb_buf_free(&db->z.body);
    memset(&db->z, 0, sizeof db->z);
}

/* Dictionary id (1..XA_ZDICT_MAX-1), loaded from the table on first use. */
static const xa_zdict *dict_get(xa_db *db, int id)
{
    if (id <= 0 || id >= XA_ZDICT_MAX) return NULL;
    xa_zdict *d = &db->z.dict[id];
    if (d->bytes) return d;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, "SELECT bytes FROM dict WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return NULL;
    sqlite3_bind_int(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        int n = sqlite3_column_bytes(st, 0);
        const void *b = sqlite3_column_blob(st, 0);
        if (n > 0 && b && (d->bytes = malloc((size_t)n))) {
            memcpy(d->bytes, b, (size_t)n);
            d->len = (size_t)n;
        }
    }
    sqlite3_finalize(st);
    return d->bytes ? d : NULL;
}

/* The dictionary new records use: the newest in the table, else none yet. */
static int current_dict(xa_db *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, "SELECT max(id) FROM dict", -1, &st, NULL);
    int id = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        id = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "reading the record dictionary", err, errlen);
    db->z.cur = dict_get(db, id) ? id : 0;
    return 0;
}

int xa_z_open(xa_db *db, char *err, size_t errlen)
{
    xpb_buf_init(&db->z.sample, 0);
    xpb_buf_init(&db->z.out, 0);
    xpb_buf_init(&db->z.open, 0);
    xpb_buf_init(&db->z.cache, 0);
    xpb_buf_init(&db->z.whole, 0);
    xpb_buf_init(&db->z.body, 0);
    return current_dict(db, err, errlen);
}

/* Learns the dictionary once XA_ZDICT_BYTES of records were seen: written
 * inside the open transaction (a rollback forgets it: xa_z_rollback). */
static int learn(xa_db *db, const uint8_t *rec, size_t len, char *err, size_t errlen)
{
    if (db->z.cur || len > XA_ZDICT_BYTES) return 0;
    size_t room = XA_ZDICT_BYTES - db->z.sample.len;
    if (xpb_buf_append(&db->z.sample, rec, len < room ? len : room))
        return zerr(err, errlen, "out of memory");
    if (db->z.sample.len < XA_ZDICT_BYTES) return 0;
    /* Another writer may have learnt one since we opened: use it. */
    int rc = current_dict(db, err, errlen);
    if (rc || db->z.cur) return rc;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db->h, "INSERT INTO dict(id, bytes) VALUES (1, ?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, db->z.sample.data, (int)db->z.sample.len, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return xa_db_error(db, rc, "storing the record dictionary", err, errlen);
    xa_zdict *d = &db->z.dict[1];
    dict_free(d);
    if (!(d->bytes = malloc(db->z.sample.len))) return zerr(err, errlen, "out of memory");
    memcpy(d->bytes, db->z.sample.data, db->z.sample.len);
    d->len = db->z.sample.len;
    db->z.cur = 1;
    db->z.learnt_in_tx = true;
    db->z.sample.len = 0;
    return 0;
}

/* Deflates in[0..len) with dictionary d into db->z.out; false when that is
 * not smaller (stored plain). */
static int deflate_chunk(xa_db *db, const xa_zdict *d, const uint8_t *in, size_t len, bool *ok,
                         char *err, size_t errlen)
{
    *ok = false;
    z_stream *z = &db->z.def;
    if (!db->z.def_ready) {
        if (deflateInit2(z, XA_ZLEVEL, Z_DEFLATED, -15, XA_ZMEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
            return zerr(err, errlen, "deflateInit2 failed");
        db->z.def_ready = true;
    } else if (deflateReset(z) != Z_OK) {
        return zerr(err, errlen, "deflateReset failed");
    }
    if (d && deflateSetDictionary(z, d->bytes, (uInt)d->len) != Z_OK)
        return zerr(err, errlen, "deflateSetDictionary failed");
    size_t bound = deflateBound(z, (uLong)len);
    if (xpb_buf_reserve(&db->z.out, bound)) return zerr(err, errlen, "out of memory");
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    z->next_out = (Bytef *)db->z.out.data;
    z->avail_out = (uInt)bound;
    if (deflate(z, Z_FINISH) != Z_STREAM_END) return 0;
    db->z.out.len = bound - z->avail_out;
    *ok = db->z.out.len < len;
    return 0;
}

/* Writes the open chunk (inside the open transaction). */
int xa_z_flush(xa_db *db, char *err, size_t errlen)
{
    if (!db->z.open_id) return 0;
    const xa_zdict *d = dict_get(db, db->z.cur);
    bool ok = false;
    int rc =
        deflate_chunk(db, d, (const uint8_t *)db->z.open.data, db->z.open.len, &ok, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = xa_db_stmt(db, XA_ST_CHUNK_ADD, "INSERT INTO chunk(id, zdict, bytes) VALUES (?1,?2,?3)",
                    &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, db->z.open_id);
    if (ok) {
        sqlite3_bind_int(st, 2, d ? db->z.cur : 0);
        sqlite3_bind_blob(st, 3, db->z.out.data, (int)db->z.out.len, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(st, 3, db->z.open.data, (int)db->z.open.len, SQLITE_STATIC);
    }
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    if (s != SQLITE_DONE) return xa_db_error(db, s, "storing records", err, errlen);
    if (db->z.cache_id == db->z.open_id) db->z.cache_id = 0;
    db->z.open_id = 0;
    db->z.open.len = 0;
    return 0;
}

static int put_varint(xpb_buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return xpb_buf_append(b, t, n);
}

int xa_z_add(xa_db *db, const uint8_t *rec, size_t len, int64_t *ref, char *err, size_t errlen)
{
    int rc = learn(db, rec, len, err, errlen);
    if (!rc && db->z.open_id && db->z.open.len >= XA_CHUNK_BYTES) rc = xa_z_flush(db, err, errlen);
    if (rc) return rc;
    if (!db->z.open_id) {
        sqlite3_stmt *st;
        rc = xa_db_stmt(db, XA_ST_CHUNK_NEXT, "SELECT coalesce(max(id), 0) + 1 FROM chunk", &st,
                        err, errlen);
        if (rc) return rc;
        int s = sqlite3_step(st);
        db->z.open_id = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (s != SQLITE_ROW) return xa_db_error(db, s, "numbering a chunk", err, errlen);
        db->z.open.len = 0;
    }
    *ref = db->z.open_id << XA_REC_SHIFT | (int64_t)db->z.open.len;
    if (put_varint(&db->z.open, len) || xpb_buf_append(&db->z.open, rec, len))
        return zerr(err, errlen, "out of memory");
    return 0;
}

static int inflate_chunk(xa_db *db, const uint8_t *in, size_t len, const xa_zdict *d, xpb_buf *out)
{
    z_stream *z = &db->z.inf;
    if (!db->z.inf_ready) {
        if (inflateInit2(z, -15) != Z_OK) return XA_ENOMEM;
        db->z.inf_ready = true;
    } else if (inflateReset(z) != Z_OK) {
        return XA_ENOMEM;
    }
    if (d && inflateSetDictionary(z, d->bytes, (uInt)d->len) != Z_OK) return XA_ECORRUPT;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    out->len = 0;
    for (;;) {
        if (xpb_buf_reserve(out, out->len + 4 * len + 1024)) return XA_ENOMEM;
        z->next_out = (Bytef *)out->data + out->len;
        size_t room = out->cap - out->len;
        z->avail_out = (uInt)room;
        int r = inflate(z, Z_FINISH);
        out->len += room - z->avail_out;
        if (r == Z_STREAM_END) return 0;
        if (r != Z_BUF_ERROR && r != Z_OK) return XA_ECORRUPT;
        if (z->avail_in == 0 && z->avail_out != 0) return XA_ECORRUPT; /* cut short */
    }
}

/* The inflated chunk id: the open one, or read (and kept for the next). */
static const xpb_buf *chunk_get(xa_db *db, int64_t id)
{
    if (id == db->z.open_id) return &db->z.open;
    if (id == db->z.cache_id) return &db->z.cache;
    db->z.cache_id = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, "SELECT zdict, bytes FROM chunk WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    int rc = XA_ECORRUPT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1);
        if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
            db->z.cache.len = 0;
            rc = xpb_buf_append(&db->z.cache, b, n) ? XA_ENOMEM : 0;
        } else {
            int zd = sqlite3_column_int(st, 0);
            const xa_zdict *d = zd ? dict_get(db, zd) : NULL;
            if (!zd || d) rc = inflate_chunk(db, b, n, d, &db->z.cache);
        }
    }
    sqlite3_finalize(st);
    if (rc) return NULL;
    db->z.cache_id = id;
    return &db->z.cache;
}

int xa_z_record(xa_db *db, int64_t ref, const uint8_t **rec, size_t *len)
{
    const xpb_buf *c = chunk_get(db, ref >> XA_REC_SHIFT);
    size_t at = (size_t)(ref & ((1 << XA_REC_SHIFT) - 1));
    if (!c || at >= c->len) return XA_ECORRUPT;
    const uint8_t *p = (const uint8_t *)c->data + at, *end = (const uint8_t *)c->data + c->len;
    uint64_t n = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
        n |= (uint64_t)(*p & 0x7f) << shift;
        if (!(*p++ & 0x80)) {
            if (n > (uint64_t)(end - p)) return XA_ECORRUPT;
            *rec = p;
            *len = (size_t)n;
            return 0;
        }
    }
    return XA_ECORRUPT;
}

void xa_z_rollback(xa_db *db)
{
    db->z.cache_id = 0;
    db->z.open_id = 0;
    db->z.open.len = 0;
    if (!db->z.learnt_in_tx) return;
    dict_free(&db->z.dict[db->z.cur]);
    db->z.cur = 0;
    db->z.learnt_in_tx = false;
    db->z.sample.len = 0;
}

void xa_z_commit(xa_db *db)
{
    db->z.cache_id = 0; /* another writer may prune and number chunks anew */
    db->z.learnt_in_tx = false;
}

int xa_z_restore(xa_db *db, int strip, const char *id, const char *origin_id, const uint8_t **rec,
                 size_t *len)
{
    strip &= XA_STRIP_ID | XA_STRIP_ORIGIN_ID;
    if (!strip) return 0;
    if ((strip & XA_STRIP_ID && !id) || (strip & XA_STRIP_ORIGIN_ID && !origin_id))
        return XA_ECORRUPT;
    Xpb__V1__Stanza *st = xpb__v1__stanza__unpack(NULL, *len, *rec);
    if (!st) return XA_ECORRUPT;
    /* The columns' strings are lent to st for packing, and taken back. */
    char *saved_id = st->id, *saved_origin = st->origin_id;
    if (strip & XA_STRIP_ID) st->id = (char *)id;
    if (strip & XA_STRIP_ORIGIN_ID) st->origin_id = (char *)origin_id;
    db->z.whole.len = 0;
    int rc = xpb_stanza_pack(&db->z.whole, st);
    st->id = saved_id;
    st->origin_id = saved_origin;
    xpb__v1__stanza__free_unpacked(st, NULL);
    if (rc) return XA_ENOMEM;
    *rec = (const uint8_t *)db->z.whole.data;
    *len = db->z.whole.len;
    return 0;
}

/* ---- the body, read from the record's wire format ------------------------
 * Stanza.body (field 10) is a repeated Text whose `text` is field 2; the
 * first body with a text is the one extract.c archived. Reading the wire
 * bytes spares unpacking the whole record for it. */
#define XA_PB_STANZA_BODY 10
#define XA_PB_TEXT_TEXT 2

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

/* The next field of [*p, end): its number and, for a length-delimited one,
 * its bytes; false at the end or on bytes that are not protobuf. */
static bool pb_field(const uint8_t **p, const uint8_t *end, uint64_t *num, const uint8_t **val,
                     size_t *vlen)
{
    uint64_t tag, v;
    if (*p >= end || !pb_varint(p, end, &tag)) return false;
    *num = tag >> 3;
    *val = NULL;
    *vlen = 0;
    switch (tag & 7) {
    case 0:
        return pb_varint(p, end, &v);
    case 1:
        if (end - *p < 8) return false;
        *p += 8;
        return true;
    case 5:
        if (end - *p < 4) return false;
        *p += 4;
        return true;
    case 2:
        if (!pb_varint(p, end, &v) || v > (uint64_t)(end - *p)) return false;
        *val = *p;
        *vlen = (size_t)v;
        *p += v;
        return true;
    default:
        return false;
    }
}

int xa_z_body(xa_db *db, const uint8_t *rec, size_t len, const char **body)
{
    const uint8_t *p = rec, *end = rec + len, *val, *tp, *tval;
    uint64_t num, tnum;
    size_t vlen, tlen;
    *body = NULL;
    while (pb_field(&p, end, &num, &val, &vlen)) {
        if (num != XA_PB_STANZA_BODY || !val) continue;
        for (tp = val; pb_field(&tp, val + vlen, &tnum, &tval, &tlen);) {
            if (tnum != XA_PB_TEXT_TEXT || !tval) continue;
            db->z.body.len = 0;
            if (xpb_buf_append(&db->z.body, tval, tlen) || xpb_buf_append(&db->z.body, "", 1))
                return XA_ENOMEM;
            *body = db->z.body.data;
            return 0;
        }
    }
    return 0;
}

static void sql_body(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    xa_db *db = sqlite3_user_data(cx);
    const uint8_t *rec;
    const char *body = NULL;
    size_t len;
    if (argc != 1 || sqlite3_value_type(argv[0]) != SQLITE_INTEGER) return; /* NULL */
    if (xa_z_record(db, sqlite3_value_int64(argv[0]), &rec, &len)) {
        sqlite3_result_error(cx, "xpb_body: a record that cannot be read (damaged archive)", -1);
        return;
    }
    if (xa_z_body(db, rec, len, &body)) {
        sqlite3_result_error_nomem(cx);
        return;
    }
    if (body) sqlite3_result_text(cx, body, (int)db->z.body.len - 1, SQLITE_TRANSIENT);
}

int xa_z_register(xa_db *db, char *err, size_t errlen)
{
    int rc = sqlite3_create_function(db->h, "xpb_body", 1, SQLITE_UTF8, db, sql_body, NULL, NULL);
    return rc == SQLITE_OK ? 0 : xa_db_error(db, rc, "adding xpb_body()", err, errlen);
}
