/* xpb-gen: print seeded, realistic XMPP client traffic (tools/traffic.h), one
 * standalone stanza per line or wrapped in a full <stream:stream>, for feeding
 * xpbctl, the benchmarks and manual tests. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traffic.h"

static const char usage[] =
    "NAME\n"
    "    xpb-gen - print realistic, reproducible XMPP client traffic\n"
    "\n"
    "SYNOPSIS\n"
    "    xpb-gen [--seed N] [--count N] [--stream]\n"
    "\n"
    "DESCRIPTION\n"
    "    Prints COUNT stanzas (message, presence, iq) drawn from a fixed mix of\n"
    "    chat, chat states, receipts, group chat, presence with caps, MUC\n"
    "    presence, roster pushes, ping, disco, version, MAM results and errors.\n"
    "    The same seed always gives the same output. Each stanza carries\n"
    "    xmlns='jabber:client' and is printed on its own line.\n"
    "\n"
    "OPTIONS\n"
    "    --seed N     PRNG seed (default 1)\n"
    "    --count N    number of stanzas (default 100)\n"
    "    --stream     wrap the stanzas in <?xml?><stream:stream> ... </stream:stream>\n"
    "    --help       print this text\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success, 1 on an output error, 2 on a usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    xpb-gen --seed 7 --count 1000 | xpbctl convert --from xml --to pb > t.pb\n";

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !end || *end || *s == '-' || end == s) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, uint64_t *seed, uint64_t *count, int *stream)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(argv[i], "--stream") == 0) {
            *stream = 1;
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], seed)) return -1;
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], count)) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, count = 100;
    int stream = 0;
    if (parse_args(argc, argv, &seed, &count, &stream)) {
        fputs("usage: xpb-gen [--seed N] [--count N] [--stream] (see --help)\n", stderr);
        return 2;
    }
    xpb_traffic *t = xpb_traffic_new(seed);
    if (!t) return 1;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    if (stream)
        fputs("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' from='example.com' "
              "id='xpb-gen' version='1.0' xml:lang='en'>\n", stdout);
    int rc = 0;
    for (uint64_t i = 0; i < count && !rc; i++) {
        xpb_buf_reset(&b);
        if (!xpb_traffic_next(t, &b) || fwrite(b.data, 1, b.len, stdout) != b.len ||
            putchar('\n') == EOF)
            rc = 1;
    }
    /* No newline after the close: the reader refuses any data after it. */
    if (stream && !rc) fputs("</stream:stream>", stdout);
    xpb_buf_free(&b);
    xpb_traffic_free(t);
    if (fflush(stdout) != 0) rc = 1;
    if (rc) fputs("xpb-gen: write failed\n", stderr);
    return rc;
}
