#!/usr/bin/env bash
# Launch recipe: switchc train on N ranks with expert parallelism E under OpenMPI's mpirun.
#   scripts/launch_mpirun.sh N E [more switchc train arguments...]
# e.g. scripts/launch_mpirun.sh 8 8 --config configs/runs/finetune-switch-base-8.json --set parallel.transport=nccl
#
# Ranks form N/E data-parallel replicas of E-rank expert-parallel groups; E must divide N and the expert count.
# Environment it uses or passes through:
#   OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK  set by mpirun; switchc reads rank and size through MPI and derives
#                                               the local rank with MPI_Comm_split_type (GPU = local rank % GPUs)
#   CUDA_VISIBLE_DEVICES                        which GPUs a node offers (NCCL transport)
#   NCCL_DEBUG=WARN, NCCL_SOCKET_IFNAME, ...    NCCL's own knobs, passed through with -x
#   OPENBLAS_NUM_THREADS                        CPU threads per rank (CPU runs: cores / ranks per node)
#   HOSTFILE                                    optional mpirun hostfile for several nodes
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,4p' "$0"; exit 2; }
N=$1 E=$2; shift 2
cd "$(dirname "$0")/.."
extra=()
[ -n "${HOSTFILE:-}" ] && extra+=(--hostfile "$HOSTFILE")
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
exec mpirun -np "$N" "${extra[@]}" --bind-to none \
  -x OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" -x NCCL_DEBUG="${NCCL_DEBUG:-WARN}" -x CUDA_VISIBLE_DEVICES \
  build/switchc train --set parallel.expert_parallel="$E" "$@"
