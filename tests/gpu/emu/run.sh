#!/usr/bin/env bash
# Runs the GPU suites (tests/gpu/test_gpu_*.c) against autograd/cuda/ compiled for the CUDA emulator of this folder,
# on a machine without a GPU: a check of the kernels' logic before a GPU session, not a substitute for it (see
# cuda_runtime.h for what it can and cannot catch). Usage: tests/gpu/emu/run.sh [build-dir] [suite...] (default
# /tmp/switchc-gpu-emu, every tests/gpu/test_gpu_*.c; e.g. `run.sh /tmp/emu test_gpu_model` runs one suite).
# The host libraries (moe/, train/, data/, parallel/; MPI and NCCL off) are compiled into an archive, so a suite
# links only what it uses. Slow (every block is a set of threads): test_gpu_ops takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-/tmp/switchc-gpu-emu}
shift || true
emu=tests/gpu/emu
mkdir -p "$out/src" "$out/obj" "$out/host"
flags=(-O1 -g -I. -DSWITCHC_HAVE_CUDA=1 $(pkg-config --cflags openblas criterion libcjson hdf5))
for f in autograd/cuda/*.cu; do
  b=$(basename "$f" .cu)
  python3 "$emu/launches.py" "$f" "$out/src/$b.cpp"
  g++ -std=c++17 -Wall -Wno-unused-parameter -Wno-unused-function -Wno-unknown-pragmas -I"$emu" "${flags[@]}" -c "$out/src/$b.cpp" -o "$out/obj/cu_$b.o" &
done
for f in autograd/*.c autograd/cpu/*.c autograd/cuda/*.c; do
  gcc -std=gnu11 -Wall -Wno-unused-parameter "${flags[@]}" -c "$f" -o "$out/obj/c_$(basename "$f" .c).o" &
done
# the suites' shared helpers (tests/tutil.c), linked like the backend
gcc -std=gnu11 -Wall -Wno-unused-parameter "${flags[@]}" -DSX_BINARY_DIR="\"$out\"" -c tests/tutil.c -o "$out/obj/c_tutil.o" &
rm -f "$out"/host/*.o
for f in moe/*.c parallel/*.c data/*.c train/*.c train/model/*.c train/hf/*.c; do
  o=${f%.c}; gcc -std=gnu11 -Wall -Wno-unused-parameter "${flags[@]}" -c "$f" -o "$out/host/${o//\//_}.o" &
done
wait
rm -f "$out/libsx_host.a"
ar rcs "$out/libsx_host.a" "$out"/host/*.o
libs="$out/libsx_host.a $(pkg-config --libs openblas criterion libcjson hdf5)"
status=0
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then suites=(tests/gpu/test_gpu_*.c); fi
for t in "${suites[@]}"; do
  name=$(basename "$t" .c)
  t=tests/gpu/$name.c
  gcc -std=gnu11 "${flags[@]}" -c "$t" -o "$out/obj/t_$name.o"
  g++ -o "$out/$name" "$out/obj/t_$name.o" "$out"/obj/c_*.o "$out"/obj/cu_*.o $libs -lm -lpthread
  OPENBLAS_NUM_THREADS=1 "$out/$name" --jobs 2 > "$out/$name.log" 2>&1 || status=1
  echo "$name: $(grep -c '^gpu-compare' "$out/$name.log") comparisons, $(grep '^gpu-compare' "$out/$name.log" | grep -c 'FAIL$') outside tolerance; $(tail -1 "$out/$name.log")"
done
exit $status
