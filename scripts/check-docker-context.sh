#!/usr/bin/env bash
# Checks that deploy/docker/Dockerfile's build stage copies everything cargo needs: Docker
# itself may not run here, so this rebuilds the build stage's context from its COPY lines in a
# scratch directory and asks cargo to load the workspace and build plan from it (offline,
# --locked). A workspace member or source file the Dockerfile forgets fails this check.
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile=deploy/docker/Dockerfile
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# COPY lines of the first (build) stage, without --from (those copy between stages).
awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from/' "$dockerfile" |
while read -r _copy rest; do
  read -r -a words <<<"$rest"
  dest="${words[-1]}"
  unset 'words[-1]'
  for src in "${words[@]}"; do
    target="$scratch/$dest"
    if [[ "$dest" == */ || ${#words[@]} -gt 1 ]]; then
      mkdir -p "$target"
      cp -r "$src" "$target/"
    else
      mkdir -p "$(dirname "$target")"
      cp -r "$src" "$target"
    fi
  done
done

# Every workspace member's manifest and sources must be there, and the lock file must match.
cargo metadata --manifest-path "$scratch/Cargo.toml" --no-deps --format-version 1 >/dev/null
cargo tree --manifest-path "$scratch/Cargo.toml" --locked --offline -p esmd --target x86_64-unknown-linux-gnu -e normal,build >/dev/null
# The package the image builds must have its entry points.
for f in src/main.rs src/lib.rs bench/src/main.rs; do
  [ -f "$scratch/$f" ] || { echo "docker context lacks $f" >&2; exit 1; }
done
echo "docker build context: complete ($(find "$scratch" -type f | wc -l) files)"
