#!/usr/bin/env bash
# The bash completion of xpbctl (deploy/bash-completion/xpbctl): commands,
# each command's options, and accounts from `xpbctl sessions` (a stand-in
# xpbctl answers sessions; --help comes from the real one).
#   test_completion.sh XPBCTL COMPLETION_FILE
set -uo pipefail
real=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/xpbctl" <<STUB
#!/usr/bin/env bash
for a in "\$@"; do
    if [ "\$a" = sessions ]; then
        printf 'ACCOUNT JID STATE\nbot@example.com bot@example.com/r online\nalice@example.org - stopped\n'
        exit 0
    fi
done
exec "$real" "\$@"
STUB
chmod +x "$work/xpbctl"
. "$2"
fail=0
complete_words() { # WORDS...: COMPREPLY for the last word
    COMP_WORDS=("$work/xpbctl" "$@")
    COMP_CWORD=$#
    COMPREPLY=()
    _xpbctl
    printf '%s\n' "${COMPREPLY[@]}" | sort
}
expect() { # DESCRIPTION WANT GOT
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: want [$(tr '\n' ' ' <<<"$2")] got [$(tr '\n' ' ' <<<"$3")]"
        fail=1
    else
        echo "ok: $1"
    fi
}
expect "commands after xpbctl s" "$(printf 'send\nsessions\nstatus')" "$(complete_words s)"
expect "an option of send with a prefix" "--thread" "$(complete_words send --thr)"
got=$(complete_words send --)
for o in --account --to --thread --type --xml --requests --timeout --help; do
    grep -qx -- "$o" <<<"$got" || { echo "FAIL: send -- lacks $o"; fail=1; }
done
expect "accounts after --account" "$(printf 'alice@example.org\nbot@example.com')" \
    "$(complete_words send --account '')"
expect "accounts with a prefix" "bot@example.com" "$(complete_words --requests ipc:///x send --account b)"
expect "commands after help" "$(printf 'join')" "$(complete_words help jo)"
[ $fail -eq 0 ] && echo "completion ok"
exit $fail
