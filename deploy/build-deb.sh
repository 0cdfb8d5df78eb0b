#!/usr/bin/env bash
# Builds the Debian package target/debian/gpusel_VERSION-1_ARCH.deb (see
# [package.metadata.deb] in cli/Cargo.toml): a release build of gpusel, then
# the man pages and completions written by that binary (so that they match
# its --help), then `cargo deb` on what was built. Arguments go to cargo deb.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: cargo-deb is not installed; install it with: cargo install --locked cargo-deb --version 3.8.0" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p gpusel-cli
out="$target/release/gpusel-deb"
rm -rf "$out"
mkdir -p "$out/completions"
"$target/release/gpusel" man --dir "$out/man" >/dev/null
# Compressed as Debian policy wants (cargo-deb leaves files under target/ as they are).
gzip -9n "$out"/man/*.1
"$target/release/gpusel" completions bash >"$out/completions/gpusel"
"$target/release/gpusel" completions zsh >"$out/completions/_gpusel"
"$target/release/gpusel" completions fish >"$out/completions/gpusel.fish"
cargo deb -p gpusel-cli --no-build --locked "$@"
