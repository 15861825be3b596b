/* Output helpers shared by xpbctl's commands (output.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "output.h"
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"
#include "xpbctl.h"

int ctl_print_json(const ProtobufCMessage *m)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_json_write(&b, m);
    if (!rc) rc = xpb_buf_append(&b, "\n", 1);
    if (!rc) fwrite(b.data, 1, b.len, stdout);
    xpb_buf_free(&b);
    if (rc) fprintf(stderr, "%s: cannot format JSON: %s\n", xpbctl_prog, xpb_strerror(rc));
    return rc ? XPBCTL_EXIT_FAIL : 0;
}

void ctl_put_clean(const char *s, size_t max)
{
    if (!s) s = "-";
    size_t n = strlen(s), i = 0;
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        putchar(ch < 0x20 || ch == 0x7f ? ' ' : ch);
    }
    if (cut) fputs("…", stdout);
}

void ctl_put_col(const char *s, size_t width)
{
    size_t n = s ? strlen(s) : 1;
    ctl_put_clean(s, 256);
    for (putchar(' '); n < width; n++)
        putchar(' ');
}

const char *ctl_enum_short(const ProtobufCEnumDescriptor *d, int v, const char *prefix, char *out,
                           size_t outlen)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    const char *n = ev ? ev->name : "UNKNOWN";
    size_t pl = strlen(prefix), i = 0;
    if (strncmp(n, prefix, pl) == 0) n += pl;
    for (; n[i] && i + 1 < outlen; i++) {
        char ch = n[i];
        out[i] = ch == '_' ? '-' : (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    out[i] = '\0';
    return out;
}
