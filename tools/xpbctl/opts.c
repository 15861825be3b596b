/* The one option parser of xpbctl (opts.h): reads argv into the commands'
 * tables, refuses values outside their limits with a sentence naming the
 * option and the limit, and writes --help pages from the same tables. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "xpbctl.h"

#define HELP_WIDTH 79    /* help lines stay within this many columns */
#define HELP_INDENT 4    /* options are indented like every section's text */
#define HELP_MAX_LEFT 22 /* a longer "--name ARG" puts its help on the next line */

const char *xpbctl_prog = "xpbctl";

typedef struct parser {
    const xpbctl_page *page;
    const xpbctl_table *tables;
    size_t n_tables;
    bool words_only; /* after "--" */
} parser;

int xpbctl_usage_error(const xpbctl_page *page, const char *what, const char *arg)
{
    const char *sep = arg ? ": " : "";
    if (page->name) {
        fprintf(stderr, "%s %s: %s%s%s\n", xpbctl_prog, page->name, what, sep, arg ? arg : "");
        fprintf(stderr, "usage: %s (see %s %s --help)\n", page->usage, xpbctl_prog, page->name);
    } else {
        fprintf(stderr, "%s: %s%s%s\n", xpbctl_prog, what, sep, arg ? arg : "");
        fprintf(stderr, "usage: %s (see %s --help)\n", page->usage, xpbctl_prog);
    }
    return XPBCTL_EXIT_USAGE;
}

/* usage error with a formatted message */
static int usage_errorf(const parser *p, const char *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_errorf(const parser *p, const char *arg, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return xpbctl_usage_error(p->page, what, arg);
}

int xpbctl_choice_value(const xpbctl_choice *t, const char *name)
{
    for (; t && t->name; t++)
        if (strcmp(t->name, name) == 0) return t->value;
    return -1;
}

static void *dest(const xpbctl_table *t, const xpbctl_opt *o)
{
    return (char *)t->base + o->offset;
}

/* ---- limits as text (help pages and errors say the same) ------------------ */
static void append(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *out, size_t outlen, const char *fmt, ...)
{
    size_t n = strlen(out);
    if (n >= outlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, outlen - n, fmt, ap);
    va_end(ap);
}

static void choices_text(const xpbctl_choice *c, char *out, size_t outlen)
{
    append(out, outlen, "one of ");
    for (size_t i = 0; c[i].name; i++)
        append(out, outlen, "%s%s", i ? ", " : "", c[i].name);
}

/* The option's limit ("1..86400000 ms", "at most 256 words"), or "". */
static void limit_text(const xpbctl_opt *o, char *out, size_t outlen)
{
    out[0] = '\0';
    switch (o->kind) {
    case XPBCTL_NUM:
        if (o->max == LLONG_MAX)
            append(out, outlen, "at least %lld", o->min);
        else
            append(out, outlen, "%lld..%lld", o->min, o->max);
        if (o->unit) append(out, outlen, " %s", o->unit);
        break;
    case XPBCTL_CHOICE:
        choices_text(o->choices, out, outlen);
        break;
    case XPBCTL_STR:
        if (o->max > 0) append(out, outlen, "%lld..%lld bytes", o->min, o->max);
        break;
    case XPBCTL_LIST:
        append(out, outlen, "repeatable, at most %lld times", o->max);
        break;
    case XPBCTL_WORDS:
        append(out, outlen, "at most %lld words", o->max);
        break;
    default:
        break;
    }
}

/* ---- storing one value ---------------------------------------------------- */
static bool parse_ll(const char *s, bool allow_minus, long long *out)
{
    char *end = NULL;
    if (!s[0] || s[0] == '+' || (s[0] == '-' && !allow_minus)) return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static int store_num(const parser *p, const xpbctl_opt *o, const char *val, xpbctl_num *n)
{
    long long v = 0;
    if (!parse_ll(val, o->min < 0, &v) || v < o->min || v > o->max) {
        char lim[128];
        limit_text(o, lim, sizeof(lim));
        return usage_errorf(p, val, "%s must be a number, %s", o->name, lim);
    }
    n->set = true;
    n->v = v;
    return 0;
}

static int store_choice(const parser *p, const xpbctl_opt *o, const char *val, xpbctl_num *n)
{
    int v = xpbctl_choice_value(o->choices, val);
    if (v < 0) {
        char lim[256] = "";
        choices_text(o->choices, lim, sizeof(lim));
        return usage_errorf(p, val, "unknown %s (%s)", o->name, lim);
    }
    n->set = true;
    n->v = v;
    return 0;
}

static int store_list(const parser *p, const xpbctl_opt *o, const char *val, xpbctl_list *l)
{
    if (l->n >= (size_t)o->max || l->n >= XPBCTL_LIST_MAX) {
        if (o->kind == XPBCTL_WORDS)
            return usage_errorf(p, NULL,
                                "too many %s words (at most %lld): quote them to pass one argument",
                                o->arg, o->max);
        return usage_errorf(p, val, "too many %s (at most %lld)", o->name, o->max);
    }
    l->v[l->n++] = val;
    return 0;
}

static int store_str(const parser *p, const xpbctl_opt *o, const char *val, const char **s)
{
    size_t len = strlen(val);
    if (o->max > 0 && (len < (size_t)o->min || len > (size_t)o->max))
        return usage_errorf(p, val, "%s must be %lld..%lld bytes", o->name ? o->name : o->arg,
                            o->min, o->max);
    *s = val;
    return 0;
}

static int store(const parser *p, const xpbctl_table *t, const xpbctl_opt *o, const char *val)
{
    const char *why = o->check && val ? o->check(val) : NULL;
    if (why) return usage_errorf(p, val, "%s %s", o->name ? o->name : o->arg, why);
    switch (o->kind) {
    case XPBCTL_FLAG:
        *(bool *)dest(t, o) = true;
        return 0;
    case XPBCTL_NUM:
        return store_num(p, o, val, dest(t, o));
    case XPBCTL_CHOICE:
        return store_choice(p, o, val, dest(t, o));
    case XPBCTL_LIST:
    case XPBCTL_WORDS:
        return store_list(p, o, val, dest(t, o));
    case XPBCTL_WORD:
        if (*(const char **)dest(t, o)) return usage_errorf(p, val, "more than one %s", o->arg);
        return store_str(p, o, val, dest(t, o));
    case XPBCTL_STR:
        return store_str(p, o, val, dest(t, o));
    }
    return usage_errorf(p, NULL, "internal: option kind %d", (int)o->kind);
}

/* ---- reading argv ----------------------------------------------------------- */
static const xpbctl_opt *find(const parser *p, const char *name, const xpbctl_table **in)
{
    for (size_t t = 0; t < p->n_tables; t++)
        for (const xpbctl_opt *o = p->tables[t].opts; o->help; o++)
            if (o->name && strcmp(o->name, name) == 0) {
                *in = &p->tables[t];
                return o;
            }
    return NULL;
}

static const xpbctl_opt *find_positional(const parser *p, const xpbctl_table **in)
{
    for (size_t t = 0; t < p->n_tables; t++)
        for (const xpbctl_opt *o = p->tables[t].opts; o->help; o++)
            if (!o->name) {
                *in = &p->tables[t];
                return o;
            }
    return NULL;
}

static int take_word(const parser *p, const char *word)
{
    const xpbctl_table *t = NULL;
    const xpbctl_opt *o = find_positional(p, &t);
    if (!o) return usage_errorf(p, word, "unexpected argument");
    return store(p, t, o, word);
}

static int take_option(const parser *p, const char *a, int argc, char **argv, int *i)
{
    const xpbctl_table *t = NULL;
    const xpbctl_opt *o = find(p, a, &t);
    if (!o && p->page->name) return usage_errorf(p, a, "unknown option");
    if (!o)
        return usage_errorf(p, a, "unknown global option (a command's options go after its name)");
    if (o->kind == XPBCTL_FLAG) return store(p, t, o, NULL);
    if (*i >= argc) return usage_errorf(p, a, "missing value for");
    return store(p, t, o, argv[(*i)++]);
}

static bool given(const void *d, xpbctl_opt_kind kind)
{
    switch (kind) {
    case XPBCTL_STR:
    case XPBCTL_WORD:
        return *(const char *const *)d != NULL;
    case XPBCTL_NUM:
    case XPBCTL_CHOICE:
        return ((const xpbctl_num *)d)->set;
    case XPBCTL_FLAG:
        return *(const bool *)d;
    case XPBCTL_LIST:
    case XPBCTL_WORDS:
        return ((const xpbctl_list *)d)->n > 0;
    }
    return false;
}

static int check_required(const parser *p)
{
    for (size_t t = 0; t < p->n_tables; t++)
        for (const xpbctl_opt *o = p->tables[t].opts; o->help; o++) {
            if (!o->required) continue;
            if (!given(dest(&p->tables[t], o), o->kind))
                return usage_errorf(p, NULL, "%s is required", o->name ? o->name : o->arg);
        }
    return 0;
}

int xpbctl_parse(const xpbctl_page *page, const xpbctl_table *tables, size_t n_tables, int argc,
                 char **argv, int *i, bool stop_at_word)
{
    parser p = {.page = page, .tables = tables, .n_tables = n_tables};
    while (*i < argc) {
        const char *a = argv[*i];
        bool is_word = p.words_only || a[0] != '-' || a[1] == '\0';
        if (is_word && stop_at_word) return 0;
        (*i)++;
        int rc = 0;
        if (!p.words_only && strcmp(a, "--") == 0) {
            p.words_only = true;
        } else if (is_word) {
            rc = take_word(&p, a);
        } else if (strcmp(a, "--help") == 0) {
            xpbctl_help_print(page, tables, n_tables);
            return XPBCTL_PARSE_HELP;
        } else {
            rc = take_option(&p, a, argc, argv, i);
        }
        if (rc) return rc;
    }
    return stop_at_word ? 0 : check_required(&p);
}

/* ---- help pages ----------------------------------------------------------- */
static size_t left_len(const xpbctl_opt *o)
{
    size_t n = o->name ? strlen(o->name) : 0;
    if (o->arg) n += (o->name ? 1 : 0) + strlen(o->arg);
    return n;
}

/* The help column: after the widest "--name ARG" of all tables, at most
 * HELP_MAX_LEFT wide, plus two spaces. */
static size_t help_column(const xpbctl_table *tables, size_t n_tables)
{
    size_t w = strlen("--help");
    for (size_t t = 0; t < n_tables; t++)
        for (const xpbctl_opt *o = tables[t].opts; o->help; o++) {
            size_t n = left_len(o);
            if (n > w && n <= HELP_MAX_LEFT) w = n;
        }
    return HELP_INDENT + w + 2;
}

static void pad(size_t from, size_t to)
{
    for (; from < to; from++)
        putchar(' ');
}

/* The help lines of o, each at col; its limits after the last line, or on
 * a line of their own when they do not fit. */
static void print_opt_help(const xpbctl_opt *o, size_t col)
{
    char lim[320] = "", suffix[400] = "";
    limit_text(o, lim, sizeof(lim));
    if (o->required) append(suffix, sizeof(suffix), "required%s", lim[0] ? "; " : "");
    append(suffix, sizeof(suffix), "%s", lim);
    const char *line = o->help;
    size_t last = 0;
    for (bool first = true; *line; first = false) {
        size_t n = strcspn(line, "\n");
        if (!first) pad(0, col);
        printf("%.*s", (int)n, line);
        last = n;
        line += n;
        if (*line == '\n') line++;
        if (*line) putchar('\n');
    }
    if (suffix[0] && col + last + strlen(suffix) + 3 <= HELP_WIDTH) {
        printf(" (%s)", suffix);
    } else if (suffix[0]) {
        putchar('\n');
        pad(0, col);
        printf("(%s)", suffix);
    }
    putchar('\n');
}

static void print_opt(const xpbctl_opt *o, size_t col)
{
    size_t n = HELP_INDENT + left_len(o);
    pad(0, HELP_INDENT);
    printf("%s%s%s", o->name ? o->name : "", o->name && o->arg ? " " : "", o->arg ? o->arg : "");
    if (o->kind == XPBCTL_WORDS) {
        fputs("...", stdout);
        n += 3;
    }
    if (n + 2 > col) {
        putchar('\n');
        n = 0;
    }
    pad(n, col);
    print_opt_help(o, col);
}

static void print_tables(const xpbctl_table *tables, size_t n_tables)
{
    size_t col = help_column(tables, n_tables);
    for (size_t t = 0; t < n_tables; t++) {
        printf("\n%s\n", tables[t].title);
        if (tables[t].intro) fputs(tables[t].intro, stdout);
        if (!tables[t].opts[0].help && !tables[t].intro)
            puts("    none of its own (see GLOBAL OPTIONS)");
        for (const xpbctl_opt *o = tables[t].opts; o->help; o++)
            print_opt(o, col);
        if (t + 1 == n_tables) {
            pad(0, HELP_INDENT);
            fputs("--help", stdout);
            pad(HELP_INDENT + 6, col);
            puts("print this text");
        }
    }
}

void xpbctl_help_print(const xpbctl_page *page, const xpbctl_table *tables, size_t n_tables)
{
    printf("NAME\n    %s%s%s - %s\n", xpbctl_prog, page->name ? " " : "", page->name ? page->name : "",
           page->summary);
    printf("\nSYNOPSIS\n%s", page->synopsis);
    printf("\nDESCRIPTION\n%s", page->description);
    if (page->before_opts) printf("\n%s", page->before_opts);
    print_tables(tables, n_tables);
    printf("\nEXIT STATUS\n%s", page->exit_status);
    printf("\nEXAMPLES\n%s", page->examples);
}
