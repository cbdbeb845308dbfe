#!/usr/bin/env bash
# The GPU check of jaxquant in one command (bench/gpu_check.py says what it measures).
#
# Prepare once, here (the device machine has no network; what it lacks travels with the
# working tree in ignored folders):
#   bash bench/gpu_check.sh --fetch        # wheels into .whl/, the CIFAR-10 JPEG tarball into .data/
# On the device (the `device` tool's run, carry [".whl", ".data"], timeout_s 600):
#   bash bench/gpu_check.sh                # ~9 minutes; results in bench/results/gpu_*.{json,md} (and $OUT)
# Anywhere, without a GPU (the test suite runs this):
#   bash bench/gpu_check.sh --dry-run
#
# Wheels: the device image (../.library/device/KINDS.md) has jax/jaxlib with CUDA, flax,
# optax, orbax-checkpoint, torch, matplotlib, tqdm, pillow, scikit-learn, absl-py, pyyaml,
# protobuf; it lacks ml-collections and tensorboardX (both pure Python).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(ml-collections==1.1.0 tensorboardX==2.6.5)
TARBALL=${CIFAR_TARBALL:-../shared/data/cifar10-jpeg.tar.gz}
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--fetch" ]]; then
  mkdir -p .whl .data
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  if [[ -f "$TARBALL" ]]; then cp "$TARBALL" .data/cifar10-jpeg.tar.gz; else echo "no $TARBALL: (b) and (c) will use random JPEGs"; fi
  ls -la .whl .data
  exit 0
fi

if [[ "${1:-}" == "--dry-run" ]]; then
  shift
  exec "$PY" bench/gpu_check.py --dry-run "$@"
fi

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
"$PY" -c "import jax, jaxquant; print('jaxquant', jaxquant.__version__, 'jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

CIFAR=""
if [[ -f .data/cifar10-jpeg.tar.gz ]]; then
  mkdir -p /tmp/cifar && tar xzf .data/cifar10-jpeg.tar.gz -C /tmp/cifar
  CIFAR=$(dirname "$(find /tmp/cifar -maxdepth 3 -type d -name train | head -1)")
fi
# 9 minutes at most for (a) + (b) + (c): a 480 s budget plus start-up and the last epoch
status=0
timeout 540 "$PY" bench/gpu_check.py --budget 480 ${CIFAR:+--cifar "$CIFAR"} "$@" 2>&1 | tee /tmp/gpu_check.log || status=$?
if [[ -n "${OUT:-}" ]]; then cp bench/results/gpu_*.json bench/results/gpu_*.md /tmp/gpu_check.log "$OUT"/ 2>/dev/null || true; fi
exit $status
