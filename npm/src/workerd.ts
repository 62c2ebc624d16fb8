// The package for workerd (Cloudflare Workers), chosen by its `workerd` export condition:
// workerd compiles WebAssembly ahead of time and refuses to compile it at run time, so the
// .wasm is imported as a module (which workerd and Workers bundlers load compiled) and
// handed to the loader. Everything else is the package's default entry.
import compiled from '../dist/pinfold_wasm_bg.wasm';
import { useCompiledModule } from './load.js';

useCompiledModule(compiled);

export * from './index.js';
