#!/usr/bin/env bash
# One rank of a 3-rank job dies (SIGKILL), fails (an error), or hangs; the whole job must exit non-zero within
# 60 seconds each time (the collective timeout in mpi_fault is 10 s). Usage: fault_test.sh MPIEXEC MPI_FAULT_BINARY
set -u
mpiexec=$1 bin=$2
status=0
for mode in kill error hang; do
  start=$(date +%s)
  timeout 60 "$mpiexec" --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader \
    --mca btl_vader_single_copy_mechanism none -np 3 "$bin" "$mode" >/tmp/mpi_fault_$$.log 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    echo "FAIL: mode $mode: exit $rc after ${elapsed}s (want non-zero, without hitting the 60 s guard)"; status=1
  else
    echo "ok: mode $mode: the job exited with $rc after ${elapsed}s"
  fi
  grep -m2 -E "rank [0-9]|fatal" /tmp/mpi_fault_$$.log | sed 's/^/    /'
done
rm -f /tmp/mpi_fault_$$.log
exit $status
