// Loads the WebAssembly module once. The package's entry for the runtime names the build
// first (`useBuild`): index.js the browsers' (with WebRTC), server.js and workerd.js the one
// without WebRTC for Node, Deno, Bun and workerd, which have no RTCPeerConnection.
import type * as Glue from '../dist/browser/pinfold_wasm.js';

/** wasm-bindgen's module of a build: the bindings, and its loader as `default`. Both
 * builds export the same API (scripts/build-npm checks their declarations); their loaders
 * differ only in the module's internal exports. */
export type Bindings = Omit<typeof Glue, 'default' | 'initSync'> & {
  default(input: { module_or_path: Glue.InitInput | Promise<Glue.InitInput> }): Promise<{ memory: WebAssembly.Memory }>;
};

/** One build of the WebAssembly module, as an entry names it. */
export interface Build {
  bindings: Bindings;
  /** The .wasm: where to fetch it, or the module compiled (workerd). */
  wasm: () => URL | WebAssembly.Module;
  /** The script `spawnWorker` runs: a worker on the same build (none in workerd). */
  worker?: () => URL;
}

let build: Build | undefined;
let loading: Promise<Bindings> | undefined;
let memory: WebAssembly.Memory | undefined;

/** Names the build this thread loads; called once, by the entry, before anything loads. */
export function useBuild(entry: Build): void {
  build ??= entry;
}

function chosen(): Build {
  if (!build) throw new Error("pinfold: import the package ('pinfold'), not one of its modules");
  return build;
}

/** Loads the WebAssembly module (once) and gives its bindings. Every other function awaits it. */
export function ready(): Promise<Bindings> {
  loading ??= (async () => {
    const { bindings, wasm } = chosen();
    const source = wasm();
    const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    let exports;
    if (source instanceof URL && source.protocol === 'file:' && node) {
      // Node's fetch cannot read file: URLs.
      const { readFile } = await import('node:fs/promises');
      exports = await bindings.default({ module_or_path: await readFile(source) });
    } else {
      exports = await bindings.default({ module_or_path: source });
    }
    memory = exports.memory;
    return bindings;
  })();
  return loading;
}

/** The script of a Worker that runs a follower on this thread's build. */
export function workerScript(): URL {
  const script = chosen().worker?.();
  if (!script) throw new Error('spawnWorker: this runtime has no Workers; use follow()');
  return script;
}

/** Bytes of the WebAssembly memory on this thread (0 before the module loads). */
export function wasmMemoryBytes(): number {
  return memory?.buffer.byteLength ?? 0;
}
