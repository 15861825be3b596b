/* Helpers shared by the unit tests (linked into every xpb_test executable). */
#ifndef XPB_TEST_UTIL_H
#define XPB_TEST_UTIL_H

#include <stddef.h>

#include "xpb/v1/bus.pb-c.h"
#include "xpb_stanza.h"

/* The whole file at path, malloc'ed, with a NUL after the *len bytes; NULL
 * when it cannot be opened or read. */
char *xpb_test_read_file(const char *path, size_t *len);

/* Calls fn for every *.xml file in dir, in name order, with its bytes (valid
 * during the call). Returns how many, or (size_t)-1 when the directory or a
 * file cannot be read. */
typedef void (*xpb_test_file_fn)(const char *name, const char *data, size_t len, void *ud);
size_t xpb_test_each_xml(const char *dir, xpb_test_file_fn fn, void *ud);

/* A port on 127.0.0.1 that nothing listens on now (bound, read, closed). */
unsigned short xpb_test_free_port(void);

/* A message record to `to` with one body, as the send tests build it; the
 * record points into m, so m must stay where it is while st is used. */
typedef struct xpb_test_msg {
    xpb_stanza st;
    Xpb__V1__Text text;
    Xpb__V1__Text *bodies[1];
} xpb_test_msg;
void xpb_test_msg_init(xpb_test_msg *m, const char *to, const char *body);
/* The same, of type chat. */
void xpb_test_chat_init(xpb_test_msg *m, const char *to, const char *body);

/* r: a SendBatch request (in op) of the n items for account, without an api
 * version or request id (the caller's request helper sets those). */
void xpb_test_batch_init(Xpb__V1__Request *r, Xpb__V1__SendBatch *op, const char *account,
                         Xpb__V1__SendStanza **items, size_t n);

#endif
