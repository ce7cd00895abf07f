#!/usr/bin/env bash
# Copy the shared data the GPU bench reads into bench/gpu/data (gitignored), so a device run can
# carry it: the device gets the repository only, not /work/shared beside it.
#   bash bench/gpu/stage_data.sh            # then run the device command with carry ["bench/gpu/data"]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${MEDSTUDIO_SHARED_DATA:-/work/shared/data}"
[ -f "$SRC/cmtmedqa_multiturn.jsonl" ] || { echo "no shared data at $SRC (set MEDSTUDIO_SHARED_DATA)" >&2; exit 1; }
mkdir -p "$HERE/data"
cp "$SRC"/*.jsonl "$HERE/data/"
[ -f "$SRC/README.md" ] && cp "$SRC/README.md" "$HERE/data/"
du -sh "$HERE/data"
