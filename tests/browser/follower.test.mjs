// The npm package in headless Chromium (Debian's, driven by playwright-core): a page joins
// a relay over WebSocket and over webrtc-direct, loads the pinset from the relay's snapshot,
// sees a pin added live, runs the follower in a Web Worker, resumes from IndexedDB after a
// reload, gets WrongSecretError for a wrong secret on both transports, and reaches a peer
// through a relay circuit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { launchChromium, serveNpm } from './page.mjs';

const PINS = 2_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let relay;
let server;
let origin;
let browser;
let page;
let addresses;

before(async () => {
  relay = await new Peer('browser-relay', {
    listen: ['tcp', 'ws', 'webrtc'],
    env: { CLUSTER_ROLE: 'relay', CLUSTER_CRDT_SNAPSHOTEVERY: '1', CLUSTER_CRDT_SNAPSHOTMININTERVAL: '1s' },
  }).init(secret);
  const lines = [];
  for (let i = 0; i < PINS; i++) {
    lines.push(
      JSON.stringify({
        cid: rawCid(`browser pin ${i}`),
        name: `bulk-${i}`,
        allocations: [relay.id],
        replication_factor_min: 1,
        replication_factor_max: 1,
      }),
    );
  }
  const file = path.join(runDir, 'browser-bulk.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();
  addresses = { ws: await relay.addressOf('ws'), webrtc: await relay.addressOf('webrtc') };
  ({ server, origin } = await serveNpm());
  browser = await launchChromium();
  page = await browser.newPage();
  page.on('pageerror', (error) => console.log(`# page error: ${error.message}`));
  await page.goto(origin);
});

after(async () => {
  await browser?.close();
  server?.close();
  await stopAll();
});

/** Joins in the page with `spawn` ("follow" or "spawnWorker"), waits for the sync, and
 * returns what the page saw; the follower stays open as `window.followers[key]`. */
async function joinInPage(key, spawn, bootstrap, trustedPeers) {
  return page.evaluate(
    async ({ key, spawn, bootstrap, secret, trustedPeers, pins }) => {
      const pinfold = await import('/lib/index.js');
      const started = performance.now();
      const follower = await pinfold[spawn]({ bootstrap, secret, trustedPeers });
      const joined = performance.now() - started;
      const seen = new Set();
      follower.on('pin', (pin) => seen.add(pin.cid));
      (window.followers ??= {})[key] = { follower, seen };
      for (;;) {
        const state = await follower.syncState();
        if (state.synced && state.pins >= pins) return { joined, synced: performance.now() - started, state };
        if (performance.now() - started > 60_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    { key, spawn, bootstrap, secret, trustedPeers, pins: PINS },
  );
}

async function seesLivePin(key, label) {
  const cid = rawCid(label);
  // Everywhere: the relay pins nothing, so no daemon works on it.
  const res = await relay.post(`/pins/${cid}?replication-min=-1&replication-max=-1`);
  assert.equal(res.status, 200, res.body);
  await waitFor(
    `the page's ${key} follower to see ${label}`,
    () => page.evaluate(({ key, cid }) => window.followers[key].seen.has(cid), { key, cid }),
    10_000,
  );
}

test('a page joins over WebSocket and loads the pinset from the snapshot', async () => {
  const result = await joinInPage('ws', 'follow', [addresses.ws], [relay.id]);
  console.log(
    `# WebSocket: joined in ${result.joined.toFixed(0)} ms, ${PINS} pins synced in ${result.synced.toFixed(0)} ms`,
  );
  assert.equal(result.state.snapshot?.keys, PINS);
  const first = await page.evaluate(async () => {
    const { follower } = window.followers.ws;
    for await (const pin of follower.pins({ pageSize: 10 })) return pin;
  });
  assert.match(first.name, /^bulk-/);
});

test('a page joins over webrtc-direct, proving the secret', async () => {
  const result = await joinInPage('webrtc', 'follow', [addresses.webrtc], [relay.id]);
  console.log(
    `# webrtc-direct: joined in ${result.joined.toFixed(0)} ms, ${PINS} pins synced in ${result.synced.toFixed(0)} ms`,
  );
  assert.equal(result.state.pins, PINS);
});

test('the follower runs in a Web Worker', async () => {
  const result = await joinInPage('worker', 'spawnWorker', [addresses.ws], [relay.id]);
  console.log(
    `# Worker: joined in ${result.joined.toFixed(0)} ms, ${PINS} pins synced in ${result.synced.toFixed(0)} ms`,
  );
  assert.equal(result.state.pins, PINS);
});

test('a follower kept in IndexedDB resumes after a reload, with its identity', async () => {
  const options = {
    bootstrap: [addresses.ws],
    secret,
    trustedPeers: [relay.id],
    storage: 'indexeddb',
    storageName: 'pinfold-reload-test',
  };
  const tab = await browser.newPage();
  tab.on('pageerror', (error) => console.log(`# page error: ${error.message}`));
  await tab.goto(origin);
  const syncAndClose = () =>
    tab.evaluate(
      async ({ options, pins }) => {
        const pinfold = await import('/lib/index.js');
        const started = performance.now();
        const follower = await pinfold.follow(options);
        for (;;) {
          const state = await follower.syncState();
          if (state.synced && state.pins >= pins) {
            const first = (await follower.pinsPage(undefined, 1))[0];
            await follower.close();
            return { ms: performance.now() - started, peerId: follower.peerId, state, first };
          }
          if (performance.now() - started > 60_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      { options, pins: PINS },
    );
  const cold = await syncAndClose();
  await tab.reload();
  const resumed = await syncAndClose();
  console.log(
    `# IndexedDB: cold sync ${cold.ms.toFixed(0)} ms, resumed after a reload in ${resumed.ms.toFixed(0)} ms (${resumed.state.pins} pins)`,
  );
  assert.equal(resumed.peerId, cold.peerId, 'the identity is kept');
  assert.equal(resumed.state.pins, cold.state.pins);
  assert.equal(resumed.state.merged, 0, 'nothing was fetched again');
  assert.deepEqual(resumed.first, cold.first);
  await tab.close();
});

test('each follower sees a pin added through the REST API', async () => {
  for (const key of ['ws', 'webrtc', 'worker']) await seesLivePin(key, `live for ${key}`);
});

test('a wrong secret is refused with WrongSecretError on WebSocket and webrtc-direct', async () => {
  const wrong = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
  for (const address of [addresses.ws, addresses.webrtc]) {
    const outcome = await page.evaluate(
      async ({ address, wrong, trusted }) => {
        const pinfold = await import('/lib/index.js');
        const started = performance.now();
        try {
          await pinfold.follow({ bootstrap: [address], secret: wrong, trustedPeers: [trusted] });
          return { joined: true };
        } catch (error) {
          return {
            name: error.name,
            code: error.code,
            message: error.message,
            ms: performance.now() - started,
            typed: error instanceof pinfold.WrongSecretError,
          };
        }
      },
      { address, wrong, trusted: relay.id },
    );
    console.log(
      `# wrong secret over ${address.includes('webrtc') ? 'webrtc-direct' : 'WebSocket'}: ${outcome.code} in ${outcome.ms?.toFixed(0)} ms`,
    );
    assert.equal(outcome.typed, true, JSON.stringify(outcome));
    assert.match(outcome.message, /wrong cluster secret/);
  }
  await waitFor(
    'the relay to log the refused WebRTC proof',
    () => /did not prove the cluster secret/.test(fs.readFileSync(relay.log, 'utf8')),
    10_000,
  );
});

test('a page reaches a peer through a relay circuit', async () => {
  // The hidden peer has no listener a browser can dial: only a reservation on the relay.
  const hidden = await new Peer('browser-hidden', {
    listen: ['tcp', `${relay.address}/p2p-circuit`],
    env: { CLUSTER_CRDT_TRUSTEDPEERS: relay.id },
  }).init(secret);
  await hidden.start(['--bootstrap', relay.address]);
  try {
    const circuit = await waitFor(
      'the circuit address in /id',
      async () =>
        JSON.parse((await hidden.get('/id')).body).addresses.find(
          (a) => a.includes('/ws/') && a.includes('/p2p-circuit/'),
        ),
      30_000,
    );
    const result = await joinInPage('circuit', 'follow', [circuit], [relay.id]);
    console.log(
      `# relay circuit: joined in ${result.joined.toFixed(0)} ms, ${PINS} pins synced in ${result.synced.toFixed(0)} ms`,
    );
    const cid = rawCid('browser pin 9');
    await waitFor(
      'the hidden peer to answer a status over the circuit',
      () =>
        page.evaluate(
          async ({ cid, hidden }) => {
            const [info] = await window.followers.circuit.follower.statuses([cid]);
            return info?.peer_map[hidden]?.status === 'remote';
          },
          { cid, hidden: hidden.id },
        ),
      60_000,
    );
    await page.evaluate(() => window.followers.circuit.follower.close());
  } finally {
    await hidden.stop();
  }
});
