/* xpb_strerror: one fixed sentence per error code. */
#include "xpb_error.h"

const char *xpb_strerror(int err)
{
    switch (err) {
    case XPB_OK: return "success";
    case XPB_ENOMEM: return "out of memory";
    case XPB_EINVAL: return "invalid argument";
    case XPB_ENOTIMPL: return "not implemented";
    case XPB_EXML: return "not well-formed XML";
    case XPB_EDTD: return "DOCTYPE/DTD is not allowed in XMPP (RFC 6120 section 11.1)";
    case XPB_ECOMMENT: return "XML comments are not allowed in XMPP (RFC 6120 section 11.1)";
    case XPB_EPI:
        return "XML processing instructions are not allowed in XMPP (RFC 6120 section 11.1)";
    case XPB_EENTITY:
        return "entity references other than the five predefined are not allowed (RFC 6120 "
               "section 11.1)";
    case XPB_ENESTEDSTREAM: return "<stream:stream> inside a stream";
    case XPB_EUTF8: return "invalid UTF-8";
    case XPB_EPREFIX: return "unbound namespace prefix";
    case XPB_EDUPATTR: return "duplicate attribute";
    case XPB_ESTANZASIZE: return "stanza exceeds the maximum stanza size";
    case XPB_EDEPTH: return "element nesting exceeds the maximum depth";
    case XPB_EATTRS: return "element has more attributes than allowed";
    case XPB_ETEXT: return "non-whitespace text between stanzas";
    case XPB_ENOTSTREAM: return "stream root is not <stream:stream>";
    case XPB_ECLOSED: return "stream already closed or failed";
    case XPB_ECALLBACK: return "stopped by callback";
    case XPB_EPBDECODE: return "protobuf bytes do not decode";
    case XPB_EPBDEPTH: return "record nesting exceeds the depth limit";
    case XPB_ERECORD: return "invalid record";
    case XPB_ESTRLEN: return "string exceeds its length limit";
    case XPB_EXMLCHAR: return "character not allowed in XML 1.0";
    case XPB_EJID: return "invalid JID";
    case XPB_ETOOBIG: return "output exceeds the maximum stanza size";
    case XPB_EJIDEMPTY: return "JID or JID part is empty";
    case XPB_EJIDLEN: return "JID part exceeds 1023 bytes (RFC 7622 section 3)";
    case XPB_EJIDCHAR: return "JID part contains a forbidden character";
    case XPB_EJIDDOMAIN: return "JID domainpart is not a valid domain name (RFC 7622 section 3.2)";
    case XPB_EJIDLOCAL: return "JID localpart fails the PRECIS UsernameCaseMapped profile";
    case XPB_EJIDRESOURCE: return "JID resourcepart fails the PRECIS OpaqueString profile";
    case XPB_ESASLNOMECH: return "no acceptable SASL mechanism offered";
    case XPB_ESASLPROTO: return "malformed or unexpected SASL message from the server";
    case XPB_ESASLNONCE:
        return "SCRAM server nonce does not start with the client nonce (RFC 5802 section 5.1)";
    case XPB_ESASLITER: return "SCRAM iteration count outside the accepted range";
    case XPB_ESASLSERVERSIG: return "SCRAM server signature does not verify";
    case XPB_ESASLSERVERERR: return "server reported a SCRAM authentication error";
    case XPB_ESASLSTATE: return "SASL call out of order or after a failure";
    case XPB_ESASLBASE64: return "invalid base64 (RFC 6120 section 6.4.2)";
    case XPB_ESASLCRED: return "SASL credential contains a prohibited character";
    case XPB_ESASLCRYPTO: return "cryptographic library failure";
    case XPB_EQUEUEFULL: return "outbound queue is full (queue_max stanzas waiting)";
    case XPB_ENOTCONN: return "session is not connected";
    case XPB_ETLS: return "TLS handshake or certificate verification failed";
    case XPB_ENOTLS: return "server does not offer TLS and plaintext is not allowed";
    case XPB_EAUTH: return "authentication failed";
    case XPB_ESTREAM: return "stream error from the server";
    case XPB_ETIMEOUT: return "timed out";
    case XPB_EDNS: return "name resolution failed";
    case XPB_ECONNECT: return "TCP connect failed";
    case XPB_EWEBSOCKET: return "WebSocket handshake or framing error";
    case XPB_ESTORE: return "the state database cannot be read or written";
    case XPB_ESTOREFULL: return "the state directory is full: nothing new can be kept";
    case XPB_ESTORERO: return "the state directory is read-only: nothing new can be kept";
    case XPB_ESTORELOCKED: return "the state directory is in use by another xpbridge (its lock is held)";
    case XPB_EREPLAYGONE: return "replay from a seq older than the journal keeps";
    default: return "unknown error";
    }
}
