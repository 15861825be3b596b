/* Error codes shared by every codec module, and xpb_strerror() to print them.
 * Functions return 0 or one of these negative codes; modules that can say more
 * (the reader, the record checker) also keep a detailed message. */
#ifndef XPB_ERROR_H
#define XPB_ERROR_H

enum xpb_error {
    XPB_OK = 0,
    XPB_ENOMEM = -1,        /* allocation failed */
    XPB_EINVAL = -2,        /* invalid argument */
    XPB_ENOTIMPL = -3,      /* not implemented */
    /* XML reader refusals (RFC 6120 §11) */
    XPB_EXML = -10,         /* not well-formed XML (expat's message follows) */
    XPB_EDTD = -11,         /* DOCTYPE / DTD refused (RFC 6120 §11.1) */
    XPB_ECOMMENT = -12,     /* comment refused (RFC 6120 §11.1) */
    XPB_EPI = -13,          /* processing instruction refused (RFC 6120 §11.1) */
    XPB_EENTITY = -14,      /* entity reference other than the five predefined */
    XPB_ENESTEDSTREAM = -15,/* <stream:stream> inside a stream */
    XPB_EUTF8 = -16,        /* invalid UTF-8 */
    XPB_EPREFIX = -17,      /* unbound namespace prefix */
    XPB_EDUPATTR = -18,     /* duplicate attribute */
    XPB_ESTANZASIZE = -19,  /* stanza exceeds max_stanza_bytes */
    XPB_EDEPTH = -20,       /* element nesting exceeds max_depth */
    XPB_EATTRS = -21,       /* element has more than max_attrs attributes */
    XPB_ETEXT = -22,        /* non-whitespace text between stanzas */
    XPB_ENOTSTREAM = -23,   /* stream mode, but the root is not <stream:stream> */
    XPB_ECLOSED = -24,      /* data fed after the stream was closed or failed */
    XPB_ECALLBACK = -25,    /* a callback asked to stop */
    /* Untrusted records and mapping */
    XPB_EPBDECODE = -40,    /* protobuf bytes do not unpack */
    XPB_EPBDEPTH = -41,     /* record nesting exceeds the depth limit */
    XPB_ERECORD = -42,      /* record violates a rule (message names the field) */
    XPB_ESTRLEN = -43,      /* a string exceeds its length limit */
    XPB_EXMLCHAR = -44,     /* a character not allowed in XML 1.0 */
    XPB_EJID = -45,         /* invalid JID */
    XPB_ETOOBIG = -46,      /* output would exceed max_stanza_bytes */
    /* JID (RFC 7622) */
    XPB_EJIDEMPTY = -60,    /* empty JID or empty part */
    XPB_EJIDLEN = -61,      /* a part exceeds 1023 bytes */
    XPB_EJIDCHAR = -62,     /* forbidden character in a part */
    XPB_EJIDDOMAIN = -63,   /* domain fails IDNA / is not a valid domain */
    XPB_EJIDLOCAL = -64,    /* localpart fails the PRECIS UsernameCaseMapped profile */
    XPB_EJIDRESOURCE = -65, /* resourcepart fails the PRECIS OpaqueString profile */
    /* SASL client (RFC 6120 §6, RFC 5802, RFC 7677, RFC 4616); bridge/xpb_sasl.h */
    XPB_ESASLNOMECH = -80,  /* no offered SASL mechanism is acceptable */
    XPB_ESASLPROTO = -81,   /* malformed or unexpected SASL message from the server */
    XPB_ESASLNONCE = -82,   /* SCRAM server nonce does not start with the client nonce */
    XPB_ESASLITER = -83,    /* SCRAM iteration count outside the accepted range */
    XPB_ESASLSERVERSIG = -84, /* SCRAM server signature does not verify */
    XPB_ESASLSERVERERR = -85, /* server reported a SCRAM error (e=...) */
    XPB_ESASLSTATE = -86,   /* SASL call out of order, or after a failure */
    XPB_ESASLBASE64 = -87,  /* invalid base64 (RFC 6120 §6.4.2) */
    XPB_ESASLCRED = -88,    /* username/authzid/password has a prohibited character */
    XPB_ESASLCRYPTO = -89,  /* OpenSSL failure (random bytes, PBKDF2, HMAC) */
    /* Sessions and transports (bridge/) */
    XPB_EQUEUEFULL = -100,  /* outbound queue holds queue_max stanzas */
    XPB_ENOTCONN = -101,    /* session is not connected / stopped */
    XPB_ETLS = -102,        /* TLS handshake or certificate verification failed */
    XPB_ENOTLS = -103,      /* server does not offer TLS and plaintext is not allowed */
    XPB_EAUTH = -104,       /* authentication failed (SASL <failure/>) */
    XPB_ESTREAM = -105,     /* stream error from the server */
    XPB_ETIMEOUT = -106,    /* timed out */
    XPB_EDNS = -107,        /* name resolution failed */
    XPB_ECONNECT = -108,    /* TCP connect failed */
    XPB_EWEBSOCKET = -109,  /* WebSocket handshake or framing error (RFC 6455/7395) */

    XPB_ESTORE = -120,      /* the state database cannot be read or written */
    XPB_ESTOREFULL = -121,  /* the state directory's disk (or the database's limit) is full */
    XPB_ESTORERO = -122,    /* the state directory or database is read-only */
    XPB_ESTORELOCKED = -124, /* another process holds the state directory's lock */
    XPB_EREPLAYGONE = -123, /* replay from a seq older than the journal keeps */
};

/* A fixed English sentence for any code above; never NULL. */
const char *xpb_strerror(int err);

#endif
