// Raft consensus (`service init --consensus raft`): three pinfold peers, each with its
// own Kubo. The first starts a cluster alone; the others join through it (`--bootstrap`,
// which asks it to add them). Writes reach the leader from any peer and are acknowledged
// once a majority has them; the leader killed, the others elect a new one and no
// acknowledged pin is lost; a peer without a majority refuses writes with a clear error;
// peers are removed through Raft. The network partition case is in tests/faults/.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ipfs, Peer, agreedRaftLeader, pinfoldBin, raftState, stopAll, waitFor } from './harness.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const peers = [];

after(async () => {
  await stopAll();
});

function ctl(peer, ...args) {
  try {
    const out = execFileSync(pinfoldBin, ['ctl', '--host', peer.api, ...args], { stdio: 'pipe' });
    return { code: 0, out: out.toString(), err: '' };
  } catch (error) {
    return { code: error.status, out: error.stdout.toString(), err: error.stderr.toString() };
  }
}

async function pinEverywhere(at, label) {
  const cid = await at.ipfs.addContent(label);
  const res = await at.post(`/pins/${cid}?replication=-1&name=${encodeURIComponent(label)}`);
  assert.equal(res.status, 200, res.body);
  return cid;
}

test('a Raft cluster forms through --bootstrap, and a write at any peer is committed and pinned on every Kubo', async () => {
  const raft = { initArgs: ['--consensus', 'raft'] };
  const first = await (
    await new Peer('raft-1', { ...raft, ipfs: await new Ipfs('raft-1').start() }).init(secret)
  ).start();
  peers.push(first);
  const alone = await waitFor('the first peer to lead its one-peer cluster', async () => {
    const state = await raftState(first);
    return state.is_leader && state;
  });
  assert.deepEqual(alone.peers, [first.id]);
  for (const name of ['raft-2', 'raft-3']) {
    const peer = await (
      await new Peer(name, { ...raft, ipfs: await new Ipfs(name).start() }).init(secret)
    ).start(['--bootstrap', first.address]);
    peers.push(peer);
  }
  await waitFor('every peer to count three Raft peers', async () =>
    (await Promise.all(peers.map(raftState))).every((s) => s.peers.length === 3),
  );
  assert.deepEqual((await raftState(peers[2])).peers.sort(), peers.map((p) => p.id).sort());
  assert.equal((await agreedRaftLeader(peers)).id, first.id);

  // Written at a follower: forwarded to the leader, answered once committed.
  const cid = await pinEverywhere(peers[2], 'raft through a follower');
  // Acknowledged means a majority logged it; each peer applies it once it learns so.
  assert.ok(await peers[2].allocation(cid), 'the peer that took the write has it once acknowledged');
  for (const peer of peers) await waitFor(`${peer.name} to apply the pin`, () => peer.allocation(cid));
  for (const peer of peers) await waitFor(`${peer.name}'s Kubo to pin it`, () => peer.ipfs.isPinned(cid));
  const viaCtl = ctl(peers[1], 'pin', 'rm', cid);
  assert.equal(viaCtl.code, 0, viaCtl.err);
  for (const peer of peers)
    await waitFor(`${peer.name}'s Kubo to unpin it`, async () => !(await peer.ipfs.isPinned(cid)));
});

test('the leader killed, the others elect a new one within seconds and lose no acknowledged pin; it catches up when back', async () => {
  const leader = await agreedRaftLeader(peers);
  const acknowledged = [];
  for (let i = 0; i < 10; i++) acknowledged.push(await pinEverywhere(peers[i % 3], `raft before the kill ${i}`));
  await leader.stop('SIGKILL');
  const rest = peers.filter((p) => p !== leader);
  const killed = Date.now();
  const next = await agreedRaftLeader(rest);
  const elected = Date.now() - killed;
  console.log(`# new Raft leader ${next.name} ${elected} ms after the leader was killed`);
  assert.notEqual(next.id, leader.id);
  assert.ok(elected < 15_000, `a new leader after ${elected} ms`);
  const after = await pinEverywhere(rest[1], 'raft after the kill');
  for (const peer of rest) {
    await waitFor(`${peer.name} to hold every acknowledged pin`, async () => {
      const pinned = new Set((await peer.list('/allocations')).map((p) => p.cid));
      return [...acknowledged, after].every((cid) => pinned.has(cid));
    });
  }
  await leader.start();
  await waitFor(`${leader.name} to catch up with the pin written while it was down`, () => leader.allocation(after));
  await waitFor(`${leader.name}'s Kubo to pin it`, () => leader.ipfs.isPinned(after));
  const state = await raftState(leader);
  assert.equal(state.leader, next.id, 'the restarted peer follows the new leader');
});

test('without a majority a peer refuses writes with a clear error (503), and takes them again once the others are back', async () => {
  const [lonely, ...others] = peers;
  for (const peer of others) await peer.stop();
  const cid = await lonely.ipfs.addContent('raft without a majority');
  const refused = await waitFor('a write to be refused', async () => {
    const res = await lonely.post(`/pins/${cid}`);
    return res.status !== 200 && res;
  });
  assert.equal(refused.status, 503, refused.body);
  assert.match(JSON.parse(refused.body).message, /majority/);
  const viaCtl = ctl(lonely, 'pin', 'add', cid);
  assert.notEqual(viaCtl.code, 0);
  assert.match(viaCtl.err, /503.*majority/);
  assert.equal(await lonely.allocation(cid), null, 'a refused write is not in the pinset');
  for (const peer of others) await peer.start();
  await agreedRaftLeader(peers);
  const res = await waitFor('a write to be taken again', async () => {
    const res = await lonely.post(`/pins/${cid}`);
    return res.status === 200 && res;
  });
  assert.equal(res.status, 200);
  for (const peer of peers) await waitFor(`${peer.name} to have the pin`, () => peer.allocation(cid));
});

test('peers rm removes a peer from the Raft peers (its pins re-allocated); peers add brings it back', async () => {
  const leader = await agreedRaftLeader(peers);
  const [gone, keeper] = peers.filter((p) => p !== leader);
  const removed = ctl(keeper, 'peers', 'rm', gone.id);
  assert.equal(removed.code, 0, removed.err);
  await waitFor('the Raft peers to be two', async () =>
    (await Promise.all([leader, keeper].map(raftState))).every(
      (s) => s.peers.length === 2 && !s.peers.includes(gone.id),
    ),
  );
  const unknown = ctl(keeper, 'peers', 'rm', gone.id);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /not a Raft peer/);
  const added = ctl(keeper, '--enc', 'json', 'peers', 'add', gone.id);
  assert.equal(added.code, 0, added.err);
  assert.equal(JSON.parse(added.out).id, gone.id);
  await waitFor('the Raft peers to be three again', async () =>
    (await Promise.all(peers.map(raftState))).every((s) => s.peers.length === 3),
  );
  const cid = await pinEverywhere(gone, 'raft after rejoining');
  for (const peer of peers) await waitFor(`${peer.name} to have the pin`, () => peer.allocation(cid));
});

test('a peer stopped with --leave is removed from the Raft peers by another', async () => {
  const leaving = peers[2];
  await leaving.stop();
  await leaving.start(['--leave']);
  await waitFor('three Raft peers', async () => (await raftState(leaving)).peers.length === 3);
  // It hands its removal to a peer whose ping it holds.
  await waitFor(`${leaving.name} to hold the others' pings`, async () => {
    const pings = JSON.parse((await leaving.get('/monitor/metrics/ping')).body);
    return pings.filter((m) => m.valid && m.peer !== leaving.id).length === 2;
  });
  await leaving.stop();
  await waitFor('the others to count two Raft peers', async () =>
    (await Promise.all(peers.slice(0, 2).map(raftState))).every(
      (s) => s.peers.length === 2 && !s.peers.includes(leaving.id),
    ),
  );
  const cid = await pinEverywhere(peers[0], 'raft after a peer left');
  for (const peer of peers.slice(0, 2)) await waitFor(`${peer.name} to have the pin`, () => peer.allocation(cid));
});

test('a CRDT peer has no Raft state', async () => {
  const crdt = await (await new Peer('raft-crdt').init(secret)).start();
  const res = await crdt.get('/state/raft');
  assert.equal(res.status, 404);
  assert.match(JSON.parse(res.body).message, /CRDT consensus/);
});
