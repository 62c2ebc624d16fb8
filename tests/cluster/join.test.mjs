// A new native peer starts from a peer's compaction snapshot: it asks the peer it joins
// through for its latest snapshot, loads it, walks the DAG only for the deltas above it,
// pins what the pinset allocates to it, then follows later writes. Two full peers, each with
// its own Kubo.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { identityCid } from '../support/cid.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

after(async () => {
  await stopAll();
});

/** The CIDs of `peer`'s pinset. */
async function pinset(peer) {
  return (await peer.list('/allocations')).map((p) => p.cid).sort();
}

test('a new peer loads the snapshot of the peer it joins through, pins from it, then follows later writes', async () => {
  // A snapshot at every 10 deltas of height, as soon as one is due.
  const snapshots = { CLUSTER_CRDT_SNAPSHOTEVERY: '10', CLUSTER_CRDT_SNAPSHOTMININTERVAL: '0s' };
  const first = await (
    await new Peer('join-1', { ipfs: await new Ipfs('join-1').start(), env: snapshots }).init(secret)
  ).start();
  const before = Array.from({ length: 30 }, (_, i) => identityCid(`join ${process.pid} before ${i}`));
  for (const cid of before) {
    const res = await first.post(`/pins/${cid}?replication=-1`);
    assert.equal(res.status, 200, res.body);
  }
  // The last snapshot is the one within 10 deltas of the top: no other is due after it.
  const record = path.join(first.dir, 'snapshot.json');
  const made = await waitFor('a snapshot within 10 deltas of the 30 pins', () => {
    try {
      const made = JSON.parse(fs.readFileSync(record, 'utf8'));
      return made.height > before.length - 10 && made;
    } catch {
      return false;
    }
  });

  const joiner = await (
    await new Peer('join-2', { ipfs: await new Ipfs('join-2').start() }).init(secret)
  ).start(['--bootstrap', first.address]);
  const state = await waitFor('the new peer to load a snapshot', async () => {
    const { body } = await joiner.get('/state/crdt');
    const crdt = JSON.parse(body);
    return crdt.snapshot ? crdt : false;
  });
  assert.equal(state.snapshot.root, made.root, 'it loaded the snapshot the first peer made');
  assert.equal(state.snapshot.keys, made.keys);
  await waitFor("the new peer's pinset to hold the 30", async () => (await pinset(joiner)).length === before.length);
  assert.deepEqual(await pinset(joiner), [...before].sort());
  for (const cid of before) {
    await waitFor(`${cid} pinned on the new peer's Kubo`, () => joiner.ipfs.isPinned(cid));
  }

  const later = identityCid(`join ${process.pid} later`);
  assert.equal((await first.post(`/pins/${later}?replication=-1`)).status, 200);
  await waitFor('the new peer to follow a later pin', async () => (await pinset(joiner)).includes(later));
  await waitFor("the later pin on the new peer's Kubo", () => joiner.ipfs.isPinned(later));
});
