#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries HERE (a CPU machine with nvcc and the project's C dependencies) for
# sm_90 (+ compute_80 PTX) and packs them with the shared libraries the device image lacks, so a GPU session spends
# its device time running, not installing: the device image has CUDA, cuBLAS, cuDNN, NCCL, CMake and PyTorch but
# not cJSON, HDF5, OpenBLAS or Criterion, and nothing can be fetched there.
#   scripts/gpu_bundle.sh [DIR]        (default gpu-bundle/, git-ignored) -> DIR.tar.xz (about 13 MB; the folder is
#                                      65 MB, OpenBLAS alone 36, over the device tool's 64 MiB carry limit)
# then, in one device call:
#   run(command="scripts/gpu_check.sh --bundle gpu-bundle.tar.xz", carry=["gpu-bundle.tar.xz"], timeout_s=600)
# MPI is off in the bundle (its runtime needs plugin folders that do not travel); the MPI/NCCL comparison runs from
# a build made on the device when OpenMPI is there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-bundle}
build=build-gpu-bundle
cmake -S . -B "$build" -DSWITCHC_CUDA=ON -DSWITCHC_MPI=OFF -DSWITCHC_CUDA_ARCHS="90-real;80-virtual" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
tests=$(ctest --test-dir "$build" -N -L gpu | sed -nE 's/^ *Test +#[0-9]+: +([^ ]+).*/\1/p')
printf '%s\n' $tests >"$out/tests.txt"
for b in $tests switchc bench_model bench_gemm_cuda; do
  [ -x "$build/$b" ] && strip -o "$out/bin/$b" "$build/$b"
done
# Every library the binaries load, except the C runtime (glibc, libstdc++, libgcc: the device's are newer and
# compatible) and the CUDA libraries (the device has its own, matched to its driver).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcudnn|libnccl|libnvidia)'
for b in "$out"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] || cp -L "$path" "$out/lib/$name"
done
# The HF peer of the benchmark is transformers 4.57.6; the device image has 5.x, and nothing can be fetched there.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out/whl" transformers==4.57.6 huggingface_hub==0.36.2 tokenizers==0.22.2 ||
  echo "gpu_bundle: could not download the transformers 4.57.6 wheels; the benchmark will use the device's transformers" >&2
tar -cJf "$out.tar.xz" "$out"
echo "gpu_bundle: $(ls "$out/bin" | wc -l) binaries, $(ls "$out/lib" | wc -l) libraries in $out/; $(du -h "$out.tar.xz" | cut -f1) as $out.tar.xz"
