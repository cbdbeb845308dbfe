#!/usr/bin/env bash
# Training on a Cloud TPU pod slice (every host of the slice runs the same command).
#
#   TPU=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh configs/pmf_cifar100.py /mnt/shared/runs/pmf_c100
#
# Assumes the repository is checked out and installed (`pip install -e . 'jax[tpu]'`)
# at ~/jaxquant on every host, and that the workdir is on storage every host sees
# (a mounted bucket or NFS). jax.distributed finds the pod's coordinator itself
# (`--distributed`); each host loads only its share of every global batch.
set -euo pipefail
if [ $# -lt 2 ] || [ -z "${TPU:-}" ] || [ -z "${ZONE:-}" ]; then
  echo "usage: TPU=<tpu name> ZONE=<zone> launch/tpu_pod.sh <config.py> <workdir> [--config.key=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/jaxquant && python -m jaxquant.main --config $(printf %q "$config") --workdir $(printf %q "$workdir") --distributed$extra"
