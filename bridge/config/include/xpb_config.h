/* xpbridge's settings: the libconfig file (docs/configuration.md), the
 * command-line flags that override it, and the comparison SIGHUP uses to tell
 * changed accounts from unchanged ones. No I/O beyond reading the file. */
#ifndef XPB_CONFIG_H
#define XPB_CONFIG_DEFAULT_BATCH_FLUSH_US 0u /* bus.batch_flush_us (0: flush when the loop goes idle) */
#define XPB_CONFIG_H

#define XPB_CONFIG_DEDUPE_DEFAULT 4096u  /* bus.dedupe_entries: XPB_BUS_DEFAULT_DEDUPE */
#define XPB_CONFIG_DEDUPE_MAX (1u << 22) /* the bus's own bound */

#include <stddef.h>

#define XPB_CONFIG_DEFAULT_METRICS "127.0.0.1:9477"
#define XPB_CONFIG_DEFAULT_MUC_PING_S 300u   /* XEP-0410 self-ping every 5 min */
#define XPB_CONFIG_MAX_ACCOUNTS 10000u
#define XPB_CONFIG_DEFAULT_CONNECT_RATE 1000u /* new TLS handshakes per second */
#define XPB_CONFIG_MAX_ROOMS 1000u           /* per account */
#define XPB_CONFIG_MAX_IQ_PASSTHROUGH 64u    /* iq.passthrough namespaces */
#define XPB_CONFIG_DEFAULT_METRICS_MAX_CONNECTIONS 16u /* concurrent /metrics clients */
#define XPB_CONFIG_DEFAULT_METRICS_IDLE_S 10u  /* a /metrics connection idle this long is closed */
/* mam.*: catch-up from the server's archive after a fresh bind (docs/durability.md) */
#define XPB_CONFIG_DEFAULT_MAM_PAGE 100u           /* results asked per page (RSM <max/>) */
#define XPB_CONFIG_DEFAULT_MAM_MAX_PAGES 50u       /* pages per archive per run */
#define XPB_CONFIG_DEFAULT_MAM_MAX_MESSAGES 5000u  /* archived messages per archive per run */
#define XPB_CONFIG_DEFAULT_MAM_TIMEOUT_MS 30000u   /* one page's query */
#define XPB_CONFIG_MAX_MAM_TIMEOUT_MS 600000u      /* as an iq request's longest timeout */
#define XPB_CONFIG_DEFAULT_BACKOFF_RESET_S 60u /* online this long -> the backoff starts over */
#define XPB_CONFIG_DEFAULT_BACKOFF_MAX_S 60u   /* the longest wait between reconnects */
#define XPB_SHARDS_MAX_WORKERS_CONFIG 64u      /* limits.loops (xpb_shards.h's bound) */
#define XPB_CONFIG_LOOPS_AUTO 0xffffffffu      /* limits.loops = "auto" */
#define XPB_CONFIG_MAX_FILE_BYTES (16u * 1024u * 1024u) /* a bigger config file is refused */

enum { XPB_CFG_LOG_DEBUG = 0, XPB_CFG_LOG_INFO, XPB_CFG_LOG_WARN, XPB_CFG_LOG_ERROR };

typedef struct xpb_room_cfg {
    char *room;      /* bare JID of the room */
    char *nick;
    char *password;  /* NULL: none */
    int history_maxstanzas; /* -1: server default */
} xpb_room_cfg;

typedef struct xpb_account_cfg {
    char *jid;           /* normalised bare JID: the account's name on the bus */
    char *resource;      /* requested resource, or NULL */
    char *password_file;
    char *host;          /* NULL: DNS SRV */
    unsigned port;       /* 0: default */
    int transport;       /* xpb_transport_kind */
    char *ws_url;        /* wss://, or ws:// to a loopback host with allow_plaintext_ws */
    int allow_plaintext_ws; /* ws:// (no TLS) allowed: only to a loopback host */
    char *ca_file;       /* NULL: system store */
    char *presence_show; /* NULL, away, chat, dnd, xa */
    char *presence_status;
    int send_presence, fetch_roster, stream_management;
    xpb_room_cfg *rooms;
    size_t n_rooms;
    int line;            /* where it was defined (0: flags) */
} xpb_account_cfg;

/* nats = { ... } (docs/configuration.md "nats"): the NATS JetStream bus
 * (bus.backend = "nats") and the account leases shared by many bridges. */
#define XPB_CONFIG_DEFAULT_LEASE_TTL_S 10u
#define XPB_CONFIG_MAX_SHARDS 65536u /* nats.shards: lease keys the accounts are grouped into */
typedef struct xpb_nats_config {
    char **servers;       /* nats://host:port */
    size_t n_servers;
    char *ca_file, *cert_file, *key_file; /* TLS */
    char *creds_file;     /* .creds (JWT + seed) */
    char *nkey_seed_file, *nkey_public;
    char *bridge_id;      /* NULL: <hostname>-<pid> */
    char *stream;         /* NULL: XPB_EVENTS */
    int replicas;         /* 0: 3 with 3+ servers, else 1 */
    int memory_storage;   /* storage = "memory" */
    unsigned long long max_age_s, max_bytes; /* stream retention (0: none) */
    int only_listed_servers; /* ignore the servers the cluster announces */
    int leases;           /* accounts owned by KV leases (default on with the nats back end) */
    unsigned lease_ttl_s; /* a claim lapses this long after its last renewal */
    unsigned max_sessions; /* accounts (shards) this bridge takes at most (0: no limit) */
    unsigned shards;      /* accounts grouped into this many lease keys (0: one per account) */
    int local_state; /* 1: XEP-0198 state, sends, MAM marks in the state dir, not NATS KV */
} xpb_nats_config;

typedef struct xpb_config {
    int log_level;       /* XPB_CFG_LOG_* */
    char *log_file;      /* NULL: stderr */
    char *events_url, *requests_url; /* NULL: the bus's defaults */
    char *private_dir;
    int allow_remote;
    size_t max_request_bytes;
    unsigned batch_max, batch_flush_us;
    unsigned dedupe_entries; /* bus: answered request ids remembered (XPB_CONFIG_DEDUPE_*) */
    int compact_records;  /* bus.compact_records: publish compact record forms */
    int allow_inline_credentials; /* bus.allow_inline_credentials: open may send a password */
    int allow_open_overrides; /* bus.allow_open_overrides: open may send files, host, port, TLS */
    char *metrics_listen; /* "ADDR:PORT"; "0" or "" disables */
    int metrics_allow_remote; /* metrics.allow_remote: a non-loopback listener */
    unsigned metrics_max_connections; /* metrics.max_connections */
    unsigned metrics_idle_timeout_s;  /* metrics.idle_timeout_s */
    unsigned backoff_reset_s;         /* limits.backoff_reset_s */
    unsigned backoff_max_s;           /* limits.backoff_max_s */
    unsigned connect_rate;            /* limits.connect_rate: new connections/s, 0 no limit */
    unsigned loops;                   /* limits.loops: worker loops for the sessions; 0: none;
                                       * XPB_CONFIG_LOOPS_AUTO (the default): one per core,
                                       * none on one core (xpb_config_loops) */
    unsigned queue_max;
    size_t max_stanza_bytes;
    unsigned muc_ping_s;  /* 0 disables the self-ping */
    int iq_answer_version; /* iq.answer_version: answer jabber:iq:version (XEP-0092) */
    char **iq_passthrough; /* iq.passthrough: get/set namespaces backends answer */
    size_t n_iq_passthrough;
    /* state.dir: the state directory (docs/durability.md); NULL: the default
     * (xpb_config_default_state_dir); "none": memory only. state.journal_max_bytes / _max_age_s: retention (0: the
     * store's defaults); state.sync = "sends" (default) | "full" | "normal", an
     * xpb_store_sync (docs/configuration.md). */
    char *state_dir;
    unsigned long long journal_max_bytes, journal_max_age_s;
    int state_sync;
    /* mam.catchup (default on; needs a state directory), mam.page_size,
     * mam.max_pages, mam.max_messages (per archive per run), mam.timeout_ms. */
    int mam_catchup;
    unsigned mam_page_size, mam_max_pages, mam_max_messages, mam_timeout_ms;
    int bus_nats;         /* bus.backend = "nats" (default "nng") */
    xpb_nats_config nats;
    xpb_account_cfg *accounts;
    size_t n_accounts;
} xpb_config;

/* What the command line said. Strings point into argv. */
#define XPB_CLI_MAX_ROOMS 64
typedef struct xpb_cli {
    const char *config_file;
    const char *jid, *password_file, *host, *transport, *ws_url, *ca_file;
    unsigned port;
    const char *rooms[XPB_CLI_MAX_ROOMS];
    size_t n_rooms;
    int no_presence, roster, allow_plaintext_ws;
    const char *events, *requests, *metrics, *log_level, *log_file, *state_dir;
    int check_config, version, help;
} xpb_cli;

void xpb_config_init(xpb_config *c);
void xpb_config_clear(xpb_config *c);

/* Parse libconfig text (name is the file name used in messages). On failure
 * returns XPB_EINVAL and err holds "NAME:LINE: text". */
int xpb_config_parse_string(xpb_config *c, const char *text, const char *name, char *err,
                            size_t errlen);
/* Same for a file; an unreadable file gives "FILE: reason". Only a regular
 * file is read (checked with fstat after a non-blocking open, so a FIFO or a
 * device never blocks the caller): anything else is XPB_EINVAL. */
int xpb_config_load(xpb_config *c, const char *path, char *err, size_t errlen);

/* argv -> cli. XPB_EINVAL with err on a usage error. */
int xpb_cli_parse(xpb_cli *cli, int argc, char **argv, char *err, size_t errlen);
/* Flags override the file's global settings; --jid adds one account (an
 * account of that name in the file is replaced). XPB_EINVAL with err. */
int xpb_config_apply_cli(xpb_config *c, const xpb_cli *cli, char *err, size_t errlen);

/* 1 when a running session for a would need no restart for b. */
int xpb_account_cfg_equal(const xpb_account_cfg *a, const xpb_account_cfg *b);
/* Deep copy; XPB_ENOMEM. */
int xpb_account_cfg_copy(xpb_account_cfg *dst, const xpb_account_cfg *src);
void xpb_account_cfg_clear(xpb_account_cfg *a);
const xpb_account_cfg *xpb_config_find(const xpb_config *c, const char *jid);

/* "debug" ... "error" -> XPB_CFG_LOG_*, or -1. */
/* The state directory used when neither state.dir nor --state-dir names
 * one: $XDG_STATE_HOME/xpbridge, else $HOME/.local/state/xpbridge (XDG Base
 * Directory spec). 0, or XPB_EINVAL when neither variable is set (or the
 * path does not fit), with buf holding the reason. */
int xpb_config_default_state_dir(char *buf, size_t len);
int xpb_config_log_level(const char *name);
const char *xpb_config_log_level_name(int level);
/* "starttls", "directtls", "websocket" -> xpb_transport_kind, or -1. */
int xpb_config_transport(const char *name);
/* The WebSocket URL rule: wss://HOST..., or ws://HOST... only when
 * allow_plaintext_ws is set and HOST is a loopback address (127.0.0.0/8, ::1,
 * localhost): RFC 7395 has no STARTTLS, so ws:// is plaintext. 0, or
 * XPB_EINVAL with why. */
int xpb_config_check_ws_url(const char *url, int allow_plaintext_ws, char *why, size_t whylen);

/* The worker loops c asks for, "auto" resolved with the cores online. */
unsigned xpb_config_loops(const xpb_config *c);

#endif
