// A peer's own process and files failing: killed with SIGKILL in the middle of a
// 100,000-pin ingest through its REST API, with the default settings (every pin its own
// delta, committed before it is acknowledged), and its pinset file damaged. Peers on
// loopback that keep the pinset and pin nothing (role relay): the pinset alone is tried.
// Run: node --test tests/faults/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
    const peer = await (
      await new Peer(name, { env, logLevel: 'info' }).init(secret)
    ).start(['--bootstrap', writer.address]);
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

test('a truncated or overwritten pinset file: the daemon refuses to start, naming the file and the way out; state cleanup and a restart sync it again', async () => {
  const env = { CLUSTER_ROLE: 'relay' };
  const source = await (await new Peer('damage-source', { env, logLevel: 'info' }).init(secret)).start();
  const victim = await (
    await new Peer('damage-victim', { env, logLevel: 'info' }).init(secret)
  ).start(['--bootstrap', source.address]);
  const cids = Array.from({ length: 100 }, (_, i) => identityCid(`damage ${process.pid} ${i}`));
  for (const cid of cids) assert.equal((await source.post(`/pins/${cid}`)).status, 200);
  await waitFor('the victim to hold the 100 pins', async () => (await pinset(victim)).size === cids.length);
  const file = path.join(victim.dir, 'pinset.redb');

  for (const [damage, harm] of [
    ['truncated', () => fs.truncateSync(file, 4096)],
    ['overwritten', () => fs.writeFileSync(file, randomBytes(fs.statSync(file).size))],
  ]) {
    await victim.stop();
    harm();
    const refused = spawnSync(pinfoldBin, ['service', '--config', victim.dir, 'daemon'], {
      env: victim.env(),
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.notEqual(refused.status, 0, `${damage}: the daemon must not start`);
    assert.ok(refused.stderr.includes(file), `${damage}: names the file: ${refused.stderr}`);
    assert.match(refused.stderr, /damaged/, damage);
    assert.match(refused.stderr, /pinfold service state cleanup/, damage);

    const cleanup = spawnSync(pinfoldBin, ['service', '--config', victim.dir, 'state', 'cleanup', '--force'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(cleanup.status, 0, cleanup.stderr);
    assert.match(cleanup.stderr, /moved the pinset store to /);
    assert.ok(!fs.existsSync(file), `${damage}: moved aside`);
    await victim.start(['--bootstrap', source.address]);
    await waitFor(
      `the victim to sync the 100 pins again after the ${damage} file was moved aside`,
      async () => (await pinset(victim)).size === cids.length,
      60_000,
    );
  }
});

test('the disk full (a small tmpfs as the folder): writes refused with a clear error, reads go on, writes again once space is freed, nothing damaged', async () => {
  const mount = fs.mkdtempSync(path.join(os.tmpdir(), 'pinfold-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mount]);
  const peer = new Peer('disk-full', { env: { CLUSTER_ROLE: 'relay' }, logLevel: 'info' });
  peer.dir = path.join(mount, 'peer');
  try {
    await (await peer.init(secret)).start();
    const cids = Array.from({ length: 51 }, (_, i) => identityCid(`disk full ${process.pid} ${i}`));
    for (const cid of cids.slice(0, 50)) assert.equal((await peer.post(`/pins/${cid}`)).status, 200);

    const { bavail, bsize } = fs.statfsSync(mount);
    const filler = path.join(mount, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(bavail * bsize - (8 << 20)));
    const refused = await peer.post(`/pins/${cids[50]}`);
    assert.equal(refused.status, 500, refused.body);
    const { message } = JSON.parse(refused.body);
    assert.match(message, /disk holding the pinset store .*pinset\.redb is full/, message);
    assert.match(message, /writes are refused until space is freed/, message);
    assert.equal((await pinset(peer)).size, 50, 'reads go on');
    assert.match(fs.readFileSync(peer.log, 'utf8'), /a write to the pinset was refused/);

    fs.rmSync(filler);
    assert.equal((await peer.post(`/pins/${cids[50]}`)).status, 200, 'writes again once space is freed');
    await peer.stop();
    await peer.start();
    const held = await pinset(peer);
    assert.ok(
      cids.every((cid) => held.has(cid)),
      `after a restart the store holds the 51 pins (${held.size})`,
    );
  } finally {
    await peer.stop();
    execFileSync('umount', [mount]);
    fs.rmSync(mount, { recursive: true, force: true });
  }
});
