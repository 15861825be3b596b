/* libFuzzer target for the bus's request intake (bridge/bus/bus_internal.h):
 * arbitrary bytes -> depth check, unpack, envelope and stanza checks. Every
 * input must end as a request that obeys the envelope rules or as an error
 * code with a sentence; never a crash, a leak or a UBSan report. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "xpb_stanza.h"

#define TEXT_MAX 512

static void die(const char *what, const char *text)
{
    fprintf(stderr, "fuzz_bus_request: %s (%s)\n", what, text ? text : "");
    abort();
}

static int code_known(Xpb__V1__ErrorCode c)
{
    return c == XPB__V1__ERROR_CODE__ERR_BAD_REQUEST || c == XPB__V1__ERROR_CODE__ERR_API_VERSION ||
           c == XPB__V1__ERROR_CODE__ERR_INVALID_JID ||
           c == XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
}

static const Xpb__V1__Stanza *op_stanza(const Xpb__V1__Request *r)
{
    if (r->op_case == XPB__V1__REQUEST__OP_SEND) return r->send->stanza;
    if (r->op_case == XPB__V1__REQUEST__OP_IQ) return r->iq->stanza;
    return NULL;
}

/* What the handler relies on (xpb_bus_handler in xpb_bus.h). */
static void check_accepted(const Xpb__V1__Request *r, const char *id, int has_id)
{
    if (!r->has_api_version || r->api_version != XPB_BUS_API_VERSION) die("api_version", NULL);
    if (r->request_id == NULL || r->request_id[0] == '\0') die("no request_id", NULL);
    if (strlen(r->request_id) > XPB_BUS_MAX_REQUEST_ID) die("long request_id", r->request_id);
    if (!has_id || strcmp(id, r->request_id) != 0) die("id not handed out", id);
    if (r->op_case == XPB__V1__REQUEST__OP__NOT_SET) die("no op", NULL);
    /* list, status and replay are the bridge's, not an account's. */
    if (r->op_case != XPB__V1__REQUEST__OP_LIST && r->op_case != XPB__V1__REQUEST__OP_STATUS &&
        r->op_case != XPB__V1__REQUEST__OP_REPLAY && (r->account == NULL || r->account[0] == '\0'))
        die("no account", NULL);
    if (r->op_case == XPB__V1__REQUEST__OP_SEND || r->op_case == XPB__V1__REQUEST__OP_IQ) {
        const Xpb__V1__Stanza *st = op_stanza(r);
        char err[256] = "";
        xpb_record_limits lim = {0};
        if (st == NULL) die("no stanza", NULL);
        if (xpb_stanza_check(st, &lim, err, sizeof err) != 0) die("stanza check", err);
        if (r->op_case == XPB__V1__REQUEST__OP_IQ &&
            (st->kind != XPB__V1__KIND__KIND_IQ || (st->type != XPB__V1__STANZA_TYPE__TYPE_GET &&
                                                    st->type != XPB__V1__STANZA_TYPE__TYPE_SET)))
            die("iq op without an iq get or set", NULL);
    }
}

/* A request we accepted, packed again, is accepted again. */
static void check_repack(const Xpb__V1__Request *r)
{
    size_t n = xpb__v1__request__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) return;
    xpb__v1__request__pack(r, buf);
    Xpb__V1__Request *again = NULL;
    char id[XPB_BUS_MAX_REQUEST_ID + 1] = "", text[TEXT_MAX] = "";
    int has_id = 0;
    Xpb__V1__ErrorCode code;
    if (xpb_bus_decode_request(buf, n, SIZE_MAX, 0, &again, id, &has_id, &code, text,
                               sizeof text) != 0)
        die("repacked request refused", text);
    xpb__v1__request__free_unpacked(again, NULL);
    free(buf);
}

/* One byte over the limit: refused before anything is looked at. */
static void check_too_big(const uint8_t *data, size_t size)
{
    Xpb__V1__Request *r = NULL;
    char id[XPB_BUS_MAX_REQUEST_ID + 1], text[TEXT_MAX] = "";
    int has_id = 1;
    Xpb__V1__ErrorCode code;
    if (xpb_bus_decode_request(data, size, size - 1, 0, &r, id, &has_id, &code, text,
                               sizeof text) != -1 ||
        r != NULL || has_id != 0 || code != XPB__V1__ERROR_CODE__ERR_BAD_REQUEST ||
        strstr(text, "limit") == NULL)
        die("size limit not applied", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Xpb__V1__Request *r = (Xpb__V1__Request *)1; /* must be overwritten */
    char id[XPB_BUS_MAX_REQUEST_ID + 1];
    char text[TEXT_MAX];
    memset(id, 'Z', sizeof id);
    memset(text, 'Z', sizeof text);
    int has_id = -1;
    Xpb__V1__ErrorCode code = (Xpb__V1__ErrorCode)-1;
    if (size > 0) check_too_big(data, size);
    int rc = xpb_bus_decode_request(data, size, XPB_BUS_DEFAULT_MAX_REQUEST, 0, &r, id, &has_id,
                                    &code, text, sizeof text);
    if (getenv("FUZZ_BUS_TRACE") != NULL) /* to check what a seed reaches */
        fprintf(stderr, "rc %d code %d id '%s': %s\n", rc, (int)code, has_id ? id : "",
                rc == 0 ? "accepted" : text);
    if (has_id != 0 && has_id != 1) die("has_id not set", NULL);
    if (has_id && memchr(id, '\0', sizeof id) == NULL) die("id not terminated", NULL);
    if (rc == 0) {
        if (r == NULL) die("accepted without a request", NULL);
        check_accepted(r, id, has_id);
        check_repack(r);
        xpb__v1__request__free_unpacked(r, NULL);
        return 0;
    }
    if (rc != -1 && rc != -2) die("unexpected return code", NULL);
    if (r != NULL) die("refused but *out set", NULL);
    if (memchr(text, '\0', sizeof text) == NULL) die("text not terminated", NULL);
    if (text[0] == '\0') die("refused without a sentence", NULL);
    if (!code_known(code)) die("unexpected error code", text);
    return 0;
}
