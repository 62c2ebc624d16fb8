// The npm package's follower (Node >= 22, for its global WebSocket) in a Go-only cluster:
// it joins a Go ipfs-cluster v1.1.6 peer over /ws inside the cluster's private network
// and, with no snapshot to load (Go peers serve none), walks the CRDT DAG over bitswap
// from boxo, seeing every pin, and new ones live.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ipfs, stopAll, waitFor } from '../cluster/harness.mjs';
import { follow } from '../../npm/lib/index.js';
import { GoPeer, clusterCtl, stopGoPeers } from './go.mjs';

const secret = '6e5d4c3b2a19f8e7d6c5b4a392817f6e5d4c3b2a19f8e7d6c5b4a392817f6e5d';
let follower;

after(async () => {
  await follower?.close();
  await stopGoPeers();
  await stopAll();
});

test('the npm follower follows a Go-only cluster over WebSocket, walking its DAG', async () => {
  const go = new GoPeer('npm-go', { ipfs: await new Ipfs('npm-go').start() });
  await go.init(secret);
  await go.start();
  const cids = [];
  for (let i = 0; i < 20; i++) {
    const cid = await go.ipfs.addContent(`for the npm follower ${i}`);
    await clusterCtl(go.api, ['pin', 'add', '--no-status', '--name', `go-${i}`, cid]);
    cids.push(cid);
  }
  follower = await follow({
    bootstrap: [`/ip4/127.0.0.1/tcp/${go.wsPort}/ws/p2p/${go.id}`],
    secret,
    trustedPeers: [go.id],
  });
  const seen = new Set();
  follower.on('pin', (pin) => seen.add(pin.cid));
  await waitFor(
    'the follower to hold the 20 pins',
    async () => {
      const state = await follower.syncState();
      return state.pins === cids.length;
    },
    90_000,
  );
  const names = new Map();
  for await (const pin of follower.pins({ pageSize: 100 })) names.set(pin.cid, pin.name);
  for (const [i, cid] of cids.entries()) assert.equal(names.get(cid), `go-${i}`);
  const live = await go.ipfs.addContent('live for the npm follower');
  await clusterCtl(go.api, ['pin', 'add', '--no-status', '--name', 'live', live]);
  await waitFor('the live pin to reach the follower', () => seen.has(live), 60_000);
});
