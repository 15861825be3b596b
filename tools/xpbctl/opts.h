/* xpbctl's option tables: each command declares its options (name, kind of
 * value, help text, where the value goes, its limits) in a table, and one
 * parser reads them all and writes each command's --help from the same
 * tables, so the help always lists every option and every limit. */
#ifndef XPBCTL_OPTS_H
#define XPBCTL_OPTS_H

#include <stdbool.h>
#include <stddef.h>

/* The program named in errors, usage lines and help pages: "xpbctl", or
 * another tool that links this parser and the bus client (xpb-archive). */
extern const char *xpbctl_prog;

typedef enum xpbctl_opt_kind {
    XPBCTL_FLAG,   /* no value: bool, set to true */
    XPBCTL_STR,    /* const char * (into argv); min..max bytes when max > 0 */
    XPBCTL_NUM,    /* xpbctl_num, a decimal integer in min..max */
    XPBCTL_CHOICE, /* xpbctl_num, the value of one of .choices */
    XPBCTL_LIST,   /* xpbctl_list, repeatable, at most max values */
    XPBCTL_WORDS,  /* positional words (no name): xpbctl_list, at most max */
    XPBCTL_WORD,   /* one positional word (no name): const char * */
} xpbctl_opt_kind;

typedef struct xpbctl_choice {
    const char *name;
    int value;
} xpbctl_choice;

typedef struct xpbctl_num {
    bool set;
    long long v;
} xpbctl_num;

#define XPBCTL_LIST_MAX 256 /* the most values any list option may take */
typedef struct xpbctl_list {
    const char *v[XPBCTL_LIST_MAX];
    size_t n;
} xpbctl_list;

typedef struct xpbctl_opt {
    const char *name; /* "--account"; NULL for a positional (WORDS, WORD) */
    const char *arg;  /* the value's name in the help ("JID"); NULL for a flag */
    xpbctl_opt_kind kind;
    size_t offset;    /* of the destination inside the table's struct */
    const char *help; /* lines separated by '\n', limits left out: they are added */
    long long min, max;
    const char *unit;             /* NUM: shown after the range ("ms") */
    const xpbctl_choice *choices; /* CHOICE: ends with {NULL, 0} */
    /* NULL, or why value is refused (a phrase: "must be a bare JID"). */
    const char *(*check)(const char *value);
    bool required;
} xpbctl_opt;

/* One table and the struct its offsets point into. */
typedef struct xpbctl_table {
    const xpbctl_opt *opts; /* ends with {0}: an entry without help */
    void *base;
    const char *title; /* its section in --help: "OPTIONS", "GLOBAL OPTIONS" */
    const char *intro; /* NULL, or lines printed under the title */
} xpbctl_table;

/* What a help page says besides its options (texts indented as printed). */
typedef struct xpbctl_page {
    const char *name;        /* "send"; NULL for xpbctl's own page */
    const char *summary;     /* one line, also in xpbctl --help's list */
    const char *usage;       /* one line, printed after a usage error */
    const char *synopsis;    /* lines */
    const char *description; /* paragraphs */
    const char *before_opts; /* NULL, or sections printed before the options */
    const char *exit_status;
    const char *examples;
} xpbctl_page;

#define XPBCTL_PARSE_HELP 1 /* --help was printed: exit 0 */

/* Reads argv[*i..argc) into the tables. With stop_at_word, stops at the
 * first word that is not an option or an option's value (a command name),
 * leaving *i on it; otherwise reads to the end and checks required options.
 * "--" ends the options. 0, XPBCTL_PARSE_HELP, or XPBCTL_EXIT_USAGE with
 * the reason and the usage printed on standard error. */
int xpbctl_parse(const xpbctl_page *page, const xpbctl_table *tables, size_t n_tables, int argc,
                 char **argv, int *i, bool stop_at_word);

/* Writes the help page: NAME, SYNOPSIS, DESCRIPTION, one section per table,
 * EXIT STATUS, EXAMPLES. */
void xpbctl_help_print(const xpbctl_page *page, const xpbctl_table *tables, size_t n_tables);

/* "xpbctl CMD: what[: arg]" and the usage line on standard error; returns
 * XPBCTL_EXIT_USAGE. */
int xpbctl_usage_error(const xpbctl_page *page, const char *what, const char *arg);

/* The value of choice name in t, or -1 when absent. */
int xpbctl_choice_value(const xpbctl_choice *t, const char *name);

#endif
