// Load on one peer's REST API: 100 concurrent clients pin, read statuses and list for 30 s
// (PINFOLD_LOAD_CLIENTS, PINFOLD_LOAD_SECONDS). Checks that no request fails and no
// acknowledged pin is lost, on the loaded peer and on a second peer that syncs from it;
// prints the latency percentiles of each kind of request.
//
// The loaded peer is a relay (it keeps the pinset and takes writes but pins nothing), so
// the figures are the API's and the pinset's, not an IPFS daemon's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { percentiles } from '../support/stats.mjs';

const clients = Number(process.env.PINFOLD_LOAD_CLIENTS ?? 100);
const seconds = Number(process.env.PINFOLD_LOAD_SECONDS ?? 30);
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let loaded;
let replica;

before(async () => {
  loaded = await new Peer('load', { env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  replica = await new Peer('load-replica', { env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  await loaded.start();
  await replica.start(['--bootstrap', loaded.address]);
  await waitFor('the two peers to see each other', async () => (await loaded.list('/peers')).length === 2);
});

after(async () => {
  await stopAll();
});

test(`${clients} clients pinning and listing for ${seconds} s lose nothing and fail nothing`, async () => {
  const latencies = { pin: [], status: [], list: [] };
  const errors = [];
  const acknowledged = new Set();
  const deadline = Date.now() + seconds * 1000;
  const timed = async (kind, route, init) => {
    const started = performance.now();
    try {
      const res = await fetch(`${loaded.api}${route}`, { signal: AbortSignal.timeout(60_000), ...init });
      const body = await res.text();
      latencies[kind].push(performance.now() - started);
      if (res.status !== 200) errors.push(`${kind} ${route}: ${res.status} ${body.slice(0, 200)}`);
      return res.status === 200 ? body : null;
    } catch (error) {
      errors.push(`${kind} ${route}: ${error.message}`);
      return null;
    }
  };
  const client = async (n) => {
    const mine = [];
    for (let i = 0; Date.now() < deadline; i++) {
      const roll = (i * 7 + n) % 20;
      if (roll < 14 || mine.length === 0) {
        const cid = rawCid(`load ${process.pid} ${n} ${i}`);
        if (await timed('pin', `/pins/${cid}?name=load-${n}-${i}`, { method: 'POST' })) {
          mine.push(cid);
          acknowledged.add(cid);
        }
      } else if (roll < 19) {
        await timed('status', `/pins/${mine[i % mine.length]}`);
      } else {
        await timed('list', '/allocations');
      }
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  const elapsed = (Date.now() - started) / 1000;
  assert.deepEqual(errors.slice(0, 10), [], `${errors.length} requests failed`);

  const pinsetOf = async (peer) => new Set((await peer.list('/allocations')).map((p) => p.cid));
  const here = await pinsetOf(loaded);
  const lost = [...acknowledged].filter((cid) => !here.has(cid));
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged pins are missing on the loaded peer`);
  await waitFor(
    'the second peer to hold every acknowledged pin',
    async () => {
      const there = await pinsetOf(replica);
      return [...acknowledged].every((cid) => there.has(cid));
    },
    120_000,
  );

  const report = Object.fromEntries(Object.entries(latencies).map(([kind, samples]) => [kind, percentiles(samples)]));
  const total = Object.values(latencies).reduce((sum, s) => sum + s.length, 0);
  console.log(
    `load: ${clients} clients, ${elapsed.toFixed(1)} s, ${total} requests (${(total / elapsed).toFixed(0)}/s), ${acknowledged.size} pins acknowledged and all found on both peers, 0 errors`,
  );
  for (const [kind, p] of Object.entries(report)) {
    console.log(
      `load: ${kind.padEnd(6)} n=${p.n} p50=${p.p50.toFixed(1)} ms p90=${p.p90.toFixed(1)} ms p99=${p.p99.toFixed(1)} ms max=${p.max.toFixed(1)} ms`,
    );
  }
});
