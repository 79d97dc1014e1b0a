#!/bin/sh
# Installs the Debian packages that building and testing sluice need, only
# those missing. Run as root (or with sudo available) on Debian 12.
set -e
packages="g++ make pkg-config libevent-dev libpcre2-dev libssl-dev zlib1g-dev \
libjansson-dev libjwt-dev libgtest-dev openssl curl"
# The fuzz targets need clang and its libFuzzer runtime.
[ "${SLUICE_DEPS_FUZZ:-}" = 1 ] && packages="$packages clang libclang-rt-14-dev"

missing=
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "contrib/deps.sh: installing$missing"
sudo=
[ "$(id -u)" -ne 0 ] && sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $missing
