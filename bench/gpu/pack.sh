#!/usr/bin/env bash
# Packs, here, what the GPU run needs on a machine that has no Node.js and no network (README.md beside
# this): this Node binary, npm (node-llama-cpp's source build runs cmake-js through it), Node's N-API
# headers, Gravity built with its production dependencies, the benchmark bundled into one file, and the
# llama.cpp source node-llama-cpp ships. Everything goes into one ignored folder that the device call
# carries; it must stay under the tool's 64 MiB with the working tree.
#
#   bash bench/gpu/pack.sh [scratch/gpu-carry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
carry=${1:-scratch/gpu-carry}
rm -rf "$carry"
mkdir -p "$carry"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

npm run build >/dev/null

# Node and npm exactly as here (x86-64 like the device; glibc there is at least as new).
xz -T2 -6 -c "$(command -v node)" >"$carry/node.xz"
tar -C "$(npm root -g)" -cJf "$carry/npm.tar.xz" npm
# cmake-js wants include/node/node.h to exist; the addon itself compiles against the N-API headers only.
mkdir -p "$work/node-headers/include/node"
cp /usr/include/node/{node.h,node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h,node_version.h} \
  "$work/node-headers/include/node/"
tar -C "$work" -cJf "$carry/node-headers.tar.xz" node-headers

# Production dependencies from the lockfile, without running install scripts: better-sqlite3's native
# module is copied from this checkout's install, and node-llama-cpp's binary is built on the device.
mkdir -p "$work/app"
cp package.json package-lock.json "$work/app/"
(cd "$work/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
mkdir -p "$work/app/node_modules/better-sqlite3/build/Release"
cp node_modules/better-sqlite3/build/Release/better_sqlite3.node "$work/app/node_modules/better-sqlite3/build/Release/"
cp -r dist "$work/app/dist"
npx esbuild bench/gpu/gpu-bench.ts --bundle --platform=node --format=esm --target=node20 \
  --external:node-llama-cpp --external:better-sqlite3 \
  --banner:js="import { createRequire as createBundleRequire } from 'node:module'; const require = createBundleRequire(import.meta.url);" \
  --outfile="$work/app/gpu-bench.mjs" --log-level=warning
# The load client runs on a worker thread loaded from beside its module: beside the bundle here.
cp bench/support/load-client-worker.mjs "$work/app/"

# llama.cpp's source at the release node-llama-cpp 3.21.1 pins, as its own `source download` leaves it
# (unpacked from the git bundle it ships, its patches applied), without what no build reads: models, docs,
# tests, examples, tools and git history (other backends' sources stay: CMake lists them even when off).
llama_dir="$work/app/node_modules/node-llama-cpp/llama"
(cd "$work/app" && node node_modules/node-llama-cpp/dist/cli/cli.js source download --skipBuild --gpu false >/dev/null)
rm -rf "$llama_dir/llama.cpp"/{.git,models,docs,tests,examples,tools,benches,media,gguf-py,scripts,conversion,app,ci}
# node-llama-cpp builds only a source tree it sees as cloned (a .git folder beside its release info): an
# empty repository says so without the 34 MB history; llama.cpp's build then reports its commit as unknown.
git init --quiet "$llama_dir/llama.cpp"
tar -C "$llama_dir" -cJf "$carry/llama-cpp-source.tar.xz" llama.cpp llama.cpp.info.json

# The llama.cpp history bundle (34 MB) is replaced by the pruned source; the CPU binaries are not used.
rm -rf "$llama_dir/gitRelease.bundle" "$llama_dir/llama.cpp" "$work/app/node_modules/@node-llama-cpp/linux-x64"
tar -C "$work/app" -cJf "$carry/app.tar.xz" node_modules dist gpu-bench.mjs load-client-worker.mjs

du -sh "$carry"/*
echo "total: $(du -sb "$carry" | cut -f1) bytes (the device call carries at most 64 MiB with the working tree)"
