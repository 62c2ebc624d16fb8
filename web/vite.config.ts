// The dashboard builds into dist/ with relative asset URLs, so that the same build works
// wherever it is served: at a native peer's /ui/, from any static host, or from a file
// server in the tests. The follower runs in a module Worker.
import { defineConfig } from 'vite';

// The npm package imports these only when it runs in Node: browsers never load them.
const nodeOnly = [/^node:/];

export default defineConfig({
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2048,
    rollupOptions: { external: nodeOnly },
  },
  worker: { format: 'es', rollupOptions: { external: nodeOnly } },
});
