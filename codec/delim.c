/* Length-delimited record streams: a varint length, then the record, as
 * protobuf's writeDelimitedTo/parseDelimitedFrom. */
#include "xpb_error.h"
#include "xpb_stanza.h"

int xpb_delim_write(xpb_buf *out, const uint8_t *data, size_t len)
{
    uint8_t hdr[10];
    size_t n = 0;
    uint64_t v = len;
    do {
        hdr[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) hdr[n] |= 0x80;
        n++;
    } while (v);
    int rc = xpb_buf_append(out, hdr, n);
    return rc ? rc : xpb_buf_append(out, data, len);
}

int xpb_delim_next(const uint8_t *buf, size_t len, size_t max_len, const uint8_t **frame,
                   size_t *frame_len, size_t *consumed)
{
    uint64_t v = 0;
    size_t i = 0;
    for (;; i++) {
        if (i >= len) return 1;
        if (i >= 10) return XPB_EPBDECODE;
        v |= (uint64_t)(buf[i] & 0x7f) << (7 * i);
        if (!(buf[i] & 0x80)) break;
    }
    i++;
    if (v > max_len) return XPB_ETOOBIG;
    if (len - i < v) return 1;
    *frame = buf + i;
    *frame_len = (size_t)v;
    *consumed = i + (size_t)v;
    return 0;
}
