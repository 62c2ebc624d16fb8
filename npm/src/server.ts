// pinfold's JavaScript API for Node, Deno and Bun (their export conditions): the build
// without WebRTC, which these runtimes cannot run (no RTCPeerConnection), and smaller.
import * as bindings from '../dist/server/pinfold_wasm.js';
import { useBuild } from './load.js';

useBuild({
  bindings,
  wasm: () => new URL('../dist/server/pinfold_wasm_bg.wasm', import.meta.url),
  worker: () => new URL('./worker-server.js', import.meta.url),
});

export * from './api.js';
