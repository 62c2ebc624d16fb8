// Benchmark of the npm package's follower in Node 22 (run by scripts/bench-follower, figures
// printed): the cold sync of PINFOLD_BENCH_PINS pins (100000) from a release relay's
// snapshot over WebSocket on loopback, by a follower on this thread (follow) and in a worker
// thread (spawnWorker), the longest each left a call unanswered meanwhile (syncState()
// asked every 20 ms), which shows whether loading stalls the caller, and the longest this
// thread's event loop was held (with spawnWorker, the worker's turns no longer hold it).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { follow, spawnWorker } from '../../npm/lib/server.js';

const pins = Number(process.env.PINFOLD_BENCH_PINS ?? 100_000);
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
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
// The lines are garbage from here: a million strings kept alive would make every full
// collection of this thread's heap, and with it the loop's longest hold, the benchmark's own.
lines.length = 0;
const relay = await new Peer('node-bench', {
  listen: ['tcp', 'ws'],
  env: { CLUSTER_ROLE: 'relay', CLUSTER_CRDT_SNAPSHOTEVERY: '1', CLUSTER_CRDT_SNAPSHOTMININTERVAL: '1s' },
}).init(secret);
execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
  env: relay.env(),
  stdio: 'ignore',
});
try {
  await relay.start();
  await waitFor(
    "the relay's snapshot",
    () => /made a pinset snapshot/.test(fs.readFileSync(relay.log, 'utf8')),
    600_000,
  );
  const bootstrap = [await relay.addressOf('ws')];
  for (const how of ['follow', 'spawnWorker']) {
    const started = performance.now();
    const options = { bootstrap, secret, trustedPeers: [relay.id] };
    // How long this thread's event loop was held at most (a timer every 10 ms comes late
    // by that much): Node's counterpart of a page's long tasks.
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const follower = how === 'follow' ? await follow(options) : await spawnWorker(options);
    let longest = 0;
    // When the longest wait ended, and how many pins the follower held then.
    let longestAt = { ms: 0, pins: 0 };
    // Chunks of pins merge as they arrive: the first pin shows how soon the load shows progress.
    let firstPinMs = null;
    for (let last = performance.now(); ;) {
      const state = await follower.syncState();
      const now = performance.now();
      if (now - last > longest) {
        longest = now - last;
        longestAt = { ms: now - started, pins: state.pins };
      }
      if (firstPinMs === null && state.pins > 0) firstPinMs = now - started;
      if (state.synced && state.pins >= pins) {
        const ms = now - started;
        loopDelay.disable();
        console.log(
          `Node, ${how}: cold sync of ${pins} pins from the relay's snapshot: ${(ms / 1000).toFixed(2)} s, ${Math.round(pins / (ms / 1000))} pins/s (snapshot used: ${state.snapshot !== null}; first pin after ${(firstPinMs / 1000).toFixed(2)} s); longest unanswered syncState(): ${longest.toFixed(0)} ms, ended ${(longestAt.ms / 1000).toFixed(2)} s in, at ${longestAt.pins} pins; this thread's event loop held at most ${(loopDelay.max / 1e6).toFixed(0)} ms`,
        );
        break;
      }
      if (now - started > 1_800_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
      await new Promise((r) => setTimeout(r, 20));
      last = performance.now();
    }
    await follower.close();
  }
} finally {
  await stopAll();
}
