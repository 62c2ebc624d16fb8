// A member that holds the secret but is not trusted floods the cluster: a pinfold peer
// outside the trusted set writes 20,000 pins as fast as 32 clients can (one head broadcast
// each), while a flooder (native/examples/flood.rs) publishes random heads and junk on the
// CRDT topic and bitswap wants of random CIDs. The two trusted peers, each with its Kubo,
// ignore the untrusted writes, keep their memory bounded and go on taking and sharing
// their own writes meanwhile. Run: node --test tests/faults/ (scripts/test does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, sleep, stopAll, waitFor } from '../cluster/harness.mjs';
import { identityCid } from '../support/cid.mjs';
import { freePort } from '../support/net.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const flooderBin = path.join(path.dirname(pinfoldBin), 'examples', 'flood');
const FLOOD_SECONDS = 30;
let a;
let b;
let untrusted;
let metricsPort;

before(async () => {
  assert.ok(fs.existsSync(flooderBin), `${flooderBin} is missing: cargo build -p pinfold --example flood`);
  const [ipfsA, ipfsB] = await Promise.all([new Ipfs('flood-a').start(), new Ipfs('flood-b').start()]);
  metricsPort = await freePort();
  const metrics = {
    CLUSTER_METRICS_ENABLESTATS: 'true',
    CLUSTER_METRICS_REPORTINGINTERVAL: '250ms',
    CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/127.0.0.1/tcp/${metricsPort}`,
  };
  a = await new Peer('flood-a', { ipfs: ipfsA, env: metrics }).init(secret);
  b = await new Peer('flood-b', { ipfs: ipfsB }).init(secret);
  const trusted = { CLUSTER_CRDT_TRUSTEDPEERS: `${a.id},${b.id}` };
  a.extraEnv = { ...a.extraEnv, ...trusted };
  b.extraEnv = { ...b.extraEnv, ...trusted };
  // It trusts everyone (the default) and pins nothing: it only writes.
  untrusted = await new Peer('flood-untrusted', { env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  await a.start();
  await b.start(['--bootstrap', a.address]);
  await untrusted.start(['--bootstrap', a.address]);
  for (const peer of [a, b]) {
    await waitFor(`${peer.name} to see the three peers`, async () => {
      return JSON.parse((await peer.get('/monitor/metrics/ping')).body).length === 3;
    });
  }
});

after(async () => {
  await stopAll();
});

/** Resident memory (MiB) and CPU time (s) of a process, from /proc. */
function usage(pid) {
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  // utime and stime, the 14th and 15th fields, after the command's parenthesis.
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString());
  return { rss, cpu: (Number(fields[11]) + Number(fields[12])) / ticks };
}

const pinset = async (peer) => new Set((await peer.list('/allocations')).map((p) => p.cid));

test('an untrusted member floods the CRDT topic and bitswap: the trusted peers ignore its writes, stay bounded and keep working', async () => {
  const trustedPeers = [a, b];
  const baseline = trustedPeers.map((p) => usage(p.child.pid));
  const peak = baseline.map((u) => u.rss);
  const started = Date.now();

  const flooder = spawn(flooderBin, ['--secret', secret, '--peer', a.address, '--seconds', `${FLOOD_SECONDS}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let flooderOut = '';
  flooder.stdout.on('data', (d) => (flooderOut += d));
  flooder.stderr.on('data', (d) => (flooderOut += d));
  const flooderDone = new Promise((resolve) => flooder.once('exit', resolve));

  // The untrusted writer: 20,000 pins through its REST API, 32 clients at a time.
  const untrustedCids = Array.from({ length: 20_000 }, (_, i) => identityCid(`untrusted ${process.pid} ${i}`));
  let next = 0;
  const writing = Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < untrustedCids.length && Date.now() - started < FLOOD_SECONDS * 1000) {
        const res = await untrusted.post(`/pins/${untrustedCids[next++]}`);
        assert.equal(res.status, 200, res.body);
      }
    }),
  );

  // Meanwhile the trusted peers take writes, each seen at the other peer.
  const trustedCids = [];
  let slowest = 0;
  while (Date.now() - started < FLOOD_SECONDS * 1000) {
    const writer = trustedPeers[trustedCids.length % 2];
    const reader = trustedPeers[(trustedCids.length + 1) % 2];
    const cid = await writer.ipfs.addContent(`trusted during the flood ${trustedCids.length}`);
    const sent = Date.now();
    assert.equal((await writer.post(`/pins/${cid}?replication-min=-1&replication-max=-1`)).status, 200);
    await waitFor(
      `${reader.name} to see a trusted pin during the flood`,
      async () => (await pinset(reader)).has(cid),
      30_000,
    );
    slowest = Math.max(slowest, Date.now() - sent);
    trustedCids.push(cid);
    trustedPeers.forEach((p, i) => (peak[i] = Math.max(peak[i], usage(p.child.pid).rss)));
    await sleep(500);
  }
  await writing;
  const code = await flooderDone;
  assert.equal(code, 0, flooderOut);
  const sent = JSON.parse(flooderOut.trim().split('\n').at(-1));
  assert.ok(sent.published > 1000 && sent.wants > 100_000, `the flooder sent too little to matter: ${flooderOut}`);
  const written = untrustedCids.slice(0, next);
  // The wants reached the peer the flooder joined, and were answered or dropped.
  const metricsText = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const gauge = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(metricsText)?.[1]);
  const wantsReceived = gauge('pinfold_bitswap_wants_received');
  assert.ok(wantsReceived > 10_000, `${a.name} received ${wantsReceived} wants`);

  const after = trustedPeers.map((p) => usage(p.child.pid));
  for (const [i, peer] of trustedPeers.entries()) {
    const pins = await pinset(peer);
    assert.equal(written.filter((cid) => pins.has(cid)).length, 0, `${peer.name} took untrusted writes`);
    assert.ok(
      trustedCids.every((cid) => pins.has(cid)),
      `${peer.name} misses trusted pins`,
    );
    const growth = peak[i] - baseline[i].rss;
    const cpu = (after[i].cpu - baseline[i].cpu) / ((Date.now() - started) / 1000);
    console.log(
      `${peer.name}: RSS ${baseline[i].rss.toFixed(0)} MiB before, peak ${peak[i].toFixed(0)} MiB, ` +
        `CPU ${(cpu * 100).toFixed(0)}% of a core over the flood`,
    );
    assert.ok(growth < 128, `${peer.name}'s memory grew by ${growth.toFixed(0)} MiB`);
  }
  // The untrusted peer's own pinset has its writes: they were made, and refused elsewhere.
  const own = await pinset(untrusted);
  assert.ok(written.every((cid) => own.has(cid)));
  console.log(
    `flood: ${written.length} untrusted writes, ${sent.published} junk and random-head messages, ` +
      `${sent.wants} bitswap wants in ${FLOOD_SECONDS} s (${wantsReceived} read by ${a.name}, ` +
      `${gauge('pinfold_bitswap_dropped_messages')} of its answers dropped); ${trustedCids.length} trusted pins, ` +
      `the slowest seen at the other trusted peer after ${slowest} ms`,
  );
  // Both trusted peers' Kubos pin every trusted pin.
  for (const peer of trustedPeers) {
    await waitFor(`${peer.name}'s Kubo to pin the trusted pins`, async () => {
      for (const cid of trustedCids) if (!(await peer.ipfs.isPinned(cid))) return false;
      return true;
    });
  }
});
