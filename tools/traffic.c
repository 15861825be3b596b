/* Seeded generator of realistic XMPP client traffic (see traffic.h for the mix).
 * Stanzas are written straight into an xpb_buf with the codec's escaping, so
 * the generator does not depend on the mapper it is used to test. */
#include "traffic.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

struct xpb_traffic {
    uint64_t s[4];      /* xoshiro256** state */
    uint64_t clock;     /* seconds since 2024-01-01, grows with each stanza */
    uint64_t counter;   /* for roster versions and archive ids */
};

/* ---- PRNG: splitmix64 seeds xoshiro256** (Blackman & Vigna) ------------- */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next64(xpb_traffic *t)
{
    uint64_t *s = t->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t tmp = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= tmp;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n); n > 0. The modulo bias is irrelevant at these sizes. */
static size_t rnd(xpb_traffic *t, size_t n) { return (size_t)(next64(t) % n); }
static bool chance(xpb_traffic *t, unsigned permille) { return rnd(t, 1000) < permille; }
#define PICK(t, arr) ((arr)[rnd((t), sizeof(arr) / sizeof((arr)[0]))])

xpb_traffic *xpb_traffic_new(uint64_t seed)
{
    xpb_traffic *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) t->s[i] = splitmix64(&x);
    t->clock = 0;
    t->counter = 1000 + (seed % 1000);
    return t;
}

void xpb_traffic_free(xpb_traffic *t) { free(t); }

/* ---- Pools (all JIDs valid under RFC 7622) ------------------------------- */
static const char *const users[] = {
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "romeo", "juliet", "mercutio", "benvolio", "nurse", "tybalt", "paris", "friar.laurence",
    "j.doe", "support", "max_mustermann", "jürgen", "zoë", "françois", "søren", "ольга",
    "李雷", "hanako", "o.brien", "user+tag", "x123",
};
static const char *const domains[] = {
    "example.com", "example.net", "example.org", "im.example.com", "chat.example.de",
    "xmpp.example.jp", "café.example",
};
static const char *const resources[] = {
    "phone", "laptop", "desktop", "Conversations.x7Fq", "gajim.4UCV1PQR", "Dino.a1b2c3",
    "Monal-iOS.9f8e7d6c", "tablet", "work pc", "balcón", "web-1713", "Psi+ 1.5",
};
static const char *const rooms[] = {
    "coffee", "dev", "ops-alerts", "xsf", "jdev", "général", "book-club", "team",
};
static const char *const muc_domains[] = {
    "conference.example.com", "muc.example.net", "chat.example.org",
};
static const char *const nicks[] = {
    "Alice", "bob", "Carol 🌸", "dave_", "Erin", "frank", "Grace H.", "heidi", "Ívan", "judy",
};

static const char *const words[] = {
    "the", "a", "to", "and", "I", "you", "it", "is", "that", "of", "in", "we", "for", "on",
    "this", "ok", "yes", "no", "lol", "thanks", "hi", "hey", "sure", "maybe", "later",
    "tomorrow", "today", "meeting", "call", "lunch", "coffee", "the", "build", "is", "broken",
    "again", "fixed", "deploy", "server", "client", "message", "please", "check", "can",
    "could", "would", "should", "will", "just", "now", "what", "why", "how", "when", "where",
    "who", "think", "know", "see", "look", "good", "great", "nice", "cool", "bad", "sorry",
    "about", "with", "from", "have", "has", "had", "do", "did", "done", "not", "be", "are",
    "was", "were", "going", "home", "work", "weekend", "tonight", "morning", "pull request",
    "review", "merged", "test", "tests", "failing", "green", "release", "version", "bug",
    "<3", ":)", ";)", "&", "\"quoted\"", "it's", "don't", "a<b", "x > y",
    "café", "naïve", "Grüße", "déjà", "vu", "señor", "smörgåsbord", "привет", "спасибо",
    "你好", "谢谢", "こんにちは", "ありがとう", "안녕하세요", "مرحبا", "שלום", "γειά",
    "👍", "😂", "🎉", "❤️", "🙂",
};

static const char *const statuses[] = {
    "Available", "In a meeting", "Working from home", "On vacation until Monday",
    "busy, ping me if urgent", "🏖️", "Zzz", "Back in 5", "Im Büro", "出張中",
};

/* ---- Emitting: a sticky error keeps the builders short -------------------- */
typedef struct emit {
    xpb_buf *b;
    int rc;
} emit;

static void raw(emit *e, const char *s)
{
    if (!e->rc) e->rc = xpb_buf_append_str(e->b, s);
}

static void text(emit *e, const char *s)
{
    if (!e->rc) e->rc = xpb_xml_escape_text(e->b, s, strlen(s));
}

/* " name='value'" */
static void attr(emit *e, const char *name, const char *value)
{
    raw(e, " ");
    raw(e, name);
    raw(e, "='");
    if (!e->rc) e->rc = xpb_xml_escape_attr(e->b, value, strlen(value));
    raw(e, "'");
}

/* <name xmlns='ns'>text</name>, ns may be NULL */
static void leaf(emit *e, const char *name, const char *ns, const char *content)
{
    raw(e, "<");
    raw(e, name);
    if (ns) attr(e, "xmlns", ns);
    raw(e, ">");
    text(e, content);
    raw(e, "</");
    raw(e, name);
    raw(e, ">");
}

/* ---- Values ------------------------------------------------------------- */
typedef struct name {
    char s[160];
} name;

static name bare_jid(xpb_traffic *t)
{
    name n;
    snprintf(n.s, sizeof(n.s), "%s@%s", PICK(t, users), PICK(t, domains));
    return n;
}

static name full_jid(xpb_traffic *t)
{
    name n;
    snprintf(n.s, sizeof(n.s), "%s@%s/%s", PICK(t, users), PICK(t, domains),
             PICK(t, resources));
    return n;
}

static name room_jid(xpb_traffic *t)
{
    name n;
    snprintf(n.s, sizeof(n.s), "%s@%s", PICK(t, rooms), PICK(t, muc_domains));
    return n;
}

static name with_resource(const name *bare, const char *res)
{
    name n;
    snprintf(n.s, sizeof(n.s), "%.100s/%.50s", bare->s, res);
    return n;
}

/* Client ids: mostly uuid v4 (Conversations, Dino, Gajim), some short base-36. */
static name make_id(xpb_traffic *t)
{
    name n;
    uint64_t a = next64(t), b = next64(t);
    if (chance(t, 750)) {
        snprintf(n.s, sizeof(n.s), "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
                 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
                 (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
                 (unsigned long long)(b & 0xffffffffffffull));
        return n;
    }
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    size_t len = 8 + rnd(t, 5);
    for (size_t i = 0; i < len; i++) n.s[i] = digits[(a >> (i * 5 % 60)) % 36];
    n.s[len] = '\0';
    return n;
}

/* XEP-0082 DateTime; the clock moves forward a little with every call. */
static name stamp(xpb_traffic *t)
{
    name n;
    t->clock += rnd(t, 120);
    uint64_t s = t->clock;
    unsigned day = (unsigned)(s / 86400) % 28, month = (unsigned)(s / (86400 * 28)) % 12;
    snprintf(n.s, sizeof(n.s), "2024-%02u-%02uT%02u:%02u:%02u%sZ", month + 1, day + 1,
             (unsigned)(s / 3600 % 24), (unsigned)(s / 60 % 60), (unsigned)(s % 60),
             chance(t, 300) ? ".123" : "");
    return n;
}

/* Words per body: 70 % 1-8, 25 % 9-30, 5 % 31-120. */
static size_t body_words(xpb_traffic *t)
{
    size_t r = rnd(t, 100);
    if (r < 70) return 1 + rnd(t, 8);
    if (r < 95) return 9 + rnd(t, 22);
    return 31 + rnd(t, 90);
}

static void body(emit *e, xpb_traffic *t)
{
    size_t n = body_words(t);
    raw(e, "<body>");
    for (size_t i = 0; i < n; i++) {
        if (i) raw(e, rnd(t, 20) == 0 ? ". " : " ");
        text(e, PICK(t, words));
    }
    if (chance(t, 300)) raw(e, chance(t, 500) ? "?" : "!");
    raw(e, "</body>");
}

/* ---- Stanza builders ---------------------------------------------------- */
static void open_stanza(emit *e, const char *el, const char *from, const char *to,
                        const char *type, const char *id)
{
    raw(e, "<");
    raw(e, el);
    attr(e, "xmlns", XPB_NS_CLIENT);
    if (from) attr(e, "from", from);
    if (to) attr(e, "to", to);
    if (type) attr(e, "type", type);
    if (id) attr(e, "id", id);
}

static void origin_id(emit *e, const char *id)
{
    raw(e, "<origin-id xmlns='urn:xmpp:sid:0'");
    attr(e, "id", id);
    raw(e, "/>");
}

static void stanza_id(emit *e, xpb_traffic *t, const char *by)
{
    name id = make_id(t);
    raw(e, "<stanza-id xmlns='urn:xmpp:sid:0'");
    attr(e, "by", by);
    attr(e, "id", id.s);
    raw(e, "/>");
}

static void delay(emit *e, xpb_traffic *t, const char *from, const char *reason)
{
    name st = stamp(t);
    raw(e, "<delay xmlns='urn:xmpp:delay'");
    if (from) attr(e, "from", from);
    attr(e, "stamp", st.s);
    if (!reason) {
        raw(e, "/>");
        return;
    }
    raw(e, ">");
    text(e, reason);
    raw(e, "</delay>");
}

/* The inner one-to-one chat message, also used inside carbons and MAM. */
static void chat_message(emit *e, xpb_traffic *t, const name *from, const name *to,
                         bool archived)
{
    name id = make_id(t);
    open_stanza(e, "message", from->s, to->s, "chat", id.s);
    raw(e, ">");
    body(e, t);
    if (chance(t, 150)) {
        name thread = make_id(t);
        leaf(e, "thread", NULL, thread.s);
    }
    raw(e, "<active xmlns='http://jabber.org/protocol/chatstates'/>");
    if (!archived) raw(e, "<request xmlns='urn:xmpp:receipts'/>");
    if (chance(t, 200)) raw(e, "<markable xmlns='urn:xmpp:chat-markers:0'/>");
    origin_id(e, id.s);
    raw(e, "</message>");
}

static void gen_chat(emit *e, xpb_traffic *t)
{
    name from = full_jid(t), to_bare = bare_jid(t);
    name to = chance(t, 500) ? with_resource(&to_bare, PICK(t, resources)) : to_bare;
    if (chance(t, 80)) { /* XEP-0280 §6-7: a carbon copy to one of our own resources */
        bool sent = chance(t, 500);
        name own = with_resource(&to_bare, PICK(t, resources));
        open_stanza(e, "message", to_bare.s, own.s, "chat", NULL);
        raw(e, sent ? "><sent" : "><received");
        raw(e, " xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>");
        chat_message(e, t, sent ? &to : &from, sent ? &from : &to, false);
        raw(e, sent ? "</forwarded></sent></message>" : "</forwarded></received></message>");
        return;
    }
    name id = make_id(t);
    open_stanza(e, "message", from.s, to.s, "chat", id.s);
    raw(e, ">");
    body(e, t);
    if (chance(t, 150)) {
        name thread = make_id(t);
        leaf(e, "thread", NULL, thread.s);
    }
    raw(e, "<active xmlns='http://jabber.org/protocol/chatstates'/>");
    raw(e, "<request xmlns='urn:xmpp:receipts'/>");
    if (chance(t, 80)) delay(e, t, strchr(to_bare.s, '@') + 1, "Offline Storage");
    if (chance(t, 600)) stanza_id(e, t, to_bare.s);
    origin_id(e, id.s);
    raw(e, "</message>");
}

static void gen_chatstate(emit *e, xpb_traffic *t)
{
    static const char *const states[] = {"composing", "composing", "paused", "inactive",
                                         "gone", "active"};
    name from = full_jid(t), to = full_jid(t), id = make_id(t);
    open_stanza(e, "message", from.s, to.s, "chat", id.s);
    raw(e, "><");
    raw(e, PICK(t, states));
    raw(e, " xmlns='http://jabber.org/protocol/chatstates'/>");
    if (chance(t, 300)) raw(e, "<no-store xmlns='urn:xmpp:hints'/>");
    raw(e, "</message>");
}

static void gen_receipt(emit *e, xpb_traffic *t)
{
    name from = full_jid(t), to = full_jid(t), id = make_id(t), acked = make_id(t);
    open_stanza(e, "message", from.s, to.s, chance(t, 700) ? "chat" : NULL, id.s);
    raw(e, "><received xmlns='urn:xmpp:receipts'");
    attr(e, "id", acked.s);
    raw(e, "/></message>");
}

static void gen_groupchat(emit *e, xpb_traffic *t)
{
    name room = room_jid(t), to = full_jid(t), id = make_id(t);
    name from = with_resource(&room, PICK(t, nicks));
    open_stanza(e, "message", from.s, to.s, "groupchat", id.s);
    raw(e, ">");
    if (chance(t, 30)) {
        leaf(e, "subject", NULL, PICK(t, statuses));
    } else {
        body(e, t);
        if (chance(t, 150)) delay(e, t, room.s, NULL); /* XEP-0045 §7.2.15 history */
        stanza_id(e, t, room.s);
        origin_id(e, id.s);
    }
    raw(e, "</message>");
}

/* XEP-0115 §5: ver is the base64 SHA-1 of the client's identities and
 * features, so every user of one client version sends the same string. A few
 * clients, two versions each (ver = base64(sha1("client/version")) here). */
static void caps(emit *e, xpb_traffic *t)
{
    static const struct {
        const char *node, *ver;
    } clients[] = {
        {"http://conversations.im", "ugc06zis/m9FHueNfv5bb7o61ZE="},
        {"http://conversations.im", "T3bJrf4YAgzOzZfHj9DH8f2oCz4="},
        {"https://gajim.org", "L0/gxWwNiKedurYFH/Dg8Vh4/IM="},
        {"https://gajim.org", "8eMrVpKJP7n2WxI2atXullI0XFA="},
        {"https://dino.im", "4L5dwVzoWbMWjI1Pi2AWtevpH4g="},
        {"https://dino.im", "kaqSLQW0a9XS1lv2gMQOrm9bGrk="},
        {"http://monal-im.org/", "1ntJU/TM4pQ5ZJWEIHnUGVh43/Q="},
        {"http://monal-im.org/", "9HeJVi6zVvegpoYp+sBDLBmDP3E="},
    };
    size_t i = rnd(t, sizeof clients / sizeof clients[0]);
    raw(e, "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1'");
    attr(e, "node", clients[i].node);
    attr(e, "ver", clients[i].ver);
    raw(e, "/>");
}

static void gen_presence(emit *e, xpb_traffic *t)
{
    static const char *const shows[] = {"away", "chat", "dnd", "xa"};
    name from = full_jid(t);
    if (chance(t, 150)) {
        open_stanza(e, "presence", from.s, NULL, "unavailable", NULL);
        raw(e, "/>");
        return;
    }
    bool to_someone = chance(t, 400);
    name to = full_jid(t);
    open_stanza(e, "presence", from.s, to_someone ? to.s : NULL, NULL, NULL);
    if (chance(t, 100)) attr(e, "xml:lang", "en");
    raw(e, ">");
    if (chance(t, 400)) leaf(e, "show", NULL, PICK(t, shows));
    if (chance(t, 350)) leaf(e, "status", NULL, PICK(t, statuses));
    if (chance(t, 600)) {
        char prio[16];
        snprintf(prio, sizeof(prio), "%d", (int)rnd(t, 60) - 10);
        leaf(e, "priority", NULL, prio);
    }
    caps(e, t);
    if (chance(t, 50)) delay(e, t, NULL, NULL);
    raw(e, "</presence>");
}

static void muc_item(emit *e, xpb_traffic *t, bool with_jid)
{
    static const char *const affs[] = {"none", "member", "member", "admin", "owner"};
    static const char *const roles[] = {"participant", "participant", "moderator", "visitor"};
    raw(e, "<item");
    attr(e, "affiliation", PICK(t, affs));
    if (with_jid) {
        name j = full_jid(t);
        attr(e, "jid", j.s);
    }
    attr(e, "role", PICK(t, roles));
    raw(e, "/>");
}

static void gen_muc_presence(emit *e, xpb_traffic *t)
{
    name room = room_jid(t), user = full_jid(t), id = make_id(t);
    name occupant = with_resource(&room, PICK(t, nicks));
    if (chance(t, 250)) { /* XEP-0045 §7.2.1 join */
        open_stanza(e, "presence", user.s, occupant.s, NULL, id.s);
        raw(e, "><x xmlns='http://jabber.org/protocol/muc'>");
        if (chance(t, 500)) raw(e, "<history maxstanzas='20'/>");
        raw(e, "</x>");
        caps(e, t);
        raw(e, "</presence>");
        return;
    }
    bool leaving = chance(t, 150);
    open_stanza(e, "presence", occupant.s, user.s, leaving ? "unavailable" : NULL, NULL);
    raw(e, "><x xmlns='http://jabber.org/protocol/muc#user'>");
    muc_item(e, t, chance(t, 500));
    if (chance(t, 200)) raw(e, "<status code='110'/>");
    if (chance(t, 100)) raw(e, "<status code='100'/>");
    raw(e, "</x>");
    if (!leaving && chance(t, 500)) caps(e, t);
    raw(e, "</presence>");
}

static void gen_roster_push(emit *e, xpb_traffic *t)
{
    static const char *const subs[] = {"none", "to", "from", "both", "both", "remove"};
    static const char *const groups[] = {"Friends", "Work", "Family", "Ärzte", "同僚"};
    name to = full_jid(t), id = make_id(t), contact = bare_jid(t);
    char ver[32];
    snprintf(ver, sizeof(ver), "ver%llu", (unsigned long long)++t->counter);
    open_stanza(e, "iq", NULL, to.s, "set", id.s);
    raw(e, "><query xmlns='jabber:iq:roster'");
    attr(e, "ver", ver);
    raw(e, "><item");
    attr(e, "jid", contact.s);
    const char *sub = PICK(t, subs);
    if (strcmp(sub, "remove") != 0 && chance(t, 700)) attr(e, "name", PICK(t, nicks));
    attr(e, "subscription", sub);
    if (strcmp(sub, "none") == 0 && chance(t, 500)) attr(e, "ask", "subscribe");
    raw(e, ">");
    if (strcmp(sub, "remove") != 0 && chance(t, 600)) leaf(e, "group", NULL, PICK(t, groups));
    raw(e, "</item></query></iq>");
}

static void gen_ping(emit *e, xpb_traffic *t)
{
    name user = full_jid(t), id = make_id(t);
    const char *server = strchr(user.s, '@') + 1;
    char domain[64];
    snprintf(domain, sizeof(domain), "%.*s", (int)strcspn(server, "/"), server);
    bool s2c = chance(t, 500);
    if (chance(t, 500)) {
        open_stanza(e, "iq", s2c ? domain : user.s, s2c ? user.s : domain, "get", id.s);
        raw(e, "><ping xmlns='urn:xmpp:ping'/></iq>");
    } else {
        open_stanza(e, "iq", s2c ? user.s : domain, s2c ? domain : user.s, "result", id.s);
        raw(e, "/>");
    }
}

/* XEP-0128 software information form inside a disco#info result. */
static void softwareinfo_form(emit *e)
{
    raw(e, "<x xmlns='jabber:x:data' type='result'>"
           "<field type='hidden' var='FORM_TYPE'><value>urn:xmpp:dataforms:softwareinfo</value>"
           "</field><field var='os'><value>Linux</value></field><field var='software'>"
           "<value>Gajim</value></field><field var='software_version'><value>1.8.4</value>"
           "</field></x>");
}

static void disco_info_result(emit *e, xpb_traffic *t)
{
    static const char *const features[] = {
        "http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:ping",
        "urn:xmpp:carbons:2", "urn:xmpp:mam:2", "urn:xmpp:sid:0", "jabber:iq:version",
    };
    raw(e, "<query xmlns='http://jabber.org/protocol/disco#info'>");
    raw(e, "<identity category='client' type='pc'");
    attr(e, "name", PICK(t, nicks));
    raw(e, "/>");
    size_t first = rnd(t, 4), n = 4 + rnd(t, 7);
    for (size_t i = first; i < first + n && i < sizeof(features) / sizeof(features[0]); i++) {
        raw(e, "<feature");
        attr(e, "var", features[i]);
        raw(e, "/>");
    }
    if (chance(t, 300)) softwareinfo_form(e);
    raw(e, "</query>");
}

static void gen_disco(emit *e, xpb_traffic *t)
{
    name a = full_jid(t), b = room_jid(t), id = make_id(t);
    size_t what = rnd(t, 4);
    bool result = what >= 2;
    open_stanza(e, "iq", result ? b.s : a.s, result ? a.s : b.s, result ? "result" : "get", id.s);
    if (what == 0) {
        raw(e, "><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    } else if (what == 1) {
        raw(e, "><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    } else if (what == 2) {
        raw(e, ">");
        disco_info_result(e, t);
        raw(e, "</iq>");
    } else {
        raw(e, "><query xmlns='http://jabber.org/protocol/disco#items'>");
        for (size_t i = 0, n = rnd(t, 6); i < n; i++) {
            name item = room_jid(t);
            raw(e, "<item");
            attr(e, "jid", item.s);
            if (chance(t, 500)) attr(e, "name", PICK(t, rooms));
            raw(e, "/>");
        }
        raw(e, "</query></iq>");
    }
}

static void gen_version(emit *e, xpb_traffic *t)
{
    static const char *const clients[][2] = {
        {"Conversations", "2.16.9"}, {"Gajim", "1.8.4"}, {"Dino", "0.4.4"}, {"Monal", "6.4.1"}};
    name a = full_jid(t), b = full_jid(t), id = make_id(t);
    if (chance(t, 500)) {
        open_stanza(e, "iq", a.s, b.s, "get", id.s);
        raw(e, "><query xmlns='jabber:iq:version'/></iq>");
        return;
    }
    size_t c = rnd(t, 4);
    open_stanza(e, "iq", b.s, a.s, "result", id.s);
    raw(e, "><query xmlns='jabber:iq:version'>");
    leaf(e, "name", NULL, clients[c][0]);
    leaf(e, "version", NULL, clients[c][1]);
    if (chance(t, 500)) leaf(e, "os", NULL, "Linux");
    raw(e, "</query></iq>");
}

static void gen_mam(emit *e, xpb_traffic *t)
{
    name owner_bare = bare_jid(t), peer = full_jid(t), id = make_id(t), qid = make_id(t);
    name owner = with_resource(&owner_bare, PICK(t, resources));
    char archive_id[32];
    snprintf(archive_id, sizeof(archive_id), "%llx-%llx", (unsigned long long)++t->counter,
             (unsigned long long)(next64(t) & 0xffffff));
    open_stanza(e, "message", NULL, owner.s, NULL, id.s);
    raw(e, "><result xmlns='urn:xmpp:mam:2'");
    attr(e, "id", archive_id);
    attr(e, "queryid", qid.s);
    raw(e, "><forwarded xmlns='urn:xmpp:forward:0'>");
    delay(e, t, NULL, NULL);
    bool outgoing = chance(t, 400);
    chat_message(e, t, outgoing ? &owner : &peer, outgoing ? &peer : &owner_bare, true);
    raw(e, "</forwarded></result></message>");
}

static void gen_error(emit *e, xpb_traffic *t)
{
    static const char *const conds[][2] = {
        {"cancel", "service-unavailable"}, {"cancel", "item-not-found"},
        {"cancel", "feature-not-implemented"}, {"wait", "recipient-unavailable"},
        {"auth", "forbidden"}, {"modify", "bad-request"}, {"wait", "resource-constraint"},
        {"cancel", "remote-server-not-found"}, {"auth", "not-authorized"},
    };
    name a = full_jid(t), b = full_jid(t), id = make_id(t);
    size_t c = rnd(t, sizeof(conds) / sizeof(conds[0]));
    bool iq = chance(t, 600);
    open_stanza(e, iq ? "iq" : "message", b.s, a.s, "error", id.s);
    raw(e, ">");
    if (iq && chance(t, 500)) raw(e, "<ping xmlns='urn:xmpp:ping'/>");
    raw(e, "<error");
    attr(e, "type", conds[c][0]);
    if (chance(t, 300)) {
        const char *domain = strchr(b.s, '@') + 1;
        name by;
        snprintf(by.s, sizeof(by.s), "%.*s", (int)strcspn(domain, "/"), domain);
        attr(e, "by", by.s);
    }
    raw(e, "><");
    raw(e, conds[c][1]);
    raw(e, " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    if (chance(t, 400)) {
        raw(e, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>");
        text(e, "The recipient is not available right now.");
        raw(e, "</text>");
    }
    raw(e, "</error></");
    raw(e, iq ? "iq" : "message");
    raw(e, ">");
}

/* ---- The mix -------------------------------------------------------------- */
typedef struct kind {
    const char *label;
    unsigned weight; /* per 1000 */
    void (*gen)(emit *e, xpb_traffic *t);
} kind;

static const kind mix[] = {
    {"chat", 300, gen_chat},
    {"chatstate", 120, gen_chatstate},
    {"receipt", 80, gen_receipt},
    {"groupchat", 150, gen_groupchat},
    {"presence", 100, gen_presence},
    {"muc-presence", 60, gen_muc_presence},
    {"roster-push", 20, gen_roster_push},
    {"ping", 50, gen_ping},
    {"disco", 40, gen_disco},
    {"version", 20, gen_version},
    {"mam", 40, gen_mam},
    {"error", 20, gen_error},
};
#define N_KINDS (sizeof(mix) / sizeof(mix[0]))

size_t xpb_traffic_kind_count(void) { return N_KINDS; }
const char *xpb_traffic_kind_label(size_t i) { return i < N_KINDS ? mix[i].label : NULL; }
unsigned xpb_traffic_kind_weight(size_t i) { return i < N_KINDS ? mix[i].weight : 0; }

const char *xpb_traffic_next(xpb_traffic *t, xpb_buf *out)
{
    size_t r = rnd(t, 1000), i = 0;
    while (i + 1 < N_KINDS && r >= mix[i].weight) r -= mix[i++].weight;
    size_t mark = out->len;
    emit e = {out, 0};
    mix[i].gen(&e, t);
    if (e.rc) {
        out->len = mark;
        return NULL;
    }
    return mix[i].label;
}
