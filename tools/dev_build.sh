#!/usr/bin/env bash
# Developer build without pip: configure + build recon._core (and recon._cuda when nvcc is found)
# into BUILD_DIR (default build/dev) and copy the modules into recon/ so that `python -m pytest`
# from the repository root imports them. Usage: tools/dev_build.sh [BUILD_DIR] [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/dev}
shift || true
py=${PYTHON:-python}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v $py)" "$@"
fi
cmake --build "$build" -j "$(nproc)"
for so in "$build"/_core*.so "$build"/cuda/_cuda*.so; do
  [ -f "$so" ] || continue
  tmp="recon/.$(basename "$so").tmp.$$"
  cp "$so" "$tmp" && mv -f "$tmp" "recon/$(basename "$so")"
done
