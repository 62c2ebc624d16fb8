// Fails if a .wasm imports from module "env": the sign that std::time, a libc call or
// another host function without a wasm32-unknown-unknown implementation slipped in.
//   node scripts/lib/check-wasm-imports.mjs FILE.wasm...
import { readFileSync } from 'node:fs';

let failed = false;
for (const file of process.argv.slice(2)) {
  const module = new WebAssembly.Module(readFileSync(file));
  const env = WebAssembly.Module.imports(module).filter((i) => i.module === 'env');
  if (env.length > 0) {
    failed = true;
    console.error(`${file}: imports from "env": ${env.map((i) => i.name).join(', ')}`);
  } else {
    const modules = [...new Set(WebAssembly.Module.imports(module).map((i) => i.module))];
    console.log(`${file}: no "env" imports (imports from: ${modules.join(', ') || 'nothing'})`);
  }
}
process.exit(failed ? 1 : 0);
