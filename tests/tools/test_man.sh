#!/usr/bin/env bash
# The man pages match their sources: every option of each program's --help (and
# of each xpbctl command's) is in its man page and the other way round; every
# command `xpbctl --help` lists has a section in xpbctl(1); every setting of
# docs/configuration.md is in xpbridge.conf(5).
#   test_man.sh MAN_DIR XPBRIDGE XPBCTL XPB_BENCH XPB_GEN CONFIGURATION_MD XPB_ARCHIVE
set -euo pipefail
man_dir=$1 xpbridge=$2 xpbctl=$3 bench=$4 gen=$5 conf_md=$6 archive=$7
fail=0
page() { MANWIDTH=200 man -l "$man_dir/$1" 2>/dev/null | col -b; }
options() { grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }

compare() { # NAME HELP_OPTIONS MAN_OPTIONS
    local only_help only_man
    only_help=$(comm -23 <(printf '%s\n' "$2") <(printf '%s\n' "$3"))
    only_man=$(comm -13 <(printf '%s\n' "$2") <(printf '%s\n' "$3"))
    if [ -n "$only_help" ]; then echo "$1: in --help, not in the man page: $only_help"; fail=1; fi
    if [ -n "$only_man" ]; then echo "$1: in the man page, not in --help: $only_man"; fail=1; fi
}

for p in "xpbridge.8 $xpbridge" "xpb-bench.1 $bench" "xpb-gen.1 $gen"; do
    set -- $p
    compare "$1" "$("$2" --help | options)" "$(page "$1" | options)"
done

# xpbctl and xpb-archive: the main page plus one section per command.
for p in "xpbctl $xpbctl XPBCTL_COMMANDS" "xpb-archive $archive XPB_ARCHIVE_COMMANDS"; do
    set -- $p
    commands=$("$2" --help | awk '/^COMMANDS/ {on = 1; next} /^[A-Z]/ {on = 0} on && NF {print $1}')
    [ -n "$commands" ] || { echo "$1 --help lists no commands"; fail=1; }
    help_opts=$({ "$2" --help; for c in $commands; do "$2" "$c" --help; done; } | options)
    compare "$1.1" "$help_opts" "$(page "$1.1" | options)"
    cmd_page=$(page "$1.1")
    for c in $commands; do
        grep -q "^COMMAND $(tr a-z A-Z <<<"$c")\$" <<<"$cmd_page" ||
            { echo "$1.1: no section for the command $c (cmake/man.cmake $3)"; fail=1; }
    done
done

# xpbridge.conf(5): the first column of every settings table.
# (A row may name several: "`host`, `port`".)
settings=$(grep -E '^\| `[a-z_]+`' "$conf_md" | cut -d'|' -f2 | grep -oE '`[a-z_]+`' | tr -d '`' |
    sort -u)
conf_page=$(page xpbridge.conf.5)
for s in $settings; do
    grep -qE "^ +([a-z_]+, )*$s(, [a-z_]+)*\$" <<<"$conf_page" ||
        { echo "xpbridge.conf.5: setting $s missing"; fail=1; }
done
[ -n "$settings" ] || { echo "no settings found in $conf_md"; fail=1; }

[ $fail -eq 0 ] && echo "man pages match --help and docs/configuration.md"
exit $fail
