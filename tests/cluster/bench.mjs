// End-to-end cluster benchmarks on loopback (run by scripts/bench-cluster, figures printed):
//   1. pins/s ingested at one peer through the REST API, and until visible at another peer,
//      with each watched pin's delay from its POST to the other peer holding it;
//   2. time for a new peer to join and sync the whole pinset, and resident memory per pin;
//   3. time from `pin add` to pinned on the allocated peer's Kubo, against `pin/add` of the
//      same kind of content on that Kubo directly;
//   4. sustained pinning: small blocks already in each peer's Kubo, pinned through a 3-peer
//      cluster with replication 2 (writes batched, 1000 pins or 1 s), until every allocated
//      Kubo lists them, against Kubo's own `pin/add` rate for the same blocks on one daemon
//      (32 clients, one CID per request). Progress is read from the peers' Prometheus
//      gauges; Kubo's pin lists are read only to confirm the end.
// Peers log at info. Environment: PINFOLD_BENCH_PINS (default 100000; 0 skips parts 1-2),
// PINFOLD_BENCH_CONCURRENCY (32), PINFOLD_BENCH_INGEST_API (`rest`, or `pinsvc` for part 1
// through the Pinning Services API), PINFOLD_BENCH_LATENCY_SAMPLES (20; 0 skips part 3),
// PINFOLD_BENCH_SUSTAINED_PINS (100000; 0 skips part 4), PINFOLD_BENCH_UNBATCHED (set: parts
// 1, 2 and 4 write one delta per pin, the default settings, instead of batching).
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { awaitFreespace, Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { cidBytes, cidText, rawCid } from '../support/cid.mjs';
import { carFile } from '../support/car.mjs';
import { Connection } from '../support/http.mjs';
import { freePort } from '../support/net.mjs';
import { percentiles } from '../support/stats.mjs';

const pins = Number(process.env.PINFOLD_BENCH_PINS ?? 100_000);
const concurrency = Number(process.env.PINFOLD_BENCH_CONCURRENCY ?? 32);
const samples = Number(process.env.PINFOLD_BENCH_LATENCY_SAMPLES ?? 20);
const sustained = Number(process.env.PINFOLD_BENCH_SUSTAINED_PINS ?? 100_000);
/** Writes batched (1000 pins or 1 s per delta) unless PINFOLD_BENCH_UNBATCHED is set. */
const batchedWrites = process.env.PINFOLD_BENCH_UNBATCHED
  ? {}
  : { CLUSTER_CRDT_BATCHING_MAXBATCHSIZE: '1000', CLUSTER_CRDT_BATCHING_MAXBATCHAGE: '1s' };
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

/** A CIDv1 (raw, sha2-256) of the i-th synthetic block. */
const syntheticCid = (i) => rawCid(`pinfold bench ${i}`);

const rssBytes = (peer) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${peer.child.pid}/status`, 'utf8'))[1]) * 1024;
const crdt = async (peer) => JSON.parse((await peer.get('/state/crdt')).body);
const seconds = (ms) => (ms / 1000).toFixed(2);

async function sameState(a, b) {
  const [x, y] = await Promise.all([crdt(a), crdt(b)]);
  return (
    x.synced &&
    y.synced &&
    x.heads.length > 0 &&
    JSON.stringify(x.heads.map((h) => h.cid).sort()) === JSON.stringify(y.heads.map((h) => h.cid).sort())
  );
}

/**
 * POSTs `url(i)` (with the JSON body `body(i)`, when given) for i in 0..count from
 * `concurrency` clients, each with its own keep-alive connection and each answer 2xx;
 * every URL has one origin. Returns the milliseconds taken. `sending(i)`, when given, is
 * called as each request goes out.
 */
async function postAll(count, url, { body, sending } = {}) {
  const origin = new URL(url(0)).origin;
  let next = 0;
  const started = Date.now();
  async function worker() {
    const connection = new Connection(origin);
    try {
      while (next < count) {
        const i = next++;
        sending?.(i);
        const target = url(i);
        const json = body?.(i);
        const res = await connection.request('POST', target.slice(origin.length), json && JSON.stringify(json));
        if (res.status < 200 || res.status > 299) throw new Error(`request ${i}: ${res.status} ${res.body}`);
      }
    } finally {
      connection.close();
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return Date.now() - started;
}

/** Part 1 ingests through the Pinning Services API instead of the REST API. */
const pinningServiceApi = process.env.PINFOLD_BENCH_INGEST_API === 'pinsvc';
/** Every how many ingested pins one is watched for at the other peer. */
const VISIBILITY_SAMPLE_EVERY = 100;

/**
 * Ingests the pins at `writer`; every VISIBILITY_SAMPLE_EVERY-th pin is watched for at
 * `observer` (its REST API read every 2 ms, for at most 60 s). Resolves with the
 * milliseconds the ingest took and each watched pin's delay from its POST to the observer
 * holding it.
 */
async function ingest(writer, observer) {
  const watched = [];
  const sending = (i) => {
    if (i % VISIBILITY_SAMPLE_EVERY !== 0) return;
    const sent = performance.now();
    const cid = syntheticCid(i);
    watched.push(
      (async () => {
        while (performance.now() - sent < 60_000) {
          if ((await observer.get(`/allocations/${cid}`)).status === 200) return performance.now() - sent;
          await new Promise((r) => setTimeout(r, 2));
        }
        throw new Error(`pin ${i} not at ${observer.name} 60 s after its POST`);
      })(),
    );
  };
  const ms = pinningServiceApi
    ? await postAll(pins, () => `${writer.pinningApi}/pins`, { body: (i) => ({ cid: syntheticCid(i) }), sending })
    : await postAll(pins, (i) => `${writer.api}/pins/${syntheticCid(i)}`, { sending });
  return { ms, delays: await Promise.all(watched) };
}

/** Polls `check` every millisecond (at most `ms`): the waits measured here need finer steps than waitFor's. */
async function waitClosely(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** How many recursive pins a Kubo lists. */
async function recursivePins(ipfs) {
  const res = await fetch(`${ipfs.api}/pin/ls?stream=true&type=recursive`, {
    method: 'POST',
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  return text.split('\n').filter(Boolean).length;
}

async function pinsetBench() {
  // Relay peers keep and serve the pinset and accept writes, but pin nothing: this part
  // measures the pinset alone.
  const batching = { CLUSTER_ROLE: 'relay', ...batchedWrites };
  const writer = await (await new Peer('writer', { env: batching, logLevel: 'info' }).init(secret)).start();
  const observer = await (
    await new Peer('observer', { env: batching, logLevel: 'info' }).init(secret)
  ).start(['--bootstrap', writer.address]);
  await waitFor('the observer to connect', async () => (await observer.list('/peers')).length === 2);

  const started = Date.now();
  const { ms: ingestMs, delays } = await ingest(writer, observer);
  await waitFor('the observer to hold every pin', () => sameState(writer, observer), 30 * 60_000);
  const visibleMs = Date.now() - started;
  console.log(
    `ingest: ${pins} pins acknowledged by the writer's ${pinningServiceApi ? 'Pinning Services API' : 'REST API'} in ${seconds(ingestMs)} s (${Math.round((pins / ingestMs) * 1000)} pins/s, ${concurrency} concurrent clients)`,
  );
  console.log(
    `ingest: all ${pins} visible at the other peer after ${seconds(visibleMs)} s (${Math.round((pins / visibleMs) * 1000)} pins/s)`,
  );
  const delay = percentiles(delays);
  console.log(
    `ingest: from the POST to the other peer holding the pin (every ${VISIBILITY_SAMPLE_EVERY}th pin, ${delay.n} pins): median ${delay.p50.toFixed(1)} ms, p99 ${delay.p99.toFixed(1)} ms, worst ${delay.max.toFixed(1)} ms`,
  );

  const joinStarted = Date.now();
  const joiner = await (
    await new Peer('joiner', { env: batching, logLevel: 'info' }).init(secret)
  ).start(['--bootstrap', writer.address]);
  await waitFor('the new peer to sync', () => sameState(writer, joiner), 60 * 60_000);
  const joinMs = Date.now() - joinStarted;
  const state = await crdt(joiner);
  console.log(
    `join: a new peer synced ${pins} pins (${state.merged} deltas, height ${state.height}) in ${seconds(joinMs)} s from start-up`,
  );
  for (const peer of [writer, observer, joiner]) {
    const rss = rssBytes(peer);
    console.log(`memory: ${peer.name} resident ${(rss / 2 ** 20).toFixed(1)} MiB, ${Math.round(rss / pins)} B/pin`);
  }
  for (const peer of [joiner, observer, writer]) await peer.stop();
}

async function latencyBench() {
  const a = await (
    await new Peer('lat-a', { ipfs: await new Ipfs('lat-a').start(), logLevel: 'info' }).init(secret)
  ).start();
  const b = await (
    await new Peer('lat-b', { ipfs: await new Ipfs('lat-b').start(), logLevel: 'info' }).init(secret)
  ).start(['--bootstrap', a.address]);
  await awaitFreespace([a, b]);
  // The daemons connect through the cluster; wait until b's daemon reaches a's.
  const aId = JSON.parse((await a.ipfs.rpc('id')).body).ID;
  await waitFor("b's daemon to connect to a's", async () => (await b.ipfs.rpc('swarm/peers')).body.includes(aId));
  const cluster = [];
  const direct = [];
  for (let i = 0; i < samples; i++) {
    const viaCluster = await a.ipfs.addContent(`latency cluster ${i}`);
    let t0 = performance.now();
    const res = await a.post(`/pins/${viaCluster}?replication=1&user-allocations=${b.id}`);
    if (res.status !== 200) throw new Error(res.body);
    await waitClosely('pinned on b', () => b.ipfs.isPinned(viaCluster));
    cluster.push(performance.now() - t0);

    const viaDaemon = await a.ipfs.addContent(`latency direct ${i}`);
    t0 = performance.now();
    const add = await b.ipfs.rpc(`pin/add?arg=${viaDaemon}&recursive=true`);
    if (add.status !== 200) throw new Error(add.body);
    direct.push(performance.now() - t0);
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const ms = (x) => x.toFixed(1);
  console.log(
    `latency: pin add -> pinned on the allocated Kubo, median of ${samples}: ${ms(median(cluster))} ms (min ${ms(Math.min(...cluster))}, max ${ms(Math.max(...cluster))})`,
  );
  console.log(
    `latency: pin/add on that Kubo directly, median of ${samples}: ${ms(median(direct))} ms (min ${ms(Math.min(...direct))}, max ${ms(Math.max(...direct))})`,
  );
  console.log(`latency: the cluster takes ${(median(cluster) / median(direct)).toFixed(2)} times the direct time`);
  for (const peer of [b, a]) await peer.stop();
}

async function sustainedBench() {
  const blocks = Array.from({ length: sustained }, (_, i) => {
    const bytes = Buffer.from(`pinfold sustained ${process.pid} ${i}`);
    return [cidBytes(0x55, bytes), bytes];
  });
  const cids = blocks.map(([cid]) => cid);
  const car = carFile([cids[0]], blocks);
  const daemons = await Promise.all(['sus-a', 'sus-b', 'sus-c', 'sus-direct'].map((name) => new Ipfs(name).start()));
  await Promise.all(
    daemons.map(async (ipfs) => {
      const form = new FormData();
      form.append('file', new Blob([car]));
      const res = await fetch(`${ipfs.api}/dag/import?pin-roots=false`, {
        method: 'POST',
        body: form,
        signal: AbortSignal.timeout(30 * 60_000),
      });
      if (res.status !== 200) throw new Error(`dag/import: ${res.status} ${await res.text()}`);
    }),
  );
  const direct = daemons.pop();
  const directMs = await postAll(sustained, (i) => `${direct.api}/pin/add?arg=${cidText(cids[i])}`);
  console.log(
    `sustained: Kubo alone pinned ${sustained} blocks in ${seconds(directMs)} s (${Math.round((sustained / directMs) * 1000)} pins/s, ${concurrency} clients)`,
  );

  // Writes batched as in the pinset part (the pinset's cost is measured there). Each peer
  // serves its Prometheus gauges, read while pinning goes on: listing every Kubo's pins as
  // often would load the very daemons being measured.
  const metricsPorts = await Promise.all(daemons.map(() => freePort()));
  const env = (n) => ({
    CLUSTER_REPLICATIONFACTORMIN: '2',
    CLUSTER_REPLICATIONFACTORMAX: '2',
    ...batchedWrites,
    CLUSTER_METRICS_ENABLESTATS: 'true',
    CLUSTER_METRICS_REPORTINGINTERVAL: '250ms',
    CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/127.0.0.1/tcp/${metricsPorts[n]}`,
  });
  const [first, ...rest] = daemons.map((ipfs, n) => new Peer(`sus-${n}`, { ipfs, env: env(n), logLevel: 'info' }));
  await (await first.init(secret)).start();
  for (const peer of rest) await (await peer.init(secret)).start(['--bootstrap', first.address]);
  const peers = [first, ...rest];
  await awaitFreespace(peers);
  const gauges = async (n) => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPorts[n]}/metrics`)).text();
    const gauge = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return {
      pins: gauge('ipfscluster_pins'),
      waiting: gauge('ipfscluster_pins_pin_queued') + gauge('ipfscluster_pins_pinning'),
      done: gauge('ipfscluster_pins_pin_add') - gauge('ipfscluster_pins_pin_add_errors'),
    };
  };
  const started = Date.now();
  const ingestMs = await postAll(sustained, (i) => `${first.api}/pins/${cidText(cids[i])}`);
  let peak = 0;
  const kubos = [];
  await waitFor(
    'every allocated Kubo to list its pins',
    async () => {
      for (const peer of peers) peak = Math.max(peak, rssBytes(peer));
      const states = await Promise.all(peers.map((_, n) => gauges(n)));
      const settled = states.every((s) => s.pins === sustained && s.waiting === 0);
      if (!settled || states.reduce((sum, s) => sum + s.done, 0) < 2 * sustained) return false;
      const counts = await Promise.all(daemons.map(recursivePins));
      kubos.splice(0, 3, ...counts);
      return counts.reduce((x, y) => x + y, 0) >= 2 * sustained;
    },
    60 * 60_000,
  );
  const pinnedMs = Date.now() - started;
  console.log(
    `sustained: the cluster acknowledged ${sustained} pins in ${seconds(ingestMs)} s; every allocated Kubo listed them after ${seconds(pinnedMs)} s: ${Math.round((sustained / pinnedMs) * 1000)} pins/s, ${Math.round(((2 * sustained) / pinnedMs) * 1000)} Kubo pins/s over 3 daemons (replication 2)`,
  );
  console.log(`sustained: pins on each Kubo ${kubos.join(', ')} (allocations follow freespace, as ipfs-cluster's)`);
  console.log(`sustained: largest peer resident memory on the way ${(peak / 2 ** 20).toFixed(1)} MiB`);
  for (const peer of peers) await peer.stop();
}

try {
  if (pins > 0) await pinsetBench();
  if (samples > 0) await latencyBench();
  if (sustained > 0) await sustainedBench();
} finally {
  await stopAll();
}
