// The pin count informer (`informer.numpin`) on two peers, each with its Kubo: each
// publishes how many pins its Kubo holds, and with `allocate_by: ["numpin"]` new pins go
// to the peer with the fewest.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let busy;
let idle;

before(async () => {
  for (const name of ['numpin-busy', 'numpin-idle']) {
    const peer = new Peer(name, { ipfs: await new Ipfs(name).start(), env: { CLUSTER_NUMPIN_METRICTTL: '2s' } });
    await peer.init(secret);
    const file = path.join(peer.dir, 'service.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.allocator.balanced.allocate_by = ['numpin'];
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
    if (name === 'numpin-busy') busy = peer;
    else idle = peer;
  }
  await busy.start();
  await idle.start(['--bootstrap', busy.address]);
});

after(async () => {
  await stopAll();
});

/** The pin counts `peer` holds of every peer, by peer name. */
async function counts(peer) {
  const metrics = JSON.parse((await peer.get('/monitor/metrics/numpin')).body).filter((m) => m.valid);
  return Object.fromEntries(metrics.map((m) => [m.peer === busy.id ? 'busy' : 'idle', Number(m.value)]));
}

test("each peer publishes its Kubo's pin count, and numpin allocation puts new pins on the peer with fewer", async () => {
  // A new Kubo holds a pin of its own already.
  const base = await waitFor('both numpin metrics', async () => {
    const seen = await counts(busy);
    return seen.busy !== undefined && seen.idle !== undefined && seen;
  });
  // Two more pins on `to` (`user-allocations`), pinned on its Kubo and counted; then a
  // pin without allocations must go to the other peer, which has fewer.
  const tilt = async (to, other, expected, label) => {
    for (let n = 0; n < 2; n++) {
      const cid = await busy.ipfs.addContent(`numpin ${label} ${n}`);
      const res = await busy.post(`/pins/${cid}?replication=1&user-allocations=${to.id}`);
      assert.equal(res.status, 200, res.body);
      await waitFor(`${cid} on ${to.name}'s Kubo`, () => to.ipfs.isPinned(cid), 60_000);
    }
    await waitFor(`the counts ${JSON.stringify(expected)}`, async () => {
      const seen = await counts(busy);
      return seen.busy === expected.busy && seen.idle === expected.idle;
    });
    const cid = await busy.ipfs.addContent(`numpin placed ${label}`);
    const res = await busy.post(`/pins/${cid}?replication=1`);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body).allocations, [other.id], `${label}: the peer with fewer pins`);
    await waitFor(`${cid} on ${other.name}'s Kubo`, () => other.ipfs.isPinned(cid), 60_000);
  };
  await tilt(busy, idle, { busy: base.busy + 2, idle: base.idle }, 'first');
  await tilt(idle, busy, { busy: base.busy + 2, idle: base.idle + 3 }, 'then');
});
