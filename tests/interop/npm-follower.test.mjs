// The npm package's follower in a Go-only cluster, in Node (>= 22, for its global
// WebSocket) and in headless Chromium: it joins a Go ipfs-cluster v1.1.6 peer over /ws
// inside the cluster's private network and, with no snapshot to load (Go peers serve
// none), walks the CRDT DAG over bitswap from boxo, seeing every pin, and new ones live.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ipfs, stopAll, waitFor } from '../cluster/harness.mjs';
import { launchChromium, serveNpm } from '../browser/page.mjs';
import { follow } from '../../npm/lib/server.js';
import { GoPeer, clusterCtl, stopGoPeers } from './go.mjs';

const secret = '6e5d4c3b2a19f8e7d6c5b4a392817f6e5d4c3b2a19f8e7d6c5b4a392817f6e5d';
const PINS = 20;
let go;
let bootstrap;
let follower;
let browser;
let server;
const names = new Map();

/** Pins new content on the Go peer, through Go's ctl; its CID. */
async function pinOnGo(label) {
  const cid = await go.ipfs.addContent(label);
  await clusterCtl(go.api, ['pin', 'add', '--no-status', '--name', label, cid]);
  names.set(cid, label);
  return cid;
}

before(async () => {
  go = new GoPeer('npm-go', { ipfs: await new Ipfs('npm-go').start() });
  await go.init(secret);
  await go.start();
  bootstrap = [`/ip4/127.0.0.1/tcp/${go.wsPort}/ws/p2p/${go.id}`];
  for (let i = 0; i < PINS; i++) await pinOnGo(`go-${i}`);
});

after(async () => {
  await follower?.close();
  await browser?.close();
  server?.close();
  await stopGoPeers();
  await stopAll();
});

test('in Node, the npm follower follows a Go-only cluster over WebSocket, walking its DAG', async () => {
  follower = await follow({ bootstrap, secret, trustedPeers: [go.id] });
  const seen = new Set();
  follower.on('pin', (pin) => seen.add(pin.cid));
  await waitFor('the follower to hold the pins', async () => (await follower.syncState()).pins === PINS, 90_000);
  const listed = new Map();
  for await (const pin of follower.pins({ pageSize: 100 })) listed.set(pin.cid, pin.name);
  assert.deepEqual(listed, new Map([...names].slice(0, PINS)));
  const live = await pinOnGo('live-node');
  await waitFor('the live pin to reach the follower', () => seen.has(live), 60_000);
});

test('in Chromium, the npm follower follows the same Go-only cluster', async () => {
  let origin;
  ({ server, origin } = await serveNpm());
  browser = await launchChromium();
  const page = await browser.newPage();
  await page.goto(origin);
  const expected = names.size;
  const synced = await page.evaluate(
    async ({ bootstrap, secret, trusted, expected }) => {
      const pinfold = await import('/lib/index.js');
      const follower = await pinfold.follow({ bootstrap, secret, trustedPeers: [trusted] });
      window.seen = new Set();
      follower.on('pin', (pin) => window.seen.add(pin.cid));
      const started = performance.now();
      for (;;) {
        const state = await follower.syncState();
        if (state.pins >= expected) {
          const listed = {};
          for await (const pin of follower.pins({ pageSize: 100 })) listed[pin.cid] = pin.name;
          return listed;
        }
        if (performance.now() - started > 90_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    { bootstrap, secret, trusted: go.id, expected },
  );
  assert.deepEqual(new Map(Object.entries(synced)), names);
  const live = await pinOnGo('live-chromium');
  await waitFor('the live pin to reach the page', () => page.evaluate((cid) => window.seen.has(cid), live), 60_000);
});
