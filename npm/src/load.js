// Loads the WebAssembly module once, in browsers, Workers, Deno and Node.
import init from '../dist/pinfold_wasm.js';

const wasmUrl = new URL('../dist/pinfold_wasm_bg.wasm', import.meta.url);
let loading;
let exports;

/** Loads the WebAssembly module (once). Every other function awaits it. */
export function ready() {
  loading ??= (async () => {
    if (globalThis.process?.versions?.node) {
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
export function wasmMemoryBytes() {
  return exports?.memory.buffer.byteLength ?? 0;
}
