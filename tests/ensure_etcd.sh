#!/bin/sh
# Makes sure an etcd server binary is on the PATH before the test suite starts its own throwaway
# etcd on free ports. Where it is missing, installs Debian's etcd-server (as root) or says how.
set -e
if command -v etcd >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "etcd not found on PATH: installing Debian's etcd-server" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2
  command -v etcd >/dev/null 2>&1 && exit 0
fi
echo "error: the tests need etcd on the PATH; install it with 'sudo apt-get install etcd-server' (Debian) or from https://etcd.io" >&2
exit 1
