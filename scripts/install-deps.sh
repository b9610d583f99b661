#!/usr/bin/env bash
# Installs what Tally builds with, from Debian packages. Safe to run again: apt-get
# skips what is already there. Needs root (or sudo).
set -euo pipefail
packages=(
  cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
  librocksdb-dev libflatbuffers-dev flatbuffers-compiler
  libboost-dev libboost-system-dev
  libspdlog-dev libfmt-dev libcli11-dev libsimdjson-dev libssl-dev libxxhash-dev liblz4-dev
  libgtest-dev libgmock-dev librapidcheck-dev libbenchmark-dev
  curl
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
