/* Turns off expat's reparse deferral wherever the running library has it.
 * Deferral (expat 2.6, and Debian's 2.5.0-1+deb12u2 and later) holds a large
 * token back until more input arrives; we deliver a stanza in the feed call
 * that carries its last byte, so it must be off (docs/architecture.md, "expat"). */
#ifndef XPB_CODEC_EXPAT_COMPAT_H
#define XPB_CODEC_EXPAT_COMPAT_H

#include <expat.h>

#if !XPB_HAVE_XML_SETREPARSEDEFERRALENABLED
#include <dlfcn.h>
#endif

#if !XPB_HAVE_XML_SETREPARSEDEFERRALENABLED
/* The switch in the running library, looked up by name, or NULL when this
 * expat has none. Our handle on the process's global symbols is closed at
 * once; the symbol belongs to the linked libexpat and stays valid. */
static inline void *xpb_expat_deferral_symbol(void)
{
    void *self = dlopen(NULL, RTLD_LAZY);
    void *sym = self ? dlsym(self, "XML_SetReparseDeferralEnabled") : NULL;
    if (self) dlclose(self);
    return sym;
}
#endif

/* Returns 1 when deferral is off or the library has none, 0 when the switch
 * failed. With a header that does not declare the switch, the running library
 * may still have it (libexpat1 upgraded under an older build, where deferral is
 * on by default), so it is looked up by name at run time. */
static inline int xpb_expat_disable_deferral(XML_Parser p)
{
#if XPB_HAVE_XML_SETREPARSEDEFERRALENABLED
    return XML_SetReparseDeferralEnabled(p, XML_FALSE) == XML_TRUE;
#else
    typedef XML_Bool (*set_fn)(XML_Parser, XML_Bool);
    union {
        void *obj;
        set_fn fn;
    } sym = {xpb_expat_deferral_symbol()};
    return !sym.obj || sym.fn(p, XML_FALSE) == XML_TRUE;
#endif
}

#endif
