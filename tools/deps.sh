# Sourced by tools/test.sh and tools/demo.sh: installs the Debian 12 packages
# xpbridge needs, only those missing, and brings the libraries that parse or
# carry untrusted input up to the archive's newest version (security updates),
# so a second run costs nothing.
XPB_BUILD_PKGS="cmake make gcc clang pkg-config protobuf-c-compiler libprotobuf-c-dev
  libnng-dev libexpat1-dev libssl-dev libevent-dev libidn2-dev libutf8proc-dev
  zlib1g-dev libcmocka-dev libxml2-dev libstrophe-dev libclang-rt-14-dev cppcheck
  prosody ejabberd python3-slixmpp openssl libc-ares-dev libconfig-dev
  dnsmasq-base libsystemd-dev scdoc man-db bsdextrautils libsqlite3-dev
  nats-server libnats-dev"

# Only the test command needs these: the package build and its checks
# (tools/check_package.sh). tools/test.sh passes them to xpb_install_deps.
XPB_TEST_PKGS="debhelper dpkg-dev lintian systemd procps prometheus tuned"

# The client libraries' tests (clients/): protoc's classes for Python, and
# node with npm and a C++ compiler for the nanomsg addon. A nodejs from
# another archive (NodeSource) bundles npm and conflicts with Debian's npm
# package, so npm is asked for only when there is no npm command.
XPB_CLIENT_PKGS="python3-protobuf protobuf-compiler nodejs g++"

xpb_install_deps() {
    local missing=() p
    local npm_pkg=""
    command -v npm >/dev/null 2>&1 || npm_pkg=npm
    for p in $XPB_BUILD_PKGS $XPB_CLIENT_PKGS $npm_pkg "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "xpbridge: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # Prosody and ejabberd are test peers started by our scripts on 127.0.0.1:
    # keep their packages from starting system-wide daemons on 0.0.0.0.
    # (dnsmasq-base, the SRV test's DNS server, is the bare binary: no service.)
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        "${missing[@]}" >/dev/null || rc=$?
    [ -z "$made_policy" ] || $sudo rm -f "$policy"
    return $rc
}

# The libraries that parse or carry untrusted input (XML from the network, TLS,
# records from the bus). A fresh image may ship an older update than the
# archive has: the bridge must run on the archive's newest one.
XPB_PARSER_PKGS="libexpat1 libexpat1-dev libssl3 libssl-dev
  libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-openssl-2.1-7
  libevent-pthreads-2.1-7 libevent-dev libnng1 libnng-dev libprotobuf-c1
  libprotobuf-c-dev libidn2-0 libidn2-dev libutf8proc2 libutf8proc-dev"

# Package lists older than this are refreshed before comparing versions.
XPB_APT_LISTS_MAX_AGE_MIN=${XPB_APT_LISTS_MAX_AGE_MIN:-360}

# Prints "pkg installed candidate" for each installed package of $@ whose
# candidate version is newer than the installed one.
xpb_outdated() {
    apt-cache policy "$@" 2>/dev/null | awk '
        /^[^ ]/ { pkg = $1; sub(":$", "", pkg); inst = ""; next }
        $1 == "Installed:" { inst = $2; next }
        $1 == "Candidate:" && inst != "" && inst != "(none)" && $2 != "(none)" && $2 != inst {
            print pkg, inst, $2 }'
}

xpb_upgrade_parsers() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    local fresh
    fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*_InRelease' \
        -mmin -"$XPB_APT_LISTS_MAX_AGE_MIN" 2>/dev/null | head -n 1)
    [ -n "$fresh" ] || $sudo apt-get update -qq || return 1
    local outdated
    outdated=$(xpb_outdated $XPB_PARSER_PKGS)
    [ -n "$outdated" ] || return 0
    local names
    names=$(printf '%s\n' "$outdated" | awk '{print $1}' | tr '\n' ' ')
    echo "xpbridge: upgrading parser libraries: $(printf '%s\n' "$outdated" |
        awk '{printf "%s%s %s -> %s", (NR > 1 ? ", " : ""), $1, $2, $3}')" >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --only-upgrade \
        $names >/dev/null
}
