#!/usr/bin/env bash
# Runs on the GPU machine (README.md beside this), from the repository root, with the folder pack.sh
# filled carried along. It unpacks Node and Gravity, compiles node-llama-cpp's bundled llama.cpp with
# CUDA for the H200 alone (sm_90) while the models are written, then runs gpu-bench and copies its
# results, logs and the device's description to $OUT (or scratch/gpu-out).
#
#   bash bench/gpu/on-device.sh [carry folder] [time budget in seconds]
#
# GRAVITY_GPU_BENCH_ARGS adds arguments to gpu-bench (e.g. "--window-s 10", or "--quick" for short
# levels on the 1B shape); GRAVITY_GPU_DEVICE=cpu runs the same steps with a CPU build and estimated
# energy, to rehearse them on a machine without a GPU;
# GRAVITY_GPU_REUSE_BUILD=1 keeps a llama.cpp build already in node_modules rather than compiling again.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
carry=$(cd "${1:-scratch/gpu-carry}" && pwd)
budget_s=${2:-470}
device=${GRAVITY_GPU_DEVICE:-cuda}
out=${OUT:-$repo/scratch/gpu-out}
work=${GRAVITY_GPU_WORK:-/tmp/gravity-gpu}
started=$(date +%s)
deadline=$((started + budget_s))
mkdir -p "$out" "$work/bin"
log() { echo "[on-device +$(($(date +%s) - started))s] $*" | tee -a "$out/run.log"; }
fail() {
  log "FAILED: $*"
  exit 1
}

log "unpacking into $work"
xz -dc "$carry/node.xz" >"$work/bin/node" && chmod +x "$work/bin/node" || fail "node"
tar -C "$work" -xJf "$carry/npm.tar.xz" || fail "npm"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/npm/bin/npm-cli.js" "$@"\n' "$work" "$work" >"$work/bin/npm"
chmod +x "$work/bin/npm"
tar -C "$work" -xJf "$carry/node-headers.tar.xz" || fail "headers"
export PATH="$work/bin:$PATH"
# Gravity's production install and build go into the repository root, where the working tree is.
tar -C "$repo" -xJf "$carry/app.tar.xz" || fail "app"
llama_dir="$repo/node_modules/node-llama-cpp/llama"
tar -C "$llama_dir" -xJf "$carry/llama-cpp-source.tar.xz" || fail "llama.cpp source"
log "node $(node --version), npm $(npm --version)"

{
  echo "## nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,power.max_limit,clocks.max.sm,clocks.max.mem,pstate --format=csv 2>&1
  nvidia-smi 2>&1 | head -15
  echo "## nvcc"
  nvcc --version 2>&1 | tail -2
  echo "## cmake, g++, python"
  cmake --version 2>&1 | head -1
  g++ --version 2>&1 | head -1
  python3 -c 'import pynvml; print("nvidia-ml-py", pynvml.__version__ if hasattr(pynvml, "__version__") else "present")' 2>&1
  echo "## cpu"
  grep -m1 'model name' /proc/cpuinfo
  nproc
  echo "## llama.cpp"
  cat "$llama_dir/llama.cpp.info.json"
} >"$out/device.txt" 2>&1
log "device: $(head -2 "$out/device.txt" | tail -1)"

# The models are written while llama.cpp compiles: one is disk-bound, the other CPU-bound.
bench=(node "$repo/gpu-bench.mjs" --gravity "$repo/dist/cli/main.js" --out "$work/results" --models "$work/models")
# shellcheck disable=SC2086
"${bench[@]}" --generate-only ${GRAVITY_GPU_BENCH_ARGS:-} >"$out/generate.log" 2>&1 &
generator=$!

# node-llama-cpp files a build under a hash of its NODE_LLAMA_CPP_CMAKE_OPTION_* settings and looks a
# binary up by the same hash at run time: they are exported for the build and for gravity serve alike.
# Not native: the build is made for the H200's host, but nothing CPU-specific needs to be fast here.
export NODE_LLAMA_CPP_CMAKE_OPTION_GGML_NATIVE=OFF
build_env=(npm_config_nodedir="$work/node-headers")
if [ "$device" = cuda ]; then
  cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
  build_env+=(CUDACXX="$cuda_home/bin/nvcc")
  export NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES=90
  # The CUDA runtime and cuBLAS must load in gravity serve too, wherever the image's loader looks.
  export LD_LIBRARY_PATH="$cuda_home/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLAS may come with the toolkit or only as the pip wheel PyTorch uses (CUDA 13's wheels put it under
  # nvidia/cu13/): point the compilers and CMake at whichever exists. The library paths are cmake options
  # (exported, see above); the include path goes through the compilers' own variables, outside the hash.
  if [ ! -e "$cuda_home/include/cublas_v2.h" ]; then
    # shellcheck disable=SC2046
    header=$(find $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) /usr/local /opt \
      -name cublas_v2.h -path '*nvidia*' 2>/dev/null | head -1)
    if [ -n "$header" ]; then
      include_dir=$(dirname "$header")
      lib_dir=$(cd "$include_dir/../lib" && pwd)
      log "cuBLAS outside the toolkit: $include_dir, $lib_dir"
      export NODE_LLAMA_CPP_CMAKE_OPTION_CUDA_cublas_LIBRARY="$(ls "$lib_dir"/libcublas.so* | head -1)"
      export NODE_LLAMA_CPP_CMAKE_OPTION_CUDA_cublasLt_LIBRARY="$(ls "$lib_dir"/libcublasLt.so* | head -1)"
      build_env+=(CPATH="$include_dir${CPATH:+:$CPATH}" NVCC_PREPEND_FLAGS="-I$include_dir")
      export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    else
      log "no cublas_v2.h found: the build will say what is missing"
    fi
  fi
fi
build_options=(source build --gpu "$([ "$device" = cuda ] && echo cuda || echo false)" --noUsageExample)
log "building llama.cpp ($device) with $(nproc) jobs"
build_started=$(date +%s)
if [ "${GRAVITY_GPU_REUSE_BUILD:-0}" = 1 ] && [ -n "$(ls -A "$llama_dir/localBuilds" 2>/dev/null)" ]; then
  # A second call on a machine still warm from the first, or a rehearsal: the build is already there.
  log "reusing the build in $llama_dir/localBuilds"
else
  (cd "$repo" && env "${build_env[@]}" node node_modules/node-llama-cpp/dist/cli/cli.js "${build_options[@]}") \
    >"$out/build.log" 2>&1 || {
    tail -40 "$out/build.log"
    fail "llama.cpp build (build.log)"
  }
fi
log "built in $(($(date +%s) - build_started)) s: $(ls "$llama_dir/localBuilds")"
wait $generator || {
  cat "$out/generate.log"
  fail "model generation"
}
cat "$out/generate.log" | tee -a "$out/run.log"

counter=()
if [ "$device" = cuda ]; then
  counter=(--counter "python3 -u $repo/bench/gpu/nvml-sampler.py 0 10")
  energy=nvml
else
  energy=auto
fi
# shellcheck disable=SC2086
"${bench[@]}" --device "$device" --energy "$energy" "${counter[@]}" --deadline "$((deadline - 15))" \
  ${GRAVITY_GPU_BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
cp "$work/results/gpu-results.json" "$out/" 2>/dev/null || log "no results file"
# The device call returns at most 8 files: the served configs travel as one.
tail -n +1 "$work"/results/*.yaml >"$out/configs.txt" 2>/dev/null
log "done"
