/* The well-known namespace dictionary: generic elements and attributes carry a
 * small integer instead of the URI for namespaces real XMPP traffic uses.
 * Ids are part of the xpb.v1 wire format: append only, never reorder. */
#include <stdint.h>
#include <string.h>

#include "xpb_stanza.h"

struct ns_entry {
    const char *uri;
    uint8_t len;
};

/* Indexed by id. The length index below is derived from this table (URIs
 * grouped by length, ties by id); test_stanza checks that every id maps back
 * to itself, so a stale index fails the build's tests. Documented in
 * docs/mapping.md. */
static const struct ns_entry ns_table[] = {
    {NULL, 0}, /* id 0: not in the dictionary */
    {"jabber:client", 13}, /* 1 */
    {"http://www.w3.org/XML/1998/namespace", 36}, /* 2 */
    {"http://etherx.jabber.org/streams", 32}, /* 3 */
    {"urn:ietf:params:xml:ns:xmpp-stanzas", 35}, /* 4 */
    {"http://jabber.org/protocol/chatstates", 37}, /* 5 */
    {"urn:xmpp:receipts", 17}, /* 6 */
    {"urn:xmpp:delay", 14}, /* 7 */
    {"urn:xmpp:sid:0", 14}, /* 8 */
    {"urn:xmpp:ping", 13}, /* 9 */
    {"http://jabber.org/protocol/muc", 30}, /* 10 */
    {"http://jabber.org/protocol/muc#user", 35}, /* 11 */
    {"http://jabber.org/protocol/muc#admin", 36}, /* 12 */
    {"http://jabber.org/protocol/muc#owner", 36}, /* 13 */
    {"urn:xmpp:carbons:2", 18}, /* 14 */
    {"urn:xmpp:forward:0", 18}, /* 15 */
    {"http://jabber.org/protocol/disco#info", 37}, /* 16 */
    {"http://jabber.org/protocol/disco#items", 38}, /* 17 */
    {"http://jabber.org/protocol/caps", 31}, /* 18 */
    {"urn:xmpp:mam:2", 14}, /* 19 */
    {"http://jabber.org/protocol/rsm", 30}, /* 20 */
    {"jabber:iq:roster", 16}, /* 21 */
    {"jabber:iq:version", 17}, /* 22 */
    {"jabber:iq:last", 14}, /* 23 */
    {"jabber:iq:private", 17}, /* 24 */
    {"jabber:iq:register", 18}, /* 25 */
    {"urn:xmpp:time", 13}, /* 26 */
    {"vcard-temp", 10}, /* 27 */
    {"vcard-temp:x:update", 19}, /* 28 */
    {"jabber:x:data", 13}, /* 29 */
    {"jabber:x:oob", 12}, /* 30 */
    {"jabber:x:conference", 19}, /* 31 */
    {"http://jabber.org/protocol/pubsub", 33}, /* 32 */
    {"http://jabber.org/protocol/pubsub#event", 39}, /* 33 */
    {"http://jabber.org/protocol/pubsub#owner", 39}, /* 34 */
    {"urn:xmpp:avatar:data", 20}, /* 35 */
    {"urn:xmpp:avatar:metadata", 24}, /* 36 */
    {"http://jabber.org/protocol/nick", 31}, /* 37 */
    {"urn:xmpp:hints", 14}, /* 38 */
    {"urn:xmpp:message-correct:0", 26}, /* 39 */
    {"urn:xmpp:chat-markers:0", 23}, /* 40 */
    {"urn:xmpp:reactions:0", 20}, /* 41 */
    {"urn:xmpp:reply:0", 16}, /* 42 */
    {"urn:xmpp:fallback:0", 19}, /* 43 */
    {"urn:xmpp:message-retract:1", 26}, /* 44 */
    {"urn:xmpp:eme:0", 14}, /* 45 */
    {"eu.siacs.conversations.axolotl", 30}, /* 46 */
    {"urn:xmpp:omemo:2", 16}, /* 47 */
    {"urn:xmpp:idle:1", 15}, /* 48 */
    {"http://jabber.org/protocol/address", 34}, /* 49 */
    {"http://jabber.org/protocol/commands", 35}, /* 50 */
    {"urn:xmpp:bookmarks:1", 20}, /* 51 */
    {"urn:xmpp:jingle-message:0", 25}, /* 52 */
    {"urn:xmpp:sm:3", 13}, /* 53 */
    {"urn:xmpp:csi:0", 14}, /* 54 */
    {"urn:ietf:params:xml:ns:xmpp-sasl", 32}, /* 55 */
    {"urn:ietf:params:xml:ns:xmpp-tls", 31}, /* 56 */
    {"urn:ietf:params:xml:ns:xmpp-bind", 32}, /* 57 */
    {"urn:ietf:params:xml:ns:xmpp-session", 35}, /* 58 */
    {"urn:xmpp:styling:0", 18}, /* 59 */
    {"jabber:x:delay", 14}, /* 60 */
    {"http://jabber.org/protocol/xhtml-im", 35}, /* 61 */
    {"http://www.w3.org/1999/xhtml", 28}, /* 62 */
    {"urn:xmpp:http:upload:0", 22}, /* 63 */
    {"urn:xmpp:jingle:1", 17}, /* 64 */
    {"urn:xmpp:jingle:apps:rtp:1", 26}, /* 65 */
    {"urn:xmpp:jingle:transports:ice-udp:1", 36}, /* 66 */
    {"urn:xmpp:jingle:apps:dtls:0", 27}, /* 67 */
    {"urn:xmpp:blocking", 17}, /* 68 */
    {"urn:xmpp:push:0", 15}, /* 69 */
    {"jabber:x:encrypted", 18}, /* 70 */
    {"jabber:x:signed", 15}, /* 71 */
    {"urn:ietf:params:xml:ns:xmpp-streams", 35}, /* 72 */
    {"urn:xmpp:mix:core:1", 19}, /* 73 */
    {"urn:xmpp:occupant-id:0", 22}, /* 74 */
};

/* Ids sorted by URI length; by_len_start[n] is the first position of length n. */
static const uint8_t by_len[] = {
    27, 30, 1, 9, 26, 29, 53, 7, 8, 19, 23, 38, 45, 54, 60, 48, 69, 71, 21, 42, 47, 6, 22, 24,
    64, 68, 14, 15, 25, 59, 70, 28, 31, 43, 73, 35, 41, 51, 63, 74, 40, 36, 52, 39, 44, 65, 67,
    62, 10, 20, 46, 18, 37, 56, 3, 55, 57, 32, 49, 4, 11, 50, 58, 61, 72, 2, 12, 13, 66, 5, 16,
    17, 33, 34,
};
#define NS_MAX_LEN 39
static const uint8_t by_len_start[NS_MAX_LEN + 2] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 7, 15, 18, 21, 26, 31, 35, 38, 38, 40, 41, 42, 43,
    46, 47, 48, 48, 51, 54, 57, 58, 59, 65, 69, 71, 72, 74,
};

#define NS_COUNT (sizeof ns_table / sizeof ns_table[0] - 1)

/* Runs for every generic element: one strlen, then a memcmp against the few
 * URIs of that length (at most six), rejecting on the last byte first since
 * URIs of one family share long prefixes. No locks, no mutable state. */
uint32_t xpb_ns_id(const char *uri)
{
    return uri == NULL ? 0 : xpb_ns_id_n(uri, strlen(uri));
}

uint32_t xpb_ns_id_n(const char *uri, size_t len)
{
    if (len == 0 || len > NS_MAX_LEN) return 0;
    for (unsigned i = by_len_start[len]; i < by_len_start[len + 1]; i++) {
        const struct ns_entry *e = &ns_table[by_len[i]];
        if (e->uri[len - 1] == uri[len - 1] && memcmp(e->uri, uri, len) == 0) return by_len[i];
    }
    return 0;
}

const char *xpb_ns_uri(uint32_t id)
{
    if (id == 0 || id > NS_COUNT) return NULL;
    return ns_table[id].uri;
}
