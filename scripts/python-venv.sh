#!/usr/bin/env bash
# Creates .venv at the repository root with the pinned Python packages that the
# cross-language interop test (tests/interop/publish.py, run by
# tests/python_interop.rs) needs: grpcio, grpcio-tools (protoc for Python) and PyNaCl;
# and aiosmtpd, the SMTP server of tests/interop/smtp_sink.py that the alert tests
# (src/runner/alert.rs) send email to.
#
# Idempotent: an existing .venv whose packages already match the pins is left as is.
# Usage: scripts/python-venv.sh            (PYTHON=python3.12 to pick another interpreter)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

# Pinned together: grpcio-tools must match grpcio, and the protobuf runtime must be one
# it supports (>=7.35.1,<8), since the code it generates checks the runtime's version.
requirements=(
  "grpcio==1.85.1"
  "grpcio-tools==1.85.1"
  "protobuf==7.36.2"
  "pynacl==1.6.2"
  "aiosmtpd==1.4.6"
  "atpublic==9.0.0"
  "attrs==26.1.0"
)

if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv"
fi

satisfied() {
  "$venv/bin/python" - "${requirements[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

if satisfied; then
  echo "$venv already has ${requirements[*]}"
  exit 0
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
satisfied || { echo "error: $venv does not have ${requirements[*]} after pip install" >&2; exit 1; }
"$venv/bin/python" -c "import grpc, grpc_tools.protoc, nacl.signing, aiosmtpd.controller"
echo "$venv ready: ${requirements[*]}"
