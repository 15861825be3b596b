/* xpb-load's test certificate: self-signed P-256 for LOAD_DOMAIN and
 * 127.0.0.1, made at start with the OpenSSL API, written beside the run's
 * other files. The bridge trusts it through the account's ca_file. */
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "load.h"

#define CERT_DAYS 2

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e) return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static X509 *make_x509(EVP_PKEY *k)
{
    X509 *x = X509_new();
    if (!x) return NULL;
    X509_NAME *n = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), 1) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 86400L * CERT_DAYS) &&
             X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)LOAD_DOMAIN,
                                        -1, -1, 0) &&
             X509_set_issuer_name(x, n) && X509_set_pubkey(x, k);
    /* RFC 6125 §6.4: the bridge checks the JID's domain as a DNS name. */
    if (ok) ok = !add_ext(x, NID_subject_alt_name, "DNS:" LOAD_DOMAIN ",IP:127.0.0.1");
    if (ok) ok = !add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    if (ok) ok = X509_sign(x, k, EVP_sha256()) > 0;
    if (ok) return x;
    X509_free(x);
    return NULL;
}

static int write_pem(const char *path, EVP_PKEY *k, X509 *x)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = k ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, x);
    return fclose(f) == 0 && ok ? 0 : -1;
}

int load_make_cert(const char *dir, char *cert, char *key, size_t len)
{
    if (snprintf(cert, len, "%s/cert.pem", dir) >= (int)len ||
        snprintf(key, len, "%s/key.pem", dir) >= (int)len)
        return -1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? make_x509(k) : NULL;
    int rc = x && !write_pem(cert, NULL, x) && !write_pem(key, k, NULL) ? 0 : -1;
    if (rc) fprintf(stderr, "xpb-load: cannot make the test certificate in %s\n", dir);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}
