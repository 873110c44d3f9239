#!/usr/bin/env bash
# Builds the throwaway LiteLLM proxy venv used only for side-by-side benchmarks (never a project dependency).
# Pins come from bench/litellm-requirements.txt (litellm 1.110.2 and the proxy's runtime deps, verified here);
# `litellm[proxy]` itself cannot be installed from PyPI (it needs an unpublished litellm-proxy).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LITELLM_VENV:-$here/.work/litellm-venv}"
if [ -x "$venv/bin/litellm" ]; then
    echo "$venv"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/litellm-requirements.txt" >&2
echo "$venv"
