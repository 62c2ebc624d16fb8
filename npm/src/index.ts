// pinfold's JavaScript API, for browsers (the package's default entry): the build with
// webrtc-direct. Node, Deno, Bun and workerd load server.js or workerd.js instead.
import * as bindings from '../dist/browser/pinfold_wasm.js';
import { useBuild } from './load.js';

useBuild({
  bindings,
  wasm: () => new URL('../dist/browser/pinfold_wasm_bg.wasm', import.meta.url),
  worker: () => new URL('./worker-browser.js', import.meta.url),
});

export * from './api.js';
