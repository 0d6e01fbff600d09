#!/usr/bin/env bash
# Installs Debian's chromium for the web view's browser test when it is
# missing. Never fails the build: where no package can be had (no apt-get,
# not root, no network), it says so and the browser test skips, naming why.
set -u
for b in chromium chromium-browser google-chrome google-chrome-stable; do
	if command -v "$b" >/dev/null 2>&1; then
		exit 0
	fi
done
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-chromium: no chromium and no apt-get; the web view's browser test will skip" >&2
	exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "ensure-chromium: chromium is missing and installing it needs root; the web view's browser test will skip" >&2
		exit 0
	fi
fi
echo "ensure-chromium: installing chromium with apt-get (for the web view's browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends chromium >/tmp/ensure-chromium.log 2>&1; then
	$SUDO apt-get update -q >>/tmp/ensure-chromium.log 2>&1
	if ! $SUDO apt-get install -y -q --no-install-recommends chromium >>/tmp/ensure-chromium.log 2>&1; then
		echo "ensure-chromium: apt-get could not install chromium (see /tmp/ensure-chromium.log); the web view's browser test will skip" >&2
		exit 0
	fi
fi
echo "ensure-chromium: chromium installed" >&2
