#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Playwright (Playwright's own browser
# downloads are not possible offline). Install it when missing and we are allowed to.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser test..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] && exit 0
fi
echo "warning: /usr/bin/chromium is missing and could not be installed (run as root:" \
     "apt-get install chromium); the browser test will be skipped outside CI" >&2
exit 0
