# Sourced by tools/test.sh and tools/demo.sh: installs the Debian 12 packages
# xpbridge needs, only those missing, so a second run costs nothing.
XPB_BUILD_PKGS="cmake make gcc clang pkg-config protobuf-c-compiler libprotobuf-c-dev
  libnng-dev libexpat1-dev libssl-dev libevent-dev libidn2-dev libutf8proc-dev
  zlib1g-dev libcmocka-dev libxml2-dev libstrophe-dev libclang-rt-14-dev cppcheck
  prosody ejabberd python3-slixmpp openssl libc-ares-dev libconfig-dev
  dnsmasq-base"

xpb_install_deps() {
    local missing=() p
    for p in $XPB_BUILD_PKGS "$@"; do
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
