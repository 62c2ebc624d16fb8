// pinfold's JavaScript API for workerd (Cloudflare Workers), chosen by its `workerd` export
// condition: workerd compiles WebAssembly ahead of time and refuses to compile it at run
// time, so the .wasm (the build without WebRTC) is imported as a module, which workerd and
// Workers bundlers load compiled. workerd has no Workers: `spawnWorker` is not for it.
import * as bindings from '../dist/server/pinfold_wasm.js';
import compiled from '../dist/server/pinfold_wasm_bg.wasm';
import { useBuild } from './load.js';

useBuild({ bindings, wasm: () => compiled });

export * from './api.js';
