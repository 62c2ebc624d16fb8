// Loads the WebAssembly module once, in browsers, Workers, Deno and Node.
import init, { type InitOutput } from '../dist/pinfold_wasm.js';

const wasmUrl = new URL('../dist/pinfold_wasm_bg.wasm', import.meta.url);
let loading: Promise<void> | undefined;
let exports: InitOutput | undefined;

/** Loads the WebAssembly module (once). Every other function awaits it. */
export function ready(): Promise<void> {
  loading ??= (async () => {
    const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    if (node) {
      // Node's fetch cannot read file: URLs.
      const { readFile } = await import('node:fs/promises');
      exports = await init({ module_or_path: await readFile(wasmUrl) });
    } else {
      exports = await init({ module_or_path: wasmUrl });
    }
  })();
  return loading;
}

/** Bytes of the WebAssembly memory on this thread (0 before the module loads). */
export function wasmMemoryBytes(): number {
  return exports?.memory.buffer.byteLength ?? 0;
}
