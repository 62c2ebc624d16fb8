// A peer killed with SIGKILL in the middle of a 100,000-pin ingest through its REST API,
// with the default settings (every pin its own delta, committed before it is
// acknowledged). Three peers on loopback that keep the pinset and pin nothing (role
// relay), so that the pinset alone is measured. Run: node --test tests/faults/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, stopAll, waitFor } from '../cluster/harness.mjs';
import { identityCid } from '../support/cid.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const PINS = 100_000;
const CLIENTS = 32;

after(async () => {
  await stopAll();
});

/** The CIDs in `peer`'s pinset. */
async function pinset(peer) {
  return new Set((await peer.list('/allocations')).map((p) => p.cid));
}

test('kill -9 in the middle of a 100,000-pin ingest: after a restart every acknowledged pin is on every peer', async () => {
  const env = { CLUSTER_ROLE: 'relay' };
  const writer = await (await new Peer('crash-writer', { env, logLevel: 'info' }).init(secret)).start();
  const others = [];
  for (const name of ['crash-b', 'crash-c']) {
    const peer = await (await new Peer(name, { env, logLevel: 'info' }).init(secret)).start(['--bootstrap', writer.address]);
    others.push(peer);
  }
  await waitFor('the three peers to meet', async () => (await writer.list('/peers')).length === 3);

  const cids = Array.from({ length: PINS }, (_, i) => identityCid(`crash ${process.pid} ${i}`));
  const acknowledged = [];
  let next = 0;
  let refused = 0;
  const started = Date.now();
  const killAt = PINS / 2;
  let killed;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < cids.length) {
        const cid = cids[next++];
        try {
          const res = await writer.post(`/pins/${cid}`);
          if (res.status === 200) acknowledged.push(cid);
          else refused++;
        } catch {
          // The peer is gone: this request is not acknowledged, and the ingest ends.
          next = cids.length;
        }
        if (acknowledged.length >= killAt && !killed) killed = writer.stop('SIGKILL');
      }
    }),
  );
  await killed;
  const ingestMs = Date.now() - started;
  assert.equal(refused, 0, 'no pin refused before the kill');
  assert.ok(acknowledged.length >= killAt, `${acknowledged.length} acknowledged`);

  await writer.start();
  const restartedMs = Date.now() - started;
  for (const peer of [writer, ...others]) {
    await waitFor(
      `${peer.name} to hold every pin the writer acknowledged`,
      async () => {
        const held = await pinset(peer);
        return acknowledged.every((cid) => held.has(cid));
      },
      300_000,
    );
  }
  console.log(
    `${acknowledged.length} pins acknowledged in ${ingestMs} ms before the kill; ` +
      `restarted at ${restartedMs} ms; every peer held them at ${Date.now() - started} ms`,
  );
});
