// Shared by the browser tests and benchmarks: a static server for npm/ (the package's lib/
// and dist/, and an empty page at /), and Debian's Chromium through playwright-core.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const npmDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../npm');
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

/** Serves npm/ on a loopback port; resolves with the server and its origin. */
export function serveNpm() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, 'http://localhost');
      if (url.pathname === '/') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>pinfold</title>');
        return;
      }
      const file = path.join(npmDir, path.normalize(url.pathname));
      if (!file.startsWith(npmDir + path.sep)) {
        res.writeHead(403).end();
        return;
      }
      fs.readFile(file, (error, body) => {
        if (error) res.writeHead(404).end();
        else res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' }).end(body);
      });
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

/** Headless Chromium ($CHROMIUM, default /usr/bin/chromium); never downloads a browser. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}
