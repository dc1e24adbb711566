#!/usr/bin/env bash
# Runs the GPU suites (tests/gpu/test_gpu_*.c) against autograd/cuda/ compiled for the CUDA emulator of this folder,
# on a machine without a GPU: a check of the kernels' logic before a GPU session, not a substitute for it (see
# cuda_runtime.h for what it can and cannot catch). Usage: tests/gpu/emu/run.sh [build-dir] (default
# /tmp/switchc-gpu-emu). Slow (every block is a set of threads): test_gpu_ops takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-/tmp/switchc-gpu-emu}
emu=tests/gpu/emu
mkdir -p "$out/src" "$out/obj"
flags=(-O1 -g -I. -DSWITCHC_HAVE_CUDA=1 $(pkg-config --cflags openblas criterion))
for f in autograd/cuda/*.cu; do
  b=$(basename "$f" .cu)
  python3 "$emu/launches.py" "$f" "$out/src/$b.cpp"
  g++ -std=c++17 -Wall -Wno-unused-parameter -Wno-unused-function -Wno-unknown-pragmas -I"$emu" "${flags[@]}" -c "$out/src/$b.cpp" -o "$out/obj/cu_$b.o" &
done
for f in autograd/*.c autograd/cpu/*.c autograd/cuda/*.c; do
  gcc -std=gnu11 -Wall -Wno-unused-parameter "${flags[@]}" -c "$f" -o "$out/obj/c_$(basename "$f" .c).o" &
done
wait
libs=$(pkg-config --libs openblas criterion)
status=0
for t in tests/gpu/test_gpu_*.c; do
  name=$(basename "$t" .c)
  gcc -std=gnu11 "${flags[@]}" -c "$t" -o "$out/obj/t_$name.o"
  g++ -o "$out/$name" "$out/obj/t_$name.o" "$out"/obj/c_*.o "$out"/obj/cu_*.o $libs -lm -lpthread
  OPENBLAS_NUM_THREADS=1 "$out/$name" --jobs 2 > "$out/$name.log" 2>&1 || status=1
  echo "$name: $(grep -c '^gpu-compare' "$out/$name.log") comparisons, $(grep '^gpu-compare' "$out/$name.log" | grep -c 'FAIL$') outside tolerance; $(tail -1 "$out/$name.log")"
done
exit $status
