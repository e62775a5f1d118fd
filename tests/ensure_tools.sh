#!/bin/sh
# Makes sure the tools the test suite runs for real are here before it starts: an etcd server on
# the PATH (tests start their own throwaway etcd on free ports) and Debian's Chromium at
# /usr/bin/chromium (the dashboard test drives it with playwright-core; never a browser download),
# and Python's grpcio (gRPC C-core with its xDS client: the xDS test's second client).
# What is missing is installed from Debian with one apt-get update: as root, or through sudo
# when it is there; otherwise it says how.
set -e
missing=""
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
/usr/bin/python3 -c "import grpc" >/dev/null 2>&1 || missing="$missing python3-grpcio"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  SUDO="none"
fi
if [ "$SUDO" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's$missing for the tests" >&2
  $SUDO apt-get update -q >&2
  # shellcheck disable=SC2086 # one word per package
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi
command -v etcd >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && [ -x /usr/bin/chromium ] &&
  /usr/bin/python3 -c "import grpc" >/dev/null 2>&1 && exit 0
echo "error: the tests need etcd on the PATH, Chromium at /usr/bin/chromium and Python's grpcio (gRPC C-core, the xDS test's client); install them with 'sudo apt-get install$missing' (Debian)" >&2
exit 1
