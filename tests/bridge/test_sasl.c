/* Tests for bridge/session/sasl.c: the RFC 5802 §5 and RFC 7677 §3 SCRAM examples byte
 * for byte, refusals (signature, nonce, iterations, e=, m=), mechanism choice
 * over TLS / channel-binding combinations, PLAIN, base64 and saslname escaping. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_sasl.h"

#define U(s) ((const unsigned char *)(s))

/* RFC 5802 §5 */
#define SHA1_NONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_FIRST "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_SFIRST "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
#define SHA1_FINAL                                                                                 \
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SFINAL "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
/* RFC 7677 §3 */
#define SHA256_NONCE "rOprNGfwEbeRWgbNEkqO"
#define SHA256_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SHA256_SFIRST                                                                              \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA256_FINAL                                                                               \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                                 \
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SHA256_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const unsigned char cb_bytes[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                           23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static xpb_sasl_config cfg_for(const char *user, const char *pw, int tls, int cb)
{
    xpb_sasl_config c;
    xpb_sasl_config_init(&c);
    c.authcid = user;
    c.password = U(pw);
    c.password_len = strlen(pw);
    c.tls = tls;
    if (cb) { /* TLS 1.3, and a server that lists tls-exporter (XEP-0440) */
        static const char *const listed[] = {"tls-exporter"};
        c.cb_type = "tls-exporter";
        c.cb_data = cb_bytes;
        c.cb_data_len = sizeof cb_bytes;
        c.server_cb_types = listed;
        c.n_server_cb_types = 1;
    }
    return c;
}

static void assert_bytes(const unsigned char *got, size_t len, const char *want)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, got, len);
    s[len] = 0;
    assert_string_equal(s, want);
    free(s);
}

/* New client, select `mech` from a one-entry list, start with a fixed nonce. */
static xpb_sasl *begin(const xpb_sasl_config *c, const char *mech, const char *nonce,
                       const char *want_first)
{
    xpb_sasl *s = NULL;
    const char *chosen = NULL;
    const unsigned char *out;
    size_t len;
    assert_int_equal(xpb_sasl_new(&s, c), 0);
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
    assert_string_equal(chosen, mech);
    assert_int_equal(xpb_sasl_test_set_nonce(s, nonce), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
    if (want_first) assert_bytes(out, len, want_first);
    return s;
}

static int step_str(xpb_sasl *s, const char *challenge, const char *want)
{
    const unsigned char *out = NULL;
    size_t len = 0;
    int rc = xpb_sasl_step(s, U(challenge), strlen(challenge), &out, &len);
    if (rc == 0 && want) assert_bytes(out, len, want);
    return rc;
}

static void test_rfc5802_sha1(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-1", SHA1_NONCE, SHA1_FIRST);
    assert_int_equal(step_str(s, SHA1_SFIRST, SHA1_FINAL), 0);
    assert_int_equal(xpb_sasl_finish(s, U(SHA1_SFINAL), strlen(SHA1_SFINAL)), 0);
    xpb_sasl_free(s);
}

static void test_rfc7677_sha256(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, SHA256_FIRST);
    assert_int_equal(step_str(s, SHA256_SFIRST, SHA256_FINAL), 0);
    assert_int_equal(xpb_sasl_finish(s, U(SHA256_SFINAL), strlen(SHA256_SFINAL)), 0);
    /* Done: anything further is out of order. */
    assert_int_equal(xpb_sasl_finish(s, NULL, 0), XPB_ESASLSTATE);
    xpb_sasl_free(s);
}

/* Server-final sent as a <challenge/>, answered empty, then an empty <success/>. */
static void test_server_final_as_challenge(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, SHA256_FIRST);
    assert_int_equal(step_str(s, SHA256_SFIRST, SHA256_FINAL), 0);
    assert_int_equal(step_str(s, SHA256_SFINAL, ""), 0);
    assert_int_equal(xpb_sasl_finish(s, NULL, 0), 0);
    xpb_sasl_free(s);
}

/* A SCRAM-SHA-256 exchange that fails at the server-final stage with `sfinal`. */
static void expect_final_refused(const char *sfinal, int want, const char *msg_part)
{
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, SHA256_FIRST);
    assert_int_equal(step_str(s, SHA256_SFIRST, SHA256_FINAL), 0);
    assert_int_equal(xpb_sasl_finish(s, U(sfinal), strlen(sfinal)), want);
    if (msg_part) assert_non_null(strstr(xpb_sasl_error(s), msg_part));
    /* The exchange is dead after a failure. */
    assert_int_equal(xpb_sasl_finish(s, U(SHA256_SFINAL), strlen(SHA256_SFINAL)), XPB_ESASLSTATE);
    xpb_sasl_free(s);
}

static void test_server_final_refusals(void **state)
{
    (void)state;
    /* one character of the signature changed */
    expect_final_refused("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl96G4=", XPB_ESASLSERVERSIG,
                         NULL);
    expect_final_refused("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", XPB_ESASLSERVERSIG,
                         NULL);
    /* same bytes, but a non-canonical encoding (pad bits set) */
    expect_final_refused("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=", XPB_ESASLPROTO, NULL);
    expect_final_refused("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", XPB_ESASLPROTO, NULL);
    expect_final_refused("v=", XPB_ESASLSERVERSIG, NULL);
    expect_final_refused("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", XPB_ESASLSERVERSIG, NULL); /* SHA-1's */
    expect_final_refused("e=invalid-proof", XPB_ESASLSERVERERR, "invalid-proof");
    expect_final_refused("e=other-error", XPB_ESASLSERVERERR, "other-error");
    expect_final_refused("x=whatever", XPB_ESASLPROTO, NULL);
    expect_final_refused("garbage", XPB_ESASLPROTO, NULL);
}

static void test_success_without_signature_refused(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, SHA256_FIRST);
    assert_int_equal(step_str(s, SHA256_SFIRST, SHA256_FINAL), 0);
    assert_int_equal(xpb_sasl_finish(s, NULL, 0), XPB_ESASLSERVERSIG);
    xpb_sasl_free(s);
}

struct first_case {
    const char *server_first;
    int want;
    const char *msg_part; /* must appear in xpb_sasl_error, or NULL */
};

static void test_server_first_refusals(void **state)
{
    (void)state;
    static const struct first_case cases[] = {
        /* nonce not starting with ours */
        {"r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", XPB_ESASLNONCE,
         NULL},
        /* nonce equal to ours: the server added nothing */
        {"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", XPB_ESASLNONCE, NULL},
        {"r=rOprNGfw,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", XPB_ESASLNONCE, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000", XPB_ESASLITER, "4096"},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", XPB_ESASLITER, "4096"},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000", XPB_ESASLITER, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999", XPB_ESASLPROTO,
         NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", XPB_ESASLPROTO, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-5", XPB_ESASLPROTO, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=40x6", XPB_ESASLPROTO, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=not*base64,i=4096", XPB_ESASLPROTO, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s==,i=4096", XPB_ESASLPROTO, NULL}, /* empty salt */
        {"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==", XPB_ESASLPROTO, NULL},
        {"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==", XPB_ESASLPROTO, NULL},
        {"m=must-understand,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
         XPB_ESASLPROTO, "m="},
        {"e=unknown-user", XPB_ESASLSERVERERR, "unknown-user"},
        {"", XPB_ESASLPROTO, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
        xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, NULL);
        int rc = step_str(s, cases[i].server_first, NULL);
        if (rc != cases[i].want) print_error("case %zu: %s\n", i, cases[i].server_first);
        assert_int_equal(rc, cases[i].want);
        if (cases[i].msg_part) assert_non_null(strstr(xpb_sasl_error(s), cases[i].msg_part));
        assert_int_equal(step_str(s, SHA256_SFIRST, NULL), XPB_ESASLSTATE);
        xpb_sasl_free(s);
    }
}

static void test_min_iterations_override(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    xpb_sasl *s = NULL;
    const char *mech = "SCRAM-SHA-1", *chosen;
    const unsigned char *out;
    size_t len;
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    xpb_sasl_test_set_min_iterations(s, 1000);
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
    assert_int_equal(xpb_sasl_test_set_nonce(s, "abc"), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
    assert_int_equal(step_str(s, "r=abcdef,s=QSXCR+Q6sek8bf92,i=1000", NULL), 0);
    xpb_sasl_free(s);
}

/* The state machine refuses calls out of order. */
static void test_state_errors(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 1, 0);
    xpb_sasl *s = NULL;
    const unsigned char *out;
    size_t len;
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), XPB_ESASLSTATE);
    xpb_sasl_free(s);
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(step_str(s, SHA256_SFIRST, NULL), XPB_ESASLSTATE);
    xpb_sasl_free(s);
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(xpb_sasl_finish(s, NULL, 0), XPB_ESASLSTATE);
    xpb_sasl_free(s);
    /* select after start */
    s = begin(&c, "SCRAM-SHA-1", SHA1_NONCE, SHA1_FIRST);
    const char *mech = "SCRAM-SHA-1", *chosen;
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), XPB_ESASLSTATE);
    assert_int_equal(xpb_sasl_start(s, &out, &len), XPB_ESASLSTATE);
    xpb_sasl_free(s);
}

/* ---- mechanism selection ------------------------------------------------- */

struct sel_case {
    const char *offered[6];
    int tls, cb, allow_plain;
    const char *chosen;   /* NULL: expect XPB_ESASLNOMECH */
    const char *gs2;      /* expected start of the initial response, SCRAM only */
    const char *msg_part; /* on refusal, must appear in the message */
    const char *cb_type;  /* with cb: ours (NULL = tls-exporter) */
    int listed;           /* the server sent a XEP-0440 list: server_cb */
    const char *server_cb[3];
};

/* The channel-binding fields at the end are left out where they do not matter. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct sel_case sel_cases[] = {
    {{"SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"}, 1, 0, 1, "SCRAM-SHA-256", "n,,", NULL},
    {{"PLAIN", "SCRAM-SHA-1"}, 1, 0, 1, "SCRAM-SHA-1", "n,,", NULL},
    /* TLS 1.3 (tls-exporter) with a XEP-0440 list naming it: -PLUS */
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-256-PLUS",
     "p=tls-exporter,,", NULL, .listed = 1, .server_cb = {"tls-exporter"}},
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-1-PLUS", "p=tls-exporter,,", NULL,
     .listed = 1, .server_cb = {"tls-exporter"}},
    /* ... and without a list (ejabberd 23.01 over TLS 1.3 offers -PLUS and
     * refuses tls-exporter): plain SCRAM, 'n' */
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1", "n,,", NULL},
    /* -PLUS offered but no cb data: plain SCRAM, and 'n' since we cannot bind */
    {{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, 1, 0, 1, "SCRAM-SHA-256", "n,,", NULL},
    {{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"},
     1,
     0,
     1,
     "SCRAM-SHA-1",
     "n,,",
     NULL},
    /* cb data available but the server offers no -PLUS: downgrade protection 'y' */
    {{"SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1", "y,,", NULL},
    {{"SCRAM-SHA-256", "PLAIN"}, 1, 1, 1, "SCRAM-SHA-256", "y,,", NULL},
    {{"PLAIN"}, 1, 0, 1, "PLAIN", NULL, NULL},
    {{"PLAIN"}, 1, 1, 1, "PLAIN", NULL, NULL},
    {{"X-OAUTH2", "PLAIN", "DIGEST-MD5"}, 1, 0, 1, "PLAIN", NULL, NULL},
    {{"SCRAM-SHA-256", "PLAIN"}, 0, 0, 1, "SCRAM-SHA-256", "n,,", NULL},
    /* refusals */
    {{"PLAIN"},
     0,
     0,
     1,
     NULL,
     NULL,
     "server offers only PLAIN and the stream is not TLS-protected"},
    {{"PLAIN"}, 1, 0, 0, NULL, NULL, "PLAIN is disabled by configuration"},
    {{"SCRAM-SHA-256-PLUS"}, 1, 0, 1, NULL, NULL, "no channel-binding data is available"},
    {{"DIGEST-MD5", "PLAIN"},
     0,
     0,
     1,
     NULL,
     NULL,
     "DIGEST-MD5 refused because the mechanism is not supported; PLAIN refused because the "
     "stream is not TLS-protected"},
    {{"scram-sha-1"}, 1, 0, 1, NULL, NULL, "scram-sha-1"},
    /* XEP-0440 and the binding the server can check. TLS 1.2 (our
     * tls-server-end-point) with no list: the server is taken to bind to
     * tls-unique, so no -PLUS, and 'n' since it does offer -PLUS. */
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1", "n,,", NULL,
     .cb_type = "tls-server-end-point"},
    {{"SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1", "y,,", NULL, .cb_type = "tls-server-end-point"},
    {{"SCRAM-SHA-1-PLUS"}, 1, 1, 1, NULL, NULL, "tls-unique", .cb_type = "tls-server-end-point"},
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1-PLUS",
     "p=tls-server-end-point,,", NULL, .cb_type = "tls-server-end-point", .listed = 1,
     .server_cb = {"tls-unique", "tls-server-end-point"}},
    /* TLS 1.3 (tls-exporter): a list without it, an empty list, a list with it */
    {{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-256", "n,,", NULL, .listed = 1,
     .server_cb = {"tls-unique"}},
    {{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-256", "n,,", NULL, .listed = 1},
    {{"SCRAM-SHA-256-PLUS"}, 1, 1, 1, NULL, NULL, "XEP-0440", .listed = 1,
     .server_cb = {"tls-server-end-point"}},
    {{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,",
     NULL, .listed = 1, .server_cb = {"tls-unique", "tls-exporter"}},
    /* TLS 1.2 with the extended master secret: tls-unique, the 1.2 default */
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1-PLUS", "p=tls-unique,,", NULL,
     .cb_type = "tls-unique"},
    {{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, 1, 1, 1, "SCRAM-SHA-1", "n,,", NULL,
     .cb_type = "tls-unique", .listed = 1, .server_cb = {"tls-server-end-point"}},
    /* a -PLUS we do not know still means the server binds: 'n', not 'y' */
    {{"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256"}, 1, 1, 1, "SCRAM-SHA-256", "n,,", NULL},
    {{NULL}, 1, 0, 1, NULL, NULL, "server offers no mechanism"},
};
#pragma GCC diagnostic pop

static void run_sel_case(size_t i, const struct sel_case *k)
{
    size_t n = 0;
    while (n < 6 && k->offered[n])
        n++;
    xpb_sasl_config c = cfg_for("user", "pencil", k->tls, k->cb);
    c.allow_plain = k->allow_plain;
    if (k->cb_type) c.cb_type = k->cb_type;
    size_t n_cb = 0;
    while (n_cb < 3 && k->server_cb[n_cb])
        n_cb++;
    c.server_cb_types = k->listed ? k->server_cb : NULL;
    c.n_server_cb_types = n_cb;
    xpb_sasl *s = NULL;
    const char *chosen = NULL;
    const unsigned char *out;
    size_t len;
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    int rc = xpb_sasl_select(s, k->offered, n, &chosen);
    if (rc != (k->chosen ? 0 : XPB_ESASLNOMECH)) print_error("selection case %zu\n", i);
    if (!k->chosen) {
        assert_int_equal(rc, XPB_ESASLNOMECH);
        if (!strstr(xpb_sasl_error(s), k->msg_part))
            print_error("case %zu message: %s\n", i, xpb_sasl_error(s));
        assert_non_null(strstr(xpb_sasl_error(s), k->msg_part));
    } else {
        assert_int_equal(rc, 0);
        assert_string_equal(chosen, k->chosen);
        assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
        if (k->gs2) assert_memory_equal(out, k->gs2, strlen(k->gs2));
    }
    xpb_sasl_free(s);
}

static void test_selection_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sel_cases / sizeof sel_cases[0]; i++)
        run_sel_case(i, &sel_cases[i]);
}

/* Expected c= attribute: base64 of the gs2 header plus, for 'p', the cb data. */
static char *expected_cbind(const char *gs2, int with_data)
{
    unsigned char raw[128];
    size_t n = strlen(gs2);
    char *enc = NULL;
    size_t enc_len;
    memcpy(raw, gs2, n);
    if (with_data) {
        memcpy(raw + n, cb_bytes, sizeof cb_bytes);
        n += sizeof cb_bytes;
    }
    assert_int_equal(xpb_sasl_b64_encode(raw, n, &enc, &enc_len), 0);
    return enc;
}

/* The client-final of a channel-bound or 'y' exchange carries the right c=. */
static void check_cbind_final(const char *offered, const char *gs2, int with_data)
{
    xpb_sasl_config c = cfg_for("user", "pencil", 1, 1);
    char first[64];
    snprintf(first, sizeof first, "%sn=user,r=abc", gs2);
    xpb_sasl *s = begin(&c, offered, "abc", first);
    const unsigned char *out;
    size_t len;
    const char *sf = "r=abcdef,s=QSXCR+Q6sek8bf92,i=4096";
    assert_int_equal(xpb_sasl_step(s, U(sf), strlen(sf), &out, &len), 0);
    char *cb = expected_cbind(gs2, with_data);
    assert_memory_equal(out, "c=", 2);
    assert_true(len > 2 + strlen(cb));
    assert_memory_equal(out + 2, cb, strlen(cb));
    assert_memory_equal(out + 2 + strlen(cb), ",r=abcdef,p=", 12);
    free(cb);
    xpb_sasl_free(s);
}

static void test_channel_binding_messages(void **state)
{
    (void)state;
    check_cbind_final("SCRAM-SHA-256-PLUS", "p=tls-exporter,,", 1);
    check_cbind_final("SCRAM-SHA-1-PLUS", "p=tls-exporter,,", 1);
    check_cbind_final("SCRAM-SHA-1", "y,,", 0);
    char *y = expected_cbind("y,,", 0);
    assert_string_equal(y, "eSws");
    free(y);
}

static void test_tls_server_end_point_and_authzid(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 1, 1);
    c.cb_type = "tls-server-end-point";
    static const char *const listed[] = {"tls-unique", "tls-server-end-point"}; /* XEP-0440 */
    c.server_cb_types = listed;
    c.n_server_cb_types = 2;
    c.authzid = "admin,x=y";
    xpb_sasl_free(begin(&c, "SCRAM-SHA-256-PLUS", "abc",
                        "p=tls-server-end-point,a=admin=2Cx=3Dy,n=user,r=abc"));
}

/* ---- PLAIN ----------------------------------------------------------------- */

static void test_plain_encoding(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("juliet", "r0m30", 1, 0);
    xpb_sasl *s = NULL;
    const char *mech = "PLAIN", *chosen;
    const unsigned char *out;
    size_t len;
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
    assert_int_equal(len, 13);
    assert_memory_equal(out, "\0juliet\0r0m30", 13);
    assert_int_equal(xpb_sasl_finish(s, NULL, 0), 0);
    xpb_sasl_free(s);

    c.authzid = "romeo@example.net";
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
    assert_int_equal(len, 30);
    assert_memory_equal(out, "romeo@example.net\0juliet\0r0m30", 30);
    /* PLAIN has no challenges and no success data */
    assert_int_equal(step_str(s, "x", NULL), XPB_ESASLPROTO);
    xpb_sasl_free(s);

    c.authzid = NULL;
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
    assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
    assert_int_equal(xpb_sasl_finish(s, U("x"), 1), XPB_ESASLPROTO);
    xpb_sasl_free(s);
}

/* ---- configuration --------------------------------------------------------- */

static void test_config_checks(void **state)
{
    (void)state;
    xpb_sasl *s = (xpb_sasl *)&s;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 1); /* cb data without TLS */
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_EINVAL);
    assert_null(s);
    c = cfg_for("user", "pencil", 1, 1);
    c.cb_type = "tls-foo";
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_EINVAL);
    c = cfg_for("us\ter", "pencil", 1, 0);
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_ESASLCRED);
    c = cfg_for("us\xc3", "pencil", 1, 0); /* truncated UTF-8 */
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_ESASLCRED);
    static const char *const bad_users[] = {"\xc0\xafx",
                                            "\xed\xa0\x80",
                                            "\xf4\x90\x80\x80",
                                            "\xe0\x80\xaf",
                                            "a\xc2\x85"
                                            "b",
                                            "a\x7f"};
    for (size_t i = 0; i < sizeof bad_users / sizeof bad_users[0]; i++) {
        c = cfg_for(bad_users[i], "pencil", 1, 0);
        assert_int_equal(xpb_sasl_new(&s, &c), XPB_ESASLCRED);
    }
    c = cfg_for("", "pencil", 1, 0);
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_EINVAL);
    c = cfg_for("user", "pencil", 1, 0);
    c.password = U("pen\0cil");
    c.password_len = 7;
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_ESASLCRED);
    c = cfg_for("user", "pencil", 1, 0);
    c.password_len = XPB_SASL_FIELD_MAX + 1;
    assert_int_equal(xpb_sasl_new(&s, &c), XPB_EINVAL);
    /* non-ASCII UTF-8 usernames are fine */
    c = cfg_for("j\xc3\xbcliet", "pencil", 1, 0);
    assert_int_equal(xpb_sasl_new(&s, &c), 0);
    xpb_sasl_free(s);
    assert_int_equal(xpb_sasl_test_set_nonce(NULL, "abc"), XPB_EINVAL);
}

/* ---- saslname escaping ----------------------------------------------------- */

static void test_username_escaping(void **state)
{
    (void)state;
    static const struct {
        const char *user, *want;
    } cases[] = {
        {"user", "n,,n=user,r=abc"},
        {"a=b", "n,,n=a=3Db,r=abc"},
        {"a,b", "n,,n=a=2Cb,r=abc"},
        {"=,=", "n,,n==3D=2C=3D,r=abc"},
        {"j\xc3\xbcliet", "n,,n=j\xc3\xbcliet,r=abc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xpb_sasl_config c = cfg_for(cases[i].user, "pencil", 0, 0);
        xpb_sasl_free(begin(&c, "SCRAM-SHA-1", "abc", cases[i].want));
    }
}

/* Without an injected nonce the client makes 24 random bytes: 32 base64 chars. */
static void test_random_nonce(void **state)
{
    (void)state;
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    char first[2][64];
    for (int k = 0; k < 2; k++) {
        xpb_sasl *s = NULL;
        const char *mech = "SCRAM-SHA-256", *chosen;
        const unsigned char *out;
        size_t len;
        assert_int_equal(xpb_sasl_new(&s, &c), 0);
        assert_int_equal(xpb_sasl_select(s, &mech, 1, &chosen), 0);
        assert_int_equal(xpb_sasl_start(s, &out, &len), 0);
        assert_int_equal(len, strlen("n,,n=user,r=") + 32);
        assert_memory_equal(out, "n,,n=user,r=", 12);
        assert_null(memchr(out + 12, ',', 32));
        memcpy(first[k], out, len);
        first[k][len] = 0;
        xpb_sasl_free(s);
    }
    assert_string_not_equal(first[0], first[1]);
}

/* ---- base64 ----------------------------------------------------------------- */

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *raw, *enc;
    } ok[] = {
        {"", "="},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"n,,", "biws"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *enc;
        unsigned char *dec;
        size_t n;
        assert_int_equal(xpb_sasl_b64_encode(U(ok[i].raw), strlen(ok[i].raw), &enc, &n), 0);
        assert_string_equal(enc, ok[i].enc);
        assert_int_equal(n, strlen(ok[i].enc));
        free(enc);
        assert_int_equal(xpb_sasl_b64_decode(ok[i].enc, strlen(ok[i].enc), &dec, &n), 0);
        assert_int_equal(n, strlen(ok[i].raw));
        assert_memory_equal(dec, ok[i].raw, n);
        free(dec);
    }
    unsigned char *dec;
    size_t n = 99;
    assert_int_equal(xpb_sasl_b64_decode("", 0, &dec, &n), 0); /* empty element */
    assert_int_equal(n, 0);
    free(dec);
    static const char *const bad[] = {"Zg=",  "Zg",   "Z===", "Zm9v\n", "Zm 9", "Zg==Zg==",
                                      "=Zg=", "Zm9*", "==",   "Zm=v",   "Zh==", "Zm9="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(xpb_sasl_b64_decode(bad[i], strlen(bad[i]), &dec, &n), XPB_ESASLBASE64);
    /* binary round trip */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *enc;
    assert_int_equal(xpb_sasl_b64_encode(all, sizeof all, &enc, &n), 0);
    assert_int_equal(xpb_sasl_b64_decode(enc, n, &dec, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(dec, all, 256);
    free(enc);
    free(dec);
}

/* ---- secrets stay out of messages ------------------------------------------ */

static void assert_no_secret(const xpb_sasl *s)
{
    const char *m = xpb_sasl_error(s);
    assert_true(m[0] != 0);
    assert_null(strstr(m, "zqxuser"));
    assert_null(strstr(m, "Sekr1tPw"));
}

static void test_no_credentials_in_errors(void **state)
{
    (void)state;
    static const char *const server_msgs[] = {
        "r=zz,s=QSXCR+Q6sek8bf92,i=4096",
        "r=abcd,s=QSXCR+Q6sek8bf92,i=10",
        "e=invalid-proof",
        "m=x,r=abcd",
        "r=abcd,s=***,i=4096",
    };
    for (size_t i = 0; i < sizeof server_msgs / sizeof server_msgs[0]; i++) {
        xpb_sasl_config c = cfg_for("zqxuser", "Sekr1tPw", 1, 0);
        xpb_sasl *s = begin(&c, "SCRAM-SHA-256", "abc", "n,,n=zqxuser,r=abc");
        assert_int_not_equal(step_str(s, server_msgs[i], NULL), 0);
        assert_no_secret(s);
        xpb_sasl_free(s);
    }
    xpb_sasl_config c = cfg_for("zqxuser", "Sekr1tPw", 1, 0);
    xpb_sasl *s = begin(&c, "SCRAM-SHA-1", "abc", NULL);
    assert_int_equal(step_str(s, "r=abcd,s=QSXCR+Q6sek8bf92,i=4096", NULL), 0);
    assert_int_equal(xpb_sasl_finish(s, U("v=AAAA"), 6), XPB_ESASLSERVERSIG);
    assert_no_secret(s);
    xpb_sasl_free(s);
}

/* ---- SaltedPassword cache --------------------------------------------------- */

static void test_cache(void **state)
{
    (void)state;
    xpb_sasl_cache *cache = NULL;
    assert_int_equal(xpb_sasl_cache_new(&cache), 0);
    xpb_sasl_config c = cfg_for("user", "pencil", 0, 0);
    c.cache = cache;
    for (int k = 0; k < 2; k++) {
        xpb_sasl *s = begin(&c, "SCRAM-SHA-256", SHA256_NONCE, SHA256_FIRST);
        assert_int_equal(step_str(s, SHA256_SFIRST, SHA256_FINAL), 0);
        assert_int_equal(xpb_sasl_finish(s, U(SHA256_SFINAL), strlen(SHA256_SFINAL)), 0);
        xpb_sasl_free(s);
        assert_int_equal(xpb_sasl_cache_hits(cache), (uint64_t)k);
    }
    /* another hash misses the cache and still gets the right answer */
    xpb_sasl *s = begin(&c, "SCRAM-SHA-1", SHA1_NONCE, SHA1_FIRST);
    assert_int_equal(step_str(s, SHA1_SFIRST, SHA1_FINAL), 0);
    xpb_sasl_free(s);
    assert_int_equal(xpb_sasl_cache_hits(cache), 1);
    /* a changed password misses too: the wrong key gives a wrong proof */
    c.password = U("pencil2");
    c.password_len = 7;
    s = begin(&c, "SCRAM-SHA-1", SHA1_NONCE, SHA1_FIRST);
    assert_int_equal(step_str(s, SHA1_SFIRST, NULL), 0);
    assert_int_equal(xpb_sasl_finish(s, U(SHA1_SFINAL), strlen(SHA1_SFINAL)), XPB_ESASLSERVERSIG);
    xpb_sasl_free(s);
    assert_int_equal(xpb_sasl_cache_hits(cache), 1);
    xpb_sasl_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_sha1),
        cmocka_unit_test(test_rfc7677_sha256),
        cmocka_unit_test(test_server_final_as_challenge),
        cmocka_unit_test(test_server_final_refusals),
        cmocka_unit_test(test_success_without_signature_refused),
        cmocka_unit_test(test_server_first_refusals),
        cmocka_unit_test(test_min_iterations_override),
        cmocka_unit_test(test_state_errors),
        cmocka_unit_test(test_selection_table),
        cmocka_unit_test(test_channel_binding_messages),
        cmocka_unit_test(test_tls_server_end_point_and_authzid),
        cmocka_unit_test(test_plain_encoding),
        cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_username_escaping),
        cmocka_unit_test(test_random_nonce),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_no_credentials_in_errors),
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
