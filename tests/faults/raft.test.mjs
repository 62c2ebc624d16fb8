// Raft consensus across a network partition: three hosts, each a network namespace holding
// a pinfold peer under Raft and its Kubo (tests/faults/netns.mjs). The leader's host is
// cut off: the other two elect a new leader and go on taking writes; the cut-off peer, a
// minority, refuses writes with a clear error; healed, it catches up and its Kubo pins what
// it missed. Runs as root.
// Run: node --test tests/faults/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ipfs, Peer, agreedRaftLeader, pinfoldBin, raftState, stopAll, waitFor } from '../cluster/harness.mjs';
import { Network } from './netns.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const network = new Network(3);
const peers = [];

before(async () => {
  network.up();
  for (const host of network.hosts) {
    const name = `raft-fault-${host.index}`;
    const ipfs = await new Ipfs(name, { host }).start();
    peers.push(await new Peer(name, { ipfs, host, initArgs: ['--consensus', 'raft'] }).init(secret));
  }
  await peers[0].start();
  for (const peer of peers.slice(1)) await peer.start(['--bootstrap', peers[0].address]);
  await waitFor('three Raft peers everywhere', async () =>
    (await Promise.all(peers.map(raftState))).every((s) => s.peers.length === 3),
  );
});

after(async () => {
  await stopAll();
  network.down();
});

async function pin(peer, label) {
  const cid = await peer.ipfs.addContent(label);
  const res = await peer.post(`/pins/${cid}?replication=-1`);
  assert.equal(res.status, 200, `${peer.name}: ${res.body}`);
  return cid;
}

test("the leader's host cut off: the majority elects a new leader and takes writes, the minority refuses them, and catches up once healed", async () => {
  const leader = await agreedRaftLeader(peers);
  const majority = peers.filter((p) => p !== leader);
  const acknowledged = [];
  for (const peer of peers) acknowledged.push(await pin(peer, `raft partition before ${peer.name}`));

  leader.host.cut();
  const cut = Date.now();
  const next = await agreedRaftLeader(majority);
  console.log(`# ${next.name} leads the majority ${Date.now() - cut} ms after the cut`);
  assert.notEqual(next.id, leader.id);
  const during = [];
  for (const peer of majority) during.push(await pin(peer, `raft partition during ${peer.name}`));

  const cid = await leader.ipfs.addContent('raft partition minority');
  const refused = await leader.post(`/pins/${cid}?replication=-1`);
  assert.equal(refused.status, 503, refused.body);
  assert.match(JSON.parse(refused.body).message, /majority/);
  assert.equal(await leader.allocation(cid), null, 'the refused write is not in its pinset');

  leader.host.heal();
  await agreedRaftLeader(peers, 60_000);
  for (const peer of peers) {
    const pinset = new Set((await peer.list('/allocations')).map((p) => p.cid));
    await waitFor(`${peer.name} to hold every acknowledged pin`, async () => {
      const now = new Set((await peer.list('/allocations')).map((p) => p.cid));
      return [...acknowledged, ...during].every((c) => now.has(c));
    });
    assert.ok(!pinset.has(cid), `${peer.name} has the refused write`);
  }
  for (const c of during) await waitFor(`${leader.name}'s Kubo to pin what it missed`, () => leader.ipfs.isPinned(c));
});
