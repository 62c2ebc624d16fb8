// A cluster that heals: three full peers, each with its own Kubo, re-pinning on their own
// (`CLUSTER_DISABLEREPINNING=false`), pings every second. Named after the Go ipfs-cluster
// tests they mirror (ipfscluster_test.go).
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { awaitFreespace, Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const peers = [];

before(async () => {
  for (const name of ['heal-1', 'heal-2', 'heal-3']) {
    const ipfs = await new Ipfs(name).start();
    const env = { CLUSTER_DISABLEREPINNING: 'false', CLUSTER_MONITORPINGINTERVAL: '1s' };
    peers.push(await new Peer(name, { ipfs, env }).init(secret));
  }
  await peers[0].start();
  for (const peer of peers.slice(1)) await peer.start(['--bootstrap', peers[0].address]);
  await awaitFreespace(peers);
});

after(async () => {
  await stopAll();
});

// Go: TestClustersRebalanceOnPeerDown.
test("RebalanceOnPeerDown: a killed peer's pin is re-allocated and pinned on the others", async () => {
  const [writer, kept, victim] = peers;
  const cid = await writer.ipfs.addContent('rebalance on peer down');
  const res = await writer.post(`/pins/${cid}?replication=2&user-allocations=${kept.id},${victim.id}`);
  assert.equal(res.status, 200, res.body);
  for (const peer of [kept, victim]) {
    await waitFor(`${cid} pinned on ${peer.name}'s Kubo`, () => peer.ipfs.isPinned(cid));
  }
  assert.equal(await writer.ipfs.isPinned(cid), false, 'the writer is not allocated yet');

  await victim.stop('SIGKILL');
  const moved = await waitFor(
    'the pin to leave the killed peer',
    async () => {
      const pin = await writer.allocation(cid);
      return pin && !pin.allocations.includes(victim.id) ? pin : null;
    },
    60_000,
  );
  assert.deepEqual([...moved.allocations].sort(), [writer.id, kept.id].sort());
  await waitFor(`${cid} pinned on the writer's Kubo`, () => writer.ipfs.isPinned(cid), 60_000);
  assert.equal(await kept.ipfs.isPinned(cid), true, 'the kept allocation stays pinned');
  // The other survivor may have seen the ping expire first, re-allocated, and the writer
  // pinned its new allocation before its own monitor's next check: the alert comes then.
  await waitFor(
    "the writer's ping alert for the killed peer",
    async () => {
      const alerts = JSON.parse((await writer.get('/health/alerts')).body);
      return alerts.some((a) => a.name === 'ping' && a.peer === victim.id);
    },
    10_000,
  );
});
