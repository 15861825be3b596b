/* Records stored deflated (docs/archive.md, "Record compression"): each
 * record is raw deflate (RFC 1951) on its own, primed with a dictionary the
 * archive learnt from its own first records (table dict), so that what every
 * record repeats (the account, the peers' JIDs, the namespaces, the field
 * tags) costs a back-reference. message.zdict says how a record is stored:
 * NULL plain, 0 deflated without a dictionary, N deflated with dict N. A
 * record is stored deflated only when that is smaller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "archive.h"
#include "db_internal.h"

#define XA_ZLEVEL 6
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

void xa_z_rollback(xa_db *db)
{
    if (!db->z.learnt_in_tx) return;
    dict_free(&db->z.dict[db->z.cur]);
    db->z.cur = 0;
    db->z.learnt_in_tx = false;
}

void xa_z_commit(xa_db *db)
{
    db->z.learnt_in_tx = false;
}

int xa_z_pack(xa_db *db, const uint8_t *rec, size_t len, const uint8_t **out, size_t *out_len,
              int *zdict, char *err, size_t errlen)
{
    int rc = learn(db, rec, len, err, errlen);
    if (rc) return rc;
    *out = rec;
    *out_len = len;
    *zdict = -1;
    z_stream *z = &db->z.def;
    if (!db->z.def_ready) {
        if (deflateInit2(z, XA_ZLEVEL, Z_DEFLATED, -15, XA_ZMEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
            return zerr(err, errlen, "deflateInit2 failed");
        db->z.def_ready = true;
    } else if (deflateReset(z) != Z_OK) {
        return zerr(err, errlen, "deflateReset failed");
    }
    const xa_zdict *d = dict_get(db, db->z.cur);
    if (d && deflateSetDictionary(z, d->bytes, (uInt)d->len) != Z_OK)
        return zerr(err, errlen, "deflateSetDictionary failed");
    size_t bound = deflateBound(z, (uLong)len);
    db->z.out.len = 0;
    if (xpb_buf_reserve(&db->z.out, bound)) return zerr(err, errlen, "out of memory");
    z->next_in = (Bytef *)rec;
    z->avail_in = (uInt)len;
    z->next_out = (Bytef *)db->z.out.data;
    z->avail_out = (uInt)bound;
    if (deflate(z, Z_FINISH) != Z_STREAM_END) return 0; /* stored plain */
    size_t n = bound - z->avail_out;
    if (n >= len) return 0;
    *out = (const uint8_t *)db->z.out.data;
    *out_len = n;
    *zdict = d ? db->z.cur : 0;
    return 0;
}

int xa_z_unpack(xa_db *db, const uint8_t *in, size_t len, int zdict, xpb_buf *out)
{
    out->len = 0;
    if (zdict < 0) return xpb_buf_append(out, in, len) ? XA_ENOMEM : 0;
    const xa_zdict *d = NULL;
    if (zdict > 0 && !(d = dict_get(db, zdict))) return XA_ECORRUPT;
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
    for (;;) {
        if (xpb_buf_reserve(out, out->len + 4 * len + 256)) return XA_ENOMEM;
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
