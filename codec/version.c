/* The versions of the parsers the codec runs on (expat, protobuf-c), as the
 * running libraries report them, for xpbridge --version and its start-up log. */
#include "xpb_xml.h"

#include <expat.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdio.h>

#include "expat_compat.h"

/* The reparse deferral switch: in the header we built with, found in the
 * running library only, or absent (an expat that never defers). */
static const char *deferral_switch(void)
{
#if XPB_HAVE_XML_SETREPARSEDEFERRALENABLED
    return "reparse deferral off (switch declared at build time)";
#else
    return xpb_expat_deferral_symbol() ? "reparse deferral off (switch found at run time)"
                                        : "no reparse deferral in this expat";
#endif
}

/* snprintf at *n, keeping *n the length the whole text would have. */
__attribute__((format(printf, 4, 5))) static void put(char *buf, size_t len, size_t *n,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + (*n < len ? *n : len), *n < len ? len - *n : 0, fmt, ap);
    va_end(ap);
    if (w > 0) *n += (size_t)w;
}

size_t xpb_codec_versions(char *buf, size_t len)
{
    size_t n = 0;
    if (len) buf[0] = '\0';
    put(buf, len, &n, "%s (", XML_ExpatVersion());
    for (const XML_Feature *f = XML_GetFeatureList(); f && f->feature != XML_FEATURE_END; f++) {
        if (f->value)
            put(buf, len, &n, "%s=%ld, ", f->name, f->value);
        else
            put(buf, len, &n, "%s, ", f->name);
    }
    put(buf, len, &n, "%s), protobuf-c %s", deferral_switch(), protobuf_c_version());
    return n;
}
