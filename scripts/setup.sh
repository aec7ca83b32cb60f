#!/usr/bin/env bash
# Set up (or update) the project's virtual environment in .venv: ./scripts/setup.sh [--dev]
# --dev adds the test tools. Needs Python 3.11 (python3.11, or python3 if that is 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "jueju needs Python 3.11+"'
[ -x .venv/bin/python ] || "$python" -m venv .venv
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" -e .
# --dev: also JAX and PyTorch, for the backend matrix (tests/test_backends.py); numpy etc. stay as pinned
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-backends.txt -c requirements.txt
fi

# Graphviz draws models/<form>/model.png; without it training only warns.
if ! command -v dot >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "setup: graphviz not installed (model diagram will be skipped)"
  else
    echo "setup: install graphviz (e.g. sudo apt-get install graphviz) to get the model diagram"
  fi
fi

# --dev: tests/test_browser.py drives Debian's Chromium (it skips without one); a CJK font makes its
# screenshot readable. Never fails the setup.
if [ "${1:-}" = "--dev" ]; then
  packages=""
  [ -x /usr/bin/chromium ] || packages="chromium"
  if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then packages="$packages fonts-wqy-zenhei"; fi
  if [ -n "$packages" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null) \
        || echo "setup: could not install$packages (the browser test will skip)"
    else
      echo "setup: install$packages (e.g. sudo apt-get install$packages) to run the browser test"
    fi
  fi
fi
