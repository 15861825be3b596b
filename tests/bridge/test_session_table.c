/* Tests for bridge/session/session_table.c and session_apply(): every state
 * refuses an element out of place with one stream error naming the rule, the
 * action applier does what each action says, and the state diagram in
 * docs/architecture.md lists exactly the transitions the table declares.
 *   test_session_table --diagram   prints the diagram the table implies. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"

#define HEADER                                                                                     \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                  \
    "xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0'>"
#define FEATURES(x) "<stream:features>" x "</stream:features>"
#define F_STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define F_PLAIN                                                                                    \
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
#define F_BIND "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
#define PROCEED "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define SUCCESS "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
#define ENABLED "<enabled xmlns='urn:xmpp:sm:3'/>"
#define BIND_RESULT                                                                                \
    "<iq type='result' id='xpb-bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"            \
    "<jid>user@example.com/r</jid></bind></iq>"

/* ---- a fake loop ---------------------------------------------------------- */

static struct {
    xpb_buf out;
    int connects, starttls_calls, disconnects, errors, last_code;
    unsigned timers[XPB_TIMER_COUNT];
    char last_error[SESSION_WHY_MAX];
} F;

static int op_connect(void *io, const xpb_session_target *t)
{
    (void)io;
    (void)t;
    F.connects++;
    return 0;
}

static int op_send(void *io, const char *d, size_t n)
{
    (void)io;
    return xpb_buf_append(&F.out, d, n);
}

static int op_starttls(void *io)
{
    (void)io;
    F.starttls_calls++;
    return 0;
}

static void op_disconnect(void *io)
{
    (void)io;
    F.disconnects++;
}

static void op_set_timer(void *io, xpb_session_timer t, unsigned ms)
{
    (void)io;
    F.timers[t] = ms;
}

static void op_event(void *io, const xpb_session_event *e)
{
    (void)io;
    if (e->kind != XPB_SE_ERROR) return;
    F.errors++;
    F.last_code = e->code;
    snprintf(F.last_error, sizeof F.last_error, "%s", e->reason ? e->reason : "");
}

static uint32_t op_random(void *io)
{
    (void)io;
    return 7;
}

static const xpb_session_ops OPS = {.connect = op_connect, .send = op_send,
                                    .starttls = op_starttls, .disconnect = op_disconnect,
                                    .set_timer = op_set_timer, .event = op_event,
                                    .random = op_random};

static const char *sent(void)
{
    xpb_buf_append(&F.out, "", 1);
    F.out.len--;
    return F.out.data;
}

static void clear_sent(void) { F.out.len = 0; }

static void feed(xpb_session *s, const char *xml) { xpb_session_on_bytes(s, xml, strlen(xml)); }

#define assert_sent(sub)                                                                           \
    do {                                                                                           \
        if (strstr(sent(), (sub)) == NULL) fail_msg("expected '%s' in sent: %s", (sub), sent());  \
    } while (0)

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    xpb_buf_init(&F.out, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    xpb_buf_free(&F.out);
    return 0;
}

/* A session driven to `want` (sm: with XEP-0198 offered and enabled). */
static xpb_session *session_in(xpb_session_state want, int sm)
{
    xpb_session_config c;
    xpb_session_config_init(&c);
    c.jid = "user@example.com/r";
    c.password = (const unsigned char *)"pencil";
    c.password_len = 6;
    c.stream_management = sm;
    xpb_session *s = NULL;
    assert_int_equal(xpb_session_new(&s, &c, &OPS, NULL), 0);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, HEADER);
    if (want == XPB_SS_STREAM_OPEN) goto done;
    feed(s, FEATURES(F_STARTTLS F_PLAIN));
    if (want == XPB_SS_STARTTLS) goto done;
    feed(s, PROCEED);
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    feed(s, HEADER FEATURES(F_PLAIN));
    if (want == XPB_SS_AUTH) goto done;
    feed(s, SUCCESS);
    feed(s, HEADER FEATURES(F_BIND "<sm xmlns='urn:xmpp:sm:3'/>"));
    if (want == XPB_SS_BIND) goto done;
    feed(s, BIND_RESULT);
    if (sm) feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    if (want == XPB_SS_ONLINE) goto done;
    xpb_session_close(s);
done:
    assert_int_equal(xpb_session_get_state(s), want);
    clear_sent();
    F.errors = 0;
    return s;
}

/* ---- out of place --------------------------------------------------------- */

/* RFC 6120 §4.9: one stream error with the rule in its <text/>, a close, an
 * XPB_SE_ERROR naming the same rule, and a reconnect after the backoff. */
static void refused(xpb_session_state st, const char *xml, const char *rule)
{
    xpb_session *s = session_in(st, 0);
    int connects = F.connects;
    feed(s, xml);
    assert_sent("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                "<unsupported-stanza-type xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
    assert_sent(rule);
    assert_sent("</stream:stream>");
    assert_int_equal(F.errors, 1);
    assert_int_equal(F.last_code, XPB_ESTREAM);
    if (strstr(F.last_error, rule) == NULL) fail_msg("rule '%s' not in '%s'", rule, F.last_error);
    if (strstr(F.last_error, xpb_session_state_name(st)) == NULL)
        fail_msg("state not named in '%s'", F.last_error);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_true(F.timers[XPB_TIMER_RECONNECT] > 0);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    assert_int_equal(F.connects, connects + 1);
    xpb_session_free(s);
}

static void test_refused_in_stream_open(void **state)
{
    (void)state;
    refused(XPB_SS_STREAM_OPEN, PROCEED, "RFC 6120 §5.4.2.3");
    refused(XPB_SS_STREAM_OPEN, "<message to='user@example.com'/>", "RFC 6120 §7.1");
}

static void test_refused_in_starttls(void **state)
{
    (void)state;
    refused(XPB_SS_STARTTLS, SUCCESS, "RFC 6120 §6.4.6");
    refused(XPB_SS_STARTTLS, FEATURES(F_BIND), "RFC 6120 §4.3.2");
}

static void test_refused_in_auth(void **state)
{
    (void)state;
    refused(XPB_SS_AUTH, ENABLED, "XEP-0198 §3");
    refused(XPB_SS_AUTH, "<iq type='get' id='x'/>", "RFC 6120 §7.1");
}

static void test_refused_in_bind(void **state)
{
    (void)state;
    refused(XPB_SS_BIND, "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            "RFC 6120 §6.4.3");
    refused(XPB_SS_BIND, "<a xmlns='urn:xmpp:sm:3' h='0'/>", "XEP-0198 §4");
}

static void test_refused_in_online(void **state)
{
    (void)state;
    refused(XPB_SS_ONLINE, FEATURES(F_BIND), "RFC 6120 §4.3.2");
    refused(XPB_SS_ONLINE, PROCEED, "allowed in: starttls");
    refused(XPB_SS_ONLINE, "<resumed xmlns='urn:xmpp:sm:3' h='0' previd='x'/>", "XEP-0198 §5");
}

static void test_refused_in_closing(void **state)
{
    (void)state;
    refused(XPB_SS_CLOSING, SUCCESS, "allowed in: auth");
    refused(XPB_SS_CLOSING, "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
            "RFC 7395 §3.4");
}

/* Allowed elements are not refused, and elements of unknown namespaces are
 * ignored in every state (RFC 6120 §8.4). */
static void test_allowed_and_unknown(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_ONLINE, 1);
    feed(s, "<message from='a@b'><body>hi</body></message><r xmlns='urn:xmpp:sm:3'/>");
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='1'/>");
    feed(s, "<csi xmlns='urn:example:unknown'/><stream:unknown/>");
    assert_int_equal(F.errors, 0);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    xpb_session_free(s);
    xpb_session_state states[] = {XPB_SS_STREAM_OPEN, XPB_SS_STARTTLS, XPB_SS_AUTH, XPB_SS_BIND,
                                  XPB_SS_CLOSING};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        s = session_in(states[i], 0);
        feed(s, "<x xmlns='urn:example:unknown'/>");
        assert_int_equal(F.errors, 0);
        assert_int_equal(xpb_session_get_state(s), states[i]);
        xpb_session_free(s);
    }
}

/* Every row's element finds its own row in each of its states, and a state
 * outside them finds a row whose `from` lacks it. */
static void test_rule_lookup(void **state)
{
    (void)state;
    for (size_t i = 0; i < session_n_rules; i++) {
        const session_rule *r = &session_rules[i];
        const char *name = r->name ? r->name : "message";
        assert_non_null(r->rule);
        assert_non_null(r->label);
        for (int st = 0; st <= XPB_SS_STOPPED; st++) {
            unsigned allowed;
            const session_rule *f = session_rule_find(r->ns, name, (xpb_session_state)st, &allowed);
            assert_non_null(f);
            if (r->from & SS_BIT(st)) {
                assert_true(f->from & SS_BIT(st));
                assert_true(session_transition_declared((xpb_session_state)st,
                                                        (xpb_session_state)st));
            } else if (!(f->from & SS_BIT(st))) {
                assert_true(allowed & r->from);
            }
        }
    }
    unsigned allowed;
    assert_null(session_rule_find("urn:example", "x", XPB_SS_ONLINE, &allowed));
    assert_false(session_transition_declared(XPB_SS_CLOSING, XPB_SS_ONLINE));
    assert_false(session_transition_declared(XPB_SS_IDLE, XPB_SS_ONLINE));
}

/* ---- the action applier --------------------------------------------------- */

static void test_apply_continue_and_halted(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_ONLINE, 0);
    session_apply(s, act_continue());
    session_apply(s, (session_action){ACT_HALTED, 0, NULL, 0, 0});
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    assert_int_equal(F.out.len, 0);
    assert_int_equal(F.errors, 0);
    xpb_session_free(s);
}

static void test_apply_start_tls(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_STARTTLS, 0);
    int calls = F.starttls_calls;
    feed(s, PROCEED "<junk-after-proceed/>"); /* RFC 6120 §5.4.3.3: discarded */
    assert_int_equal(F.starttls_calls, calls + 1);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_TLS_HANDSHAKE);
    assert_int_equal(F.errors, 0);
    xpb_session_free(s);
}

static void test_apply_restart(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_AUTH, 0);
    session_apply(s, (session_action){ACT_RESTART, 0, NULL, 0, 0});
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STREAM_OPEN);
    assert_sent("<stream:stream");
    xpb_session_free(s);
}

static void test_apply_retry(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_ONLINE, 0);
    int disconnects = F.disconnects;
    session_apply(s, act_retry(XPB_ESTREAM, "why: a test", 900, 1));
    assert_sent("</stream:stream>");
    assert_int_equal(F.errors, 1);
    assert_string_equal(F.last_error, "why: a test");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_int_equal(F.disconnects, disconnects + 1);
    assert_true(F.timers[XPB_TIMER_RECONNECT] >= 900); /* the floor */
    xpb_session_free(s);

    s = session_in(XPB_SS_ONLINE, 0);
    session_apply(s, act_retry(0, "quiet", 0, 0)); /* no event, no close */
    assert_int_equal(F.errors, 0);
    assert_int_equal(F.out.len, 0);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_free(s);
}

static void test_apply_stop(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_BIND, 0);
    session_apply(s, act_stop(XPB_EAUTH, "stopped: a test"));
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(F.errors, 1);
    assert_int_equal(F.last_code, XPB_EAUTH);
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0);
    xpb_session_free(s);
}

static void test_apply_refuse_and_stream_error(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_ONLINE, 0);
    session_apply(s, (session_action){ACT_REFUSE, XPB_ESTREAM, "rule & <text>", 0, 1});
    assert_sent("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>rule &amp; &lt;text&gt;</text>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_free(s);

    s = session_in(XPB_SS_ONLINE, 1);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='9'/>"); /* more than sent: XEP-0198 §6 */
    assert_sent("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='9' send-count='1'/>");
    assert_int_equal(F.last_code, XPB_ESTREAM);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_free(s);
}

static void test_apply_redirect(void **state)
{
    (void)state;
    xpb_session *s = session_in(XPB_SS_AUTH, 0);
    int connects = F.connects;
    feed(s, "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
            "other.example:5999</see-other-host></stream:error>");
    assert_int_equal(F.connects, connects + 1);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    xpb_session_free(s);
}

/* ---- the diagram in docs/architecture.md ---------------------------------- */

#define MAX_LINES 256
#define DLINE_MAX 400

static void upper(char *dst, size_t cap, xpb_session_state st)
{
    snprintf(dst, cap, "%s", xpb_session_state_name(st));
    for (char *p = dst; *p; p++) *p = (char)toupper((unsigned char)*p);
}

static void add_label(char *labels, size_t cap, const char *l)
{
    size_t n = strlen(labels);
    if (strstr(labels, l) != NULL) return;
    snprintf(labels + n, cap - n, "%s%s", n ? ", " : "", l);
}

/* One mermaid line per (from, to) the table declares, labels merged. */
static int expected_lines(char lines[][DLINE_MAX])
{
    int n = 0;
    snprintf(lines[n++], DLINE_MAX, "[*] --> IDLE");
    for (int f = 0; f <= XPB_SS_STOPPED; f++)
        for (int t = 0; t <= XPB_SS_STOPPED; t++) {
            if (f == t) continue;
            char labels[DLINE_MAX - 80] = "";
            for (size_t i = 0; i < session_n_rules; i++)
                if ((session_rules[i].from & SS_BIT(f)) && (session_rules[i].to & SS_BIT(t)))
                    add_label(labels, sizeof labels, session_rules[i].label);
            for (size_t i = 0; i < session_n_edges; i++)
                if ((session_edges[i].from & SS_BIT(f)) && (session_edges[i].to & SS_BIT(t)))
                    add_label(labels, sizeof labels, session_edges[i].trigger);
            if (!labels[0]) continue;
            char a[32], b[32];
            upper(a, sizeof a, (xpb_session_state)f);
            upper(b, sizeof b, (xpb_session_state)t);
            snprintf(lines[n++], DLINE_MAX, "%s --> %s : %s", a, b, labels);
        }
    return n;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    size_t k = strspn(s, " \t");
    memmove(s, s + k, n - k + 1);
}

/* The lines of the first ```mermaid block under "## The session state machine". */
static int doc_lines(char lines[][DLINE_MAX])
{
    FILE *f = fopen(XPB_DOCS_DIR "/architecture.md", "r");
    assert_non_null(f);
    char line[DLINE_MAX];
    int n = 0, in_section = 0, in_block = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "## ", 3) == 0) in_section = strstr(line, "session state machine") != NULL;
        if (!in_section) continue;
        trim(line);
        if (!in_block) {
            in_block = strcmp(line, "```mermaid") == 0;
            continue;
        }
        if (strcmp(line, "```") == 0) break;
        if (!line[0] || strncmp(line, "%%", 2) == 0 || strcmp(line, "stateDiagram-v2") == 0)
            continue;
        assert_true(n < MAX_LINES);
        snprintf(lines[n++], DLINE_MAX, "%s", line);
    }
    fclose(f);
    return n;
}

static int contains(char lines[][DLINE_MAX], int n, const char *l)
{
    for (int i = 0; i < n; i++)
        if (strcmp(lines[i], l) == 0) return 1;
    return 0;
}

static void test_diagram_matches_table(void **state)
{
    (void)state;
    static char want[MAX_LINES][DLINE_MAX], have[MAX_LINES][DLINE_MAX];
    int nw = expected_lines(want), nh = doc_lines(have), bad = 0;
    assert_true(nh > 0);
    for (int i = 0; i < nw; i++)
        if (!contains(have, nh, want[i])) {
            print_error("docs/architecture.md lacks a transition of the table: %s\n", want[i]);
            bad++;
        }
    for (int i = 0; i < nh; i++)
        if (!contains(want, nw, have[i])) {
            print_error("docs/architecture.md lists a transition the table lacks: %s\n", have[i]);
            bad++;
        }
    if (bad) fail_msg("%d diagram lines differ (test_session_table --diagram prints them)", bad);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--diagram") == 0) {
        static char want[MAX_LINES][DLINE_MAX];
        int n = expected_lines(want);
        printf("```mermaid\nstateDiagram-v2\n");
        for (int i = 0; i < n; i++) printf("    %s\n", want[i]);
        printf("```\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_in_stream_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_in_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_in_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_in_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_in_online, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_in_closing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowed_and_unknown, setup, teardown),
        cmocka_unit_test(test_rule_lookup),
        cmocka_unit_test_setup_teardown(test_apply_continue_and_halted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_start_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_refuse_and_stream_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_redirect, setup, teardown),
        cmocka_unit_test(test_diagram_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
