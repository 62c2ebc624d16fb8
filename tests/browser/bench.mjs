// Benchmarks of the browser follower (run by scripts/bench-follower, figures printed), on
// loopback, in headless Chromium:
//   1. cold sync of PINFOLD_BENCH_PINS pins (100000) over WebSocket from a relay that
//      offers a snapshot, and from one that does not (the DAG walk), in pins/s;
//   2. the page's JS heap and the WebAssembly memory once synced, per 100k pins;
//   3. with storage in IndexedDB, each in a browser of its own: the cold sync from the
//      snapshot and through the DAG (with the WebAssembly memory it took), and the resume
//      after a reload (up to PINFOLD_BENCH_RELOAD_PINS pins, 100000: past that the
//      IndexedDB part is skipped);
//   4. the .wasm's size raw, gzip -9 and brotli;
//   5. how long the page is blocked while syncing (Chromium's long tasks, over 50 ms), with
//      the follower on the page and in a Web Worker (spawnWorker).
// The relays' pinsets are imported (`state import`: deltas of 1000 pins).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { launchChromium, npmDir, serveNpm } from './page.mjs';

const pins = Number(process.env.PINFOLD_BENCH_PINS ?? 100_000);
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const reloadPins = Number(process.env.PINFOLD_BENCH_RELOAD_PINS ?? 100_000);
const mib = (bytes) => (bytes / 1024 / 1024).toFixed(1);

function importedRelay(name, env) {
  const lines = [];
  for (let i = 0; i < pins; i++) {
    lines.push(
      JSON.stringify({
        cid: rawCid(`bench pin ${i}`),
        name: `bench-${i}`,
        replication_factor_min: -1,
        replication_factor_max: -1,
      }),
    );
  }
  const file = path.join(runDir, 'bench.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  return (async () => {
    const relay = await new Peer(name, { listen: ['tcp', 'ws'], env: { CLUSTER_ROLE: 'relay', ...env } }).init(secret);
    execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
      env: relay.env(),
      stdio: 'ignore',
    });
    await relay.start();
    return relay;
  })();
}

/**
 * `storage`: extra options of `follow()` (memory when none); `spawn`: "follow" (the follower
 * on the page) or "spawnWorker". The page's long tasks (over 50 ms, as Chromium reports
 * them) are counted from the start of the sync to its end.
 */
async function coldSync(browser, origin, relay, storage = {}, spawn = 'follow') {
  const page = await browser.newPage();
  await page.goto(origin);
  const cdp = await page.context().newCDPSession(page);
  const address = await relay.addressOf('ws');
  const result = await page.evaluate(
    async ({ address, secret, trusted, pins, storage, spawn }) => {
      const pinfold = await import('/lib/index.js');
      await pinfold.ready();
      const longTasks = { count: 0, longestMs: 0 };
      const count = (entries) => {
        for (const entry of entries) {
          longTasks.count++;
          longTasks.longestMs = Math.max(longTasks.longestMs, entry.duration);
        }
      };
      const observer = new PerformanceObserver((list) => count(list.getEntries()));
      observer.observe({ type: 'longtask' });
      const started = performance.now();
      const follower = await pinfold[spawn]({ bootstrap: [address], secret, trustedPeers: [trusted], ...storage });
      // Chunks of pins merge as they arrive: the first pin shows how soon the load shows progress.
      let firstPinMs = null;
      for (;;) {
        const state = await follower.syncState();
        if (firstPinMs === null && state.pins > 0) firstPinMs = performance.now() - started;
        if (state.synced && state.pins >= pins) {
          const ms = performance.now() - started;
          count(observer.takeRecords());
          observer.disconnect();
          window.follower = follower;
          return {
            ms,
            firstPinMs,
            snapshot: state.snapshot !== null,
            wasmBytes: (await pinfold.memoryUsage()).wasmBytes,
            longTasks,
          };
        }
        if (performance.now() - started > 1_800_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    { address, secret, trusted: relay.id, pins, storage, spawn },
  );
  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize } = await cdp.send('Runtime.getHeapUsage');
  await page.close();
  return { ...result, jsHeap: usedSize };
}

/** Syncs into IndexedDB, reloads the page, and times the resume to a synced state. */
async function reloadResume(browser, origin, relay) {
  const page = await browser.newPage();
  await page.goto(origin);
  const options = {
    bootstrap: [await relay.addressOf('ws')],
    secret,
    trustedPeers: [relay.id],
    storage: 'indexeddb',
    storageName: 'pinfold-bench',
  };
  const syncAndClose = () =>
    page.evaluate(
      async ({ options, pins }) => {
        const pinfold = await import('/lib/index.js');
        await pinfold.ready();
        const started = performance.now();
        const follower = await pinfold.follow(options);
        for (;;) {
          const state = await follower.syncState();
          if (state.synced && state.pins >= pins) {
            const ms = performance.now() - started;
            await follower.close();
            return { ms, merged: state.merged };
          }
          if (performance.now() - started > 1_800_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      { options, pins },
    );
  const cold = await syncAndClose();
  await page.reload();
  const resumed = await syncAndClose();
  await page.close();
  return { cold, resumed };
}

/**
 * Runs `measure` in a browser of its own (a new profile), closed after: IndexedDB goes on
 * compacting what an earlier sync wrote, and a later measurement in the same browser would
 * pay for it.
 */
async function inFreshBrowser(measure) {
  const fresh = await launchChromium();
  try {
    return await measure(fresh);
  } finally {
    await fresh.close();
  }
}

const { server, origin } = await serveNpm();
const browser = await launchChromium();
try {
  const withSnapshot = await importedRelay('bench-snapshot', {
    CLUSTER_CRDT_SNAPSHOTEVERY: '1',
    CLUSTER_CRDT_SNAPSHOTMININTERVAL: '1s',
  });
  // The relay makes its snapshot on its first tick once synced: wait for it, so that the
  // sync below measures loading it, not making it.
  const made = await waitFor(
    "the relay's snapshot",
    () => /made a pinset snapshot.*elapsed_ms=(\d+)/.exec(fs.readFileSync(withSnapshot.log, 'utf8')),
    600_000,
  );
  console.log(`the relay made its snapshot of ${pins} pins in ${made[1]} ms`);
  const a = await coldSync(browser, origin, withSnapshot);
  const inWorker = await coldSync(browser, origin, withSnapshot, {}, 'spawnWorker');
  const reload = pins <= reloadPins ? await inFreshBrowser((fresh) => reloadResume(fresh, origin, withSnapshot)) : null;
  await withSnapshot.stop();
  const withoutSnapshot = await importedRelay('bench-dag', { CLUSTER_CRDT_SNAPSHOTEVERY: '0' });
  const b = await coldSync(browser, origin, withoutSnapshot);
  const dagIntoIdb = reload
    ? await inFreshBrowser((fresh) =>
        coldSync(fresh, origin, withoutSnapshot, { storage: 'indexeddb', storageName: 'pinfold-bench-dag' }),
      )
    : null;
  const per100k = (bytes) => mib((bytes * 100_000) / pins);
  console.log(
    `cold sync of ${pins} pins, from the relay's snapshot: ${(a.ms / 1000).toFixed(2)} s, ${Math.round(pins / (a.ms / 1000))} pins/s (snapshot used: ${a.snapshot}; first pin after ${(a.firstPinMs / 1000).toFixed(2)} s)`,
  );
  console.log(
    `cold sync of ${pins} pins, walking the DAG:         ${(b.ms / 1000).toFixed(2)} s, ${Math.round(pins / (b.ms / 1000))} pins/s (snapshot used: ${b.snapshot})`,
  );
  console.log(
    `cold sync of ${pins} pins from the snapshot with spawnWorker (the follower in a Web Worker): ${(inWorker.ms / 1000).toFixed(2)} s, ${Math.round(pins / (inWorker.ms / 1000))} pins/s`,
  );
  const blocked = (run) =>
    `${run.longTasks.count} tasks over 50 ms, the longest ${run.longTasks.longestMs.toFixed(0)} ms`;
  console.log(`the page while syncing from the snapshot, follower on the page: ${blocked(a)}`);
  console.log(`the page while syncing from the snapshot, follower in a Worker: ${blocked(inWorker)}`);
  console.log(`the page while walking the DAG, follower on the page: ${blocked(b)}`);
  console.log(
    `once synced (snapshot run): JS heap ${mib(a.jsHeap)} MiB (${per100k(a.jsHeap)} per 100k pins), WebAssembly memory ${mib(a.wasmBytes)} MiB (${per100k(a.wasmBytes)} per 100k pins)`,
  );
  if (reload) {
    console.log(
      `IndexedDB: cold sync of ${pins} pins ${(reload.cold.ms / 1000).toFixed(2)} s (${Math.round(pins / (reload.cold.ms / 1000))} pins/s); after a reload, synced again in ${reload.resumed.ms.toFixed(0)} ms (deltas fetched again: ${reload.resumed.merged})`,
    );
    // WebAssembly memory never shrinks: once synced, it is the most the walk held.
    console.log(
      `IndexedDB: cold sync of ${pins} pins walking the DAG ${(dagIntoIdb.ms / 1000).toFixed(2)} s (${Math.round(pins / (dagIntoIdb.ms / 1000))} pins/s; snapshot used: ${dagIntoIdb.snapshot}); WebAssembly memory ${mib(dagIntoIdb.wasmBytes)} MiB`,
    );
  } else {
    console.log(`IndexedDB: skipped (${pins} pins > PINFOLD_BENCH_RELOAD_PINS=${reloadPins})`);
  }
  const wasm = fs.readFileSync(path.join(npmDir, 'dist/browser/pinfold_wasm_bg.wasm'));
  const gzip = zlib.gzipSync(wasm, { level: 9 }).length;
  const brotli = zlib.brotliCompressSync(wasm, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  console.log(`.wasm: ${wasm.length} bytes raw, ${gzip} gzip -9, ${brotli} brotli`);
} finally {
  await browser.close();
  server.close();
  await stopAll();
}
