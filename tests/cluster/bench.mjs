// End-to-end cluster benchmarks on loopback (run by scripts/bench-cluster, figures printed):
//   1. pins/s ingested at one peer through the REST API, and until visible at another peer;
//   2. time for a new peer to join and sync the whole pinset, and resident memory per pin;
//   3. time from `pin add` to pinned on the allocated daemon, against pinning the same kind
//      of content on the daemon directly.
// Environment: PINFOLD_BENCH_PINS (default 100000), PINFOLD_BENCH_CONCURRENCY (32),
// PINFOLD_BENCH_LATENCY_SAMPLES (10; 0 skips part 3).
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { rawCid } from '../support/cid.mjs';

const pins = Number(process.env.PINFOLD_BENCH_PINS ?? 100_000);
const concurrency = Number(process.env.PINFOLD_BENCH_CONCURRENCY ?? 32);
const samples = Number(process.env.PINFOLD_BENCH_LATENCY_SAMPLES ?? 10);
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

/** A CIDv1 (raw, sha2-256) of the i-th synthetic block. */
const syntheticCid = (i) => rawCid(`pinfold bench ${i}`);

const rssBytes = (peer) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${peer.child.pid}/status`, 'utf8'))[1]) * 1024;
const crdt = async (peer) => JSON.parse((await peer.get('/state/crdt')).body);
const seconds = (ms) => (ms / 1000).toFixed(2);

async function sameState(a, b) {
  const [x, y] = await Promise.all([crdt(a), crdt(b)]);
  return x.synced && y.synced && x.heads.length > 0 && JSON.stringify([...x.heads].sort()) === JSON.stringify([...y.heads].sort());
}

async function ingest(writer) {
  let next = 0;
  const started = Date.now();
  async function worker() {
    while (next < pins) {
      const i = next++;
      const res = await fetch(`${writer.api}/pins/${syntheticCid(i)}`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
      if (res.status !== 200) throw new Error(`pin ${i}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return Date.now() - started;
}

async function pinsetBench() {
  // Relay peers keep and serve the pinset and accept writes, but pin nothing: this part
  // measures the pinset alone. Writes are batched (1000 pins or 1 s per delta).
  const batching = { CLUSTER_ROLE: 'relay', CLUSTER_CRDT_BATCHING_MAXBATCHSIZE: '1000', CLUSTER_CRDT_BATCHING_MAXBATCHAGE: '1s' };
  const writer = await (await new Peer('writer', { env: batching }).init(secret)).start();
  const observer = await (await new Peer('observer', { env: batching }).init(secret)).start(['--bootstrap', writer.address]);
  await waitFor('the observer to connect', async () => (await observer.list('/peers')).length === 2);

  const started = Date.now();
  const ingestMs = await ingest(writer);
  await waitFor('the observer to hold every pin', () => sameState(writer, observer), 30 * 60_000);
  const visibleMs = Date.now() - started;
  console.log(`ingest: ${pins} pins acknowledged by the writer in ${seconds(ingestMs)} s (${Math.round(pins / ingestMs * 1000)} pins/s, ${concurrency} concurrent clients)`);
  console.log(`ingest: all ${pins} visible at the other peer after ${seconds(visibleMs)} s (${Math.round(pins / visibleMs * 1000)} pins/s)`);

  const joinStarted = Date.now();
  const joiner = await (await new Peer('joiner', { env: batching }).init(secret)).start(['--bootstrap', writer.address]);
  await waitFor('the new peer to sync', () => sameState(writer, joiner), 60 * 60_000);
  const joinMs = Date.now() - joinStarted;
  const state = await crdt(joiner);
  console.log(`join: a new peer synced ${pins} pins (${state.merged} deltas, height ${state.height}) in ${seconds(joinMs)} s from start-up`);
  for (const peer of [writer, observer, joiner]) {
    const rss = rssBytes(peer);
    console.log(`memory: ${peer.name} resident ${(rss / 2 ** 20).toFixed(1)} MiB, ${Math.round(rss / pins)} B/pin`);
  }
  for (const peer of [joiner, observer, writer]) await peer.stop();
}

async function latencyBench() {
  const a = await (await new Peer('lat-a', { ipfs: await new Ipfs('lat-a').start() }).init(secret)).start();
  const b = await (await new Peer('lat-b', { ipfs: await new Ipfs('lat-b').start() }).init(secret)).start(['--bootstrap', a.address]);
  for (const peer of [a, b]) {
    await waitFor(`${peer.name} to see 2 freespace metrics`, async () => JSON.parse((await peer.get('/monitor/metrics/freespace')).body).filter((m) => m.valid).length === 2);
  }
  // The daemons connect through the cluster; wait until b's daemon reaches a's.
  const aId = JSON.parse((await a.ipfs.rpc('id')).body).ID;
  await waitFor("b's daemon to connect to a's", async () => (await b.ipfs.rpc('swarm/peers')).body.includes(aId));
  const cluster = [];
  const direct = [];
  for (let i = 0; i < samples; i++) {
    const viaCluster = await a.ipfs.addContent(`latency cluster ${i}`);
    let t0 = Date.now();
    const res = await a.post(`/pins/${viaCluster}?replication=1&user-allocations=${b.id}`);
    if (res.status !== 200) throw new Error(res.body);
    await waitFor('pinned on b', () => b.ipfs.isPinned(viaCluster), 60_000);
    cluster.push(Date.now() - t0);

    const viaDaemon = await a.ipfs.addContent(`latency direct ${i}`);
    t0 = Date.now();
    const add = await b.ipfs.rpc(`pin/add?arg=${viaDaemon}&recursive=true`);
    if (add.status !== 200) throw new Error(add.body);
    direct.push(Date.now() - t0);
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(`latency: pin add -> pinned on the allocated daemon, median of ${samples}: ${median(cluster)} ms (min ${Math.min(...cluster)}, max ${Math.max(...cluster)})`);
  console.log(`latency: pin/add on that daemon directly, median of ${samples}: ${median(direct)} ms (min ${Math.min(...direct)}, max ${Math.max(...direct)})`);
}

try {
  await pinsetBench();
  if (samples > 0) await latencyBench();
} finally {
  await stopAll();
}
