#!/bin/sh
# Makes sure Debian's Chromium is at /usr/bin/chromium before the dashboard test drives it with
# playwright-core (never a browser download). Where it is missing, installs Debian's chromium
# with apt-get: as root, or through sudo when it is there; otherwise says how.
set -e
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  SUDO="none"
fi
if [ "$SUDO" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "/usr/bin/chromium not found: installing Debian's chromium" >&2
  $SUDO apt-get update -q >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
  [ -x /usr/bin/chromium ] && exit 0
fi
echo "error: the dashboard test needs Chromium at /usr/bin/chromium; install it with 'sudo apt-get install chromium' (Debian)" >&2
exit 1
