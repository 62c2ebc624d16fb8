// Clocks an hour apart: three pinfold peers, each with its own Kubo, one on time, one an
// hour ahead and one an hour behind (Debian's libfaketime moves each process's wall
// clock; Kubo keeps the real one). Nobody takes a live peer for lost, pins expire when
// the cluster's time says (whichever peer took them), and a peer really lost has its
// pins re-allocated once its ping has expired. Run: node --test tests/faults/
// (scripts/test does), after scripts/setup, which installs libfaketime.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { awaitFreespace, Ipfs, Peer, pinfoldBin, sleep, stopAll, waitFor } from '../cluster/harness.mjs';

const HOUR_MS = 3_600_000;
const FAKETIME = ['x86_64', 'aarch64']
  .map((arch) => `/usr/lib/${arch}-linux-gnu/faketime/libfaketime.so.1`)
  .find((lib) => fs.existsSync(lib));
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
/** On time, an hour ahead, an hour behind. */
const peers = [];
const [onTime, ahead, behind] = [0, 1, 2];

before(async () => {
  assert.ok(FAKETIME, 'libfaketime is missing: run scripts/setup');
  for (const [index, offset] of [
    [onTime, null],
    [ahead, '+1h'],
    [behind, '-1h'],
  ]) {
    const name = ['clock-on-time', 'clock-ahead', 'clock-behind'][index];
    const ipfs = await new Ipfs(name).start();
    const env = {
      CLUSTER_DISABLEREPINNING: 'false',
      CLUSTER_STATESYNCINTERVAL: '1s',
      CLUSTER_DISK_METRICTTL: '4s',
      CLUSTER_TAGS_METRICTTL: '4s',
      // The monotonic clock stays real: timers run at their pace.
      ...(offset && { LD_PRELOAD: FAKETIME, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' }),
    };
    peers.push(await new Peer(name, { ipfs, env }).init(secret));
  }
  await peers[onTime].start();
  await Promise.all([ahead, behind].map((i) => peers[i].start(['--bootstrap', peers[onTime].address])));
});

after(async () => {
  await stopAll();
});

const livePings = async (peer) => JSON.parse((await peer.get('/monitor/metrics/ping')).body);
const sorted = (ids) => [...ids].sort();

test('peers an hour apart see each other alive, raise no alert and agree on when pins expire', async () => {
  const everyone = JSON.stringify(sorted(peers.map((p) => p.id)));
  for (const peer of peers) {
    await waitFor(`${peer.name} to see the three peers alive`, async () => {
      return JSON.stringify(sorted((await livePings(peer)).map((m) => m.peer))) === everyone;
    });
  }
  await awaitFreespace(peers);
  // The clocks really are apart: each peer's ping says when it was sent, by its clock.
  const pings = await livePings(peers[onTime]);
  for (const [index, hours] of [
    [ahead, 1],
    [behind, -1],
  ]) {
    const ping = pings.find((m) => m.peer === peers[index].id);
    const sentMs = JSON.parse(ping.value).sent_at / 1e6;
    const off = (sentMs - Date.now()) / HOUR_MS;
    assert.ok(Math.abs(off - hours) < 0.01, `${peers[index].name}'s clock is ${off.toFixed(3)} h off`);
  }

  // Pins that expire in 20 s, taken by each peer: the expiry is in the cluster's time.
  const expiring = [];
  for (const peer of peers) {
    for (let i = 0; i < 4; i++) {
      const cid = await peer.ipfs.addContent(`expires at ${peer.name} ${i} ${process.pid}`);
      const res = await peer.post(`/pins/${cid}?expire-in=20s&replication-min=-1&replication-max=-1`);
      assert.equal(res.status, 200, res.body);
      const expireAt = Date.parse(JSON.parse(res.body).expire_at);
      const from = Date.now() + 20_000;
      assert.ok(Math.abs(expireAt - from) < 5_000, `${peer.name} set the expiry ${(expireAt - from) / 1000} s off`);
      expiring.push(cid);
    }
  }
  const written = Date.now();
  for (const peer of peers) {
    await waitFor(`${peer.name} to hold every expiring pin`, async () => {
      const pins = new Set((await peer.list('/allocations')).map((p) => p.cid));
      return expiring.every((cid) => pins.has(cid));
    });
  }

  // Well past every ping's life, and until just before the expiry: each peer sees the
  // others alive, none raises an alert, and no pin has gone.
  while (Date.now() - written < 12_000) {
    for (const peer of peers) {
      assert.equal((await livePings(peer)).length, 3, `${peer.name} lost a live peer`);
      assert.deepEqual(JSON.parse((await peer.get('/health/alerts')).body), [], `${peer.name} raised alerts`);
      const pins = new Set((await peer.list('/allocations')).map((p) => p.cid));
      assert.ok(
        expiring.every((cid) => pins.has(cid)),
        `${peer.name} unpinned before the expiry`,
      );
    }
    await sleep(1000);
  }
  // Past it, every peer has unpinned them all, and every Kubo let go of them.
  for (const peer of peers) {
    await waitFor(
      `${peer.name} to unpin the expired pins`,
      async () => {
        const pins = new Set((await peer.list('/allocations')).map((p) => p.cid));
        return expiring.every((cid) => !pins.has(cid));
      },
      30_000,
    );
  }
  const unpinnedAfter = Date.now() - written;
  console.log(`# ${expiring.length} pins set to expire in 20 s were gone from every peer ${unpinnedAfter} ms later`);
  for (const peer of peers) {
    await waitFor(`${peer.name}'s Kubo to unpin them`, async () => {
      for (const cid of expiring) if (await peer.ipfs.isPinned(cid)) return false;
      return true;
    });
  }
});

test("a lost peer's pins move once its ping has expired, whatever its clock", async () => {
  const cid = await peers[onTime].ipfs.addContent(`allocated to the slow clock ${process.pid}`);
  const allocations = sorted([peers[behind].id, peers[ahead].id]);
  const res = await peers[onTime].post(
    `/pins/${cid}?replication-min=2&replication-max=2&user-allocations=${allocations.join(',')}`,
  );
  assert.equal(res.status, 200, res.body);
  await sleep(6_000);
  for (const peer of peers) {
    assert.deepEqual(sorted((await peer.allocation(cid)).allocations), allocations, `${peer.name} moved it`);
  }

  await peers[behind].stop('SIGKILL');
  const killed = Date.now();
  const moved = sorted([peers[ahead].id, peers[onTime].id]);
  for (const peer of [peers[onTime], peers[ahead]]) {
    await waitFor(
      `${peer.name} to see the pin re-allocated away from the lost peer`,
      async () => JSON.stringify(sorted((await peer.allocation(cid)).allocations)) === JSON.stringify(moved),
      30_000,
    );
  }
  console.log(`# the lost peer's pin was re-allocated ${Date.now() - killed} ms after it was killed`);
  await waitFor("the on-time peer's Kubo to pin it", () => peers[onTime].ipfs.isPinned(cid));
});
