#!/usr/bin/env bash
# Multi-node GPU training on SLURM with JAX's multi-controller runtime.
#
#   sbatch --nodes=4 launch/slurm.sh configs/pmf_cifar100.py runs/pmf_c100 [--config.x=y ...]
#
# One process per node drives all of that node's GPUs; jax.distributed reads the
# coordinator address, process count and index from SLURM's environment
# (`--distributed`). Every process runs the same command; each loads only its
# share of every global batch, process 0 writes logs, metrics and exports, and
# all of them write their shards of each orbax checkpoint, so the workdir must be
# on a filesystem every node sees. Rerunning the same sbatch line resumes.
#SBATCH --job-name=jaxquant
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch --nodes=N launch/slurm.sh <config.py> <workdir> [--config.key=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
srun --kill-on-bad-exit=1 python -m jaxquant.main --config "$config" --workdir "$workdir" \
  --distributed "$@"
