#!/usr/bin/env bash
# `ansible-test sanity` on plugins/ and tests/unit/plugins/ of this checkout (called by `make lint`).
# Extra arguments go to ansible-test, e.g. `tools/sanity.sh --test pylint`.
#
# ansible-test only runs from a real .../ansible_collections/<namespace>/<name> directory (it resolves the
# .collections/ symlink and then refuses the checkout), so this script, in a private mount namespace (unshare,
# util-linux; root, or an unprivileged user namespace otherwise):
#   - bind-mounts the checkout read-only on <tmp>/ansible_collections/webstack/django,
#   - bind-mounts <tmp>/output on its tests/output/ (ansible-test's only output directory),
#   - bind-mounts <tmp>/cache on ~/.ansible/test/cache/ with an offline stand-in for get-pip.py: ansible-test
#     bootstraps pip into each sanity virtualenv with a get-pip.py it downloads from ci-files.testing.ansible.com,
#     which CI cannot reach. The stand-in installs the same pip version from the package index instead, with the
#     pip of .venv (`pip --python`).
# Nothing outside the namespace sees these mounts. The sanity virtualenvs stay cached in ~/.ansible/test/venv/
# (the first run builds them from the package index, later runs reuse them).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
bin=${VENV_BIN:-$root/.venv/bin}
collection=ansible_collections/webstack/django

if [ -z "${_WEBSTACK_SANITY_TMP:-}" ]; then
  for tool in "$bin/python" "$bin/ansible-test"; do
    [ -x "$tool" ] || { echo "sanity.sh: $tool not found (run make venv)" >&2; exit 1; }
  done
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/webstack-sanity.XXXXXX")
  # The mounts live only in the child namespace: here $tmp holds empty directories, safe to remove.
  trap 'rm -rf --one-file-system "$tmp"' EXIT
  mkdir -p "$tmp/$collection" "$tmp/output" "$tmp/cache" "$root/tests/output" "$HOME/.ansible/test/cache"
  userns=()
  [ "$(id -u)" -eq 0 ] || userns=(--user --map-root-user)
  rc=0
  _WEBSTACK_SANITY_TMP=$tmp unshare "${userns[@]}" --mount --propagation private -- \
    bash "$root/tools/sanity.sh" "$@" || rc=$?
  exit "$rc"
fi

# --- inside the private mount namespace ------------------------------------------------------------------------
tmp=$_WEBSTACK_SANITY_TMP
python=$bin/python
pyversion=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The pip version ansible-test bootstraps (24.2 for ansible-core 2.19) names its get-pip cache file.
pip_version=$("$python" -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$pyversion"'"))["pip"])')

cat >"$tmp/cache/get_pip_${pip_version//./_}.py" <<EOF
"""Offline stand-in for get-pip.py ${pip_version}, written by tools/sanity.sh.

ansible-test runs it with the sanity virtualenv's python as: [pip options] pip==${pip_version} --no-setuptools --no-wheel
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call(["$python", "-m", "pip", "--python", sys.executable, "install"] + args))
EOF

mount --bind -o ro "$root" "$tmp/$collection"
mount --bind "$tmp/output" "$tmp/$collection/tests/output"
mount --bind "$tmp/cache" "$HOME/.ansible/test/cache"

cd "$tmp/$collection"
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
export PYTHONDONTWRITEBYTECODE=1
exec "$bin/ansible-test" sanity --local --python "$pyversion" plugins/ tests/unit/plugins/ "$@"
