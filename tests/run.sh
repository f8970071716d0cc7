#!/usr/bin/env bash
# Set up and run the whole test suite: the fast suite and the real-tool tests on the default python3
# (mitmproxy 11), then the fast suite again on Python 3.12 where present (mitmproxy 12).
# Needs only Python >= 3.11, pip, Node/npm and git; installs everything else itself (chromium with apt).
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {  # setup PYTHON... VENV
  local venv=${*: -1}
  "${@:1:$#-1}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -e '.[test]'
}

# A real headless browser renders the HTML report in tests/report/test_html.py (Debian's chromium; CI runs as root).
command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

setup python3 .venv
.venv/bin/python -m pytest -m "not realtool" -p no:cacheprovider
.venv/bin/python -m pytest -m realtool -p no:cacheprovider

# Python 3.12 where present: a python3.12 on PATH, or a pyenv-installed 3.12 (pyenv shims exist even when the
# version is not selected, so each candidate is tried for real).
py312=()
if python3.12 -c "import sys" >/dev/null 2>&1; then
  py312=(python3.12)
elif command -v pyenv >/dev/null 2>&1; then
  version=$(pyenv versions --bare 2>/dev/null | grep '^3\.12' | tail -n 1 || true)
  if [ -n "$version" ] && PYENV_VERSION=$version python3 -c "import sys" >/dev/null 2>&1; then
    py312=(env "PYENV_VERSION=$version" python3)
  fi
fi
if [ ${#py312[@]} -eq 0 ]; then
  echo "Python 3.12 not found: the mitmproxy 12 run is skipped"
  exit 0
fi
setup "${py312[@]}" .venv312
.venv312/bin/python -m pytest -m "not realtool" -p no:cacheprovider
