// A peer's Kubo failing under a steady load of pins (20 a second through the REST API):
// killed, then hanging (SIGSTOP), then answering errors. The statuses on the way say what
// happened, the queue holds each waiting pin once, and every pin ends pinned once Kubo is
// back. Run: node --test tests/faults/ (scripts/test does).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, runDir, sleep, stopAll, waitFor } from '../cluster/harness.mjs';
import { identityCid } from '../support/cid.mjs';
import { freePort } from '../support/net.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const RATE = 20;

after(async () => {
  await stopAll();
});

const pidOf = (ipfs) => Number(fs.readFileSync(path.join(runDir, 'ipfs', ipfs.name, 'daemon.pid'), 'utf8'));

test('Kubo killed, hanging, then answering errors under a steady load: statuses say so, queues stay bounded, every pin ends pinned', async () => {
  const kubo = await new Ipfs('load-kubo').start();
  const metricsPort = await freePort();
  const peer = await (
    await new Peer('load-kubo', {
      ipfs: kubo,
      logLevel: 'info',
      env: {
        CLUSTER_IPFSHTTP_PINTIMEOUT: '3s',
        CLUSTER_IPFSHTTP_IPFSREQUESTTIMEOUT: '3s',
        CLUSTER_STATELESS_RETRYBASEDELAY: '1s',
        CLUSTER_STATELESS_RETRYMAXDELAY: '2s',
        CLUSTER_METRICS_ENABLESTATS: 'true',
        CLUSTER_METRICS_REPORTINGINTERVAL: '250ms',
        CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/127.0.0.1/tcp/${metricsPort}`,
      },
    }).init(secret)
  ).start();
  const waiting = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const gauge = (name) => {
      const found = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
      if (!found) throw new Error(`no ${name} gauge in the peer's metrics`);
      return Number(found[1]);
    };
    return gauge('ipfscluster_pins_pin_queued') + gauge('ipfscluster_pins_pinning');
  };
  const statusOf = async (cid) => JSON.parse((await peer.get(`/pins/${cid}?local=true`)).body).peer_map[peer.id];

  // The load, and the largest queue seen while it runs.
  const acknowledged = [];
  let loading = true;
  let largestQueue = 0;
  const load = (async () => {
    let next = Date.now();
    for (let i = 0; loading; i++) {
      const cid = identityCid(`kubo load ${process.pid} ${i}`);
      const res = await peer.post(`/pins/${cid}`);
      assert.equal(res.status, 200, `writes do not depend on Kubo: ${res.body}`);
      acknowledged.push(cid);
      next += 1000 / RATE;
      await sleep(Math.max(0, next - Date.now()));
    }
  })();
  const sampler = (async () => {
    while (loading) {
      largestQueue = Math.max(largestQueue, await waiting());
      await sleep(500);
    }
  })();
  /** A pin in error whose reason matches `reason` (pins behind it wait, queued). */
  const failsWith = (what, reason) =>
    waitFor(
      what,
      async () => {
        const errors = (await peer.list('/pins?filter=pin_error&local=true')).map((g) => g.peer_map[peer.id]);
        const found = errors.find((s) => reason.test(s.error));
        if (found) return found;
        throw new Error(`pins in error: ${JSON.stringify(errors.slice(0, 3))}`);
      },
      30_000,
    );

  try {
    await sleep(3000);
    // Killed.
    process.kill(pidOf(kubo), 'SIGKILL');
    const killed = await failsWith(
      'a pin to fail with Kubo gone',
      /unreachable|connection refused|error sending request/i,
    );
    console.log(`Kubo killed: ${killed.error}`);
    fs.rmSync(path.join(runDir, 'ipfs', kubo.name, 'daemon.pid'));
    await kubo.start();
    await sleep(3000);
    // Hanging.
    const pid = pidOf(kubo);
    process.kill(pid, 'SIGSTOP');
    try {
      const hung = await failsWith(
        'a pin to fail on the hanging Kubo',
        /did not answer .* within 3s|made no progress for 3s/,
      );
      console.log(`Kubo hanging: ${hung.error}`);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await sleep(3000);
    // Errors: a block Kubo holds but cannot decode, pinned among the others.
    const form = new FormData();
    form.append('file', new Blob(['abc']));
    const put = await kubo.rpc('block/put?cid-codec=dag-cbor', { body: form });
    assert.equal(put.status, 200, put.body);
    const broken = JSON.parse(put.body).Key;
    assert.equal((await peer.post(`/pins/${broken}`)).status, 200);
    const refused = await waitFor(
      'the undecodable block to fail with Kubo’s reason',
      async () => {
        const s = await statusOf(broken);
        return s?.status === 'pin_error' && s;
      },
      30_000,
    );
    assert.match(refused.error, /IPFS daemon: pin: .*cbor/);
    console.log(`Kubo answering an error: ${refused.error}`);
    assert.equal((await peer.post(`/pins/${broken}`, 'DELETE')).status, 200);
    await sleep(3000);
  } finally {
    loading = false;
    await load;
    await sampler;
  }

  const want = new Set(acknowledged);
  await waitFor(
    `Kubo to pin all ${want.size} pins`,
    async () => {
      const { status, body } = await kubo.rpc('pin/ls?type=recursive');
      return status === 200 && Object.keys(JSON.parse(body).Keys ?? {}).filter((c) => want.has(c)).length === want.size;
    },
    120_000,
  );
  await waitFor('the queue to empty', async () => (await waiting()) === 0, 60_000);
  const { body } = await peer.get('/pins?filter=pin_error');
  assert.equal(body.trim(), '', `no pin left in error: ${body.slice(0, 500)}`);
  assert.ok(largestQueue <= want.size, `the queue held each waiting pin once: ${largestQueue} > ${want.size}`);
  assert.ok(largestQueue > 0, 'pins waited in the queue while Kubo failed');
  console.log(`${want.size} pins written under the faults; largest queue ${largestQueue}; all pinned in the end`);
});
