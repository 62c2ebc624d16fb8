// Loads the WebAssembly module once, in browsers, Workers, Deno, Bun, Node and workerd.
import init, { type InitOutput } from '../dist/pinfold_wasm.js';

let loading: Promise<void> | undefined;
let exports: InitOutput | undefined;
let compiled: WebAssembly.Module | undefined;

/**
 * Has `ready()` instantiate this compiled module instead of fetching the .wasm: for
 * runtimes that compile modules ahead of time and refuse to compile at run time (workerd,
 * through the package's `workerd` export). Call before anything else.
 */
export function useCompiledModule(module: WebAssembly.Module): void {
  compiled = module;
}

/** Loads the WebAssembly module (once). Every other function awaits it. */
export function ready(): Promise<void> {
  loading ??= (async () => {
    const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    // Built only when needed: workerd gives modules no file URL.
    const wasmUrl = () => new URL('../dist/pinfold_wasm_bg.wasm', import.meta.url);
    if (compiled) {
      exports = await init({ module_or_path: compiled });
    } else if (node) {
      // Node's fetch cannot read file: URLs.
      const { readFile } = await import('node:fs/promises');
      exports = await init({ module_or_path: await readFile(wasmUrl()) });
    } else {
      exports = await init({ module_or_path: wasmUrl() });
    }
  })();
  return loading;
}

/** Bytes of the WebAssembly memory on this thread (0 before the module loads). */
export function wasmMemoryBytes(): number {
  return exports?.memory.buffer.byteLength ?? 0;
}
