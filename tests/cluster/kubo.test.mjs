// A pinning peer against its Kubo's failures: Kubo down when the peer starts, a pin that makes
// no progress, Kubo killed with SIGKILL in the middle of a pin, answering 500 with a reason,
// and hanging (SIGSTOP). Each
// gives a log line and a status that say what happened, and every pin that Kubo can pin
// ends pinned once Kubo is back. A second Kubo holds the content (the pins' origin).
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, runDir, stopAll, waitFor } from './harness.mjs';
import { rawCid } from '../support/cid.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let kubo;
let source;
let sourceAddress;
let peer;

/** The pid of a Kubo the harness started (scripts/start-ipfs records it). */
const pidOf = (ipfs) => Number(fs.readFileSync(path.join(runDir, 'ipfs', ipfs.name, 'daemon.pid'), 'utf8'));

/** Puts `bytes` on the source Kubo as a raw block; returns its CID. */
async function onSource(bytes) {
  const form = new FormData();
  form.append('file', new Blob([bytes]));
  const put = await source.rpc('block/put?cid-codec=raw', { body: form });
  assert.equal(put.status, 200, put.body);
  return JSON.parse(put.body).Key;
}

/** The peer's own status of `cid`. */
async function status(cid) {
  const info = JSON.parse((await peer.get(`/pins/${cid}?local=true`)).body);
  return info.peer_map[peer.id];
}

/** Pins `cid` through the peer, with the source Kubo as its origin. */
async function pin(cid) {
  const res = await peer.post(`/pins/${cid}?origins=${encodeURIComponent(sourceAddress)}`);
  assert.equal(res.status, 200, res.body);
}

const log = () => fs.readFileSync(peer.log, 'utf8');

before(async () => {
  source = await new Ipfs('kubo-source').start();
  sourceAddress = `/ip4/127.0.0.1/tcp/${source.swarmPort}/p2p/${JSON.parse((await source.rpc('id')).body).ID}`;
  kubo = new Ipfs('kubo-faults');
  await kubo.start();
  kubo.stop();
  peer = new Peer('kubo-faults', {
    ipfs: kubo,
    env: {
      CLUSTER_IPFSHTTP_PINTIMEOUT: '3s',
      CLUSTER_IPFSHTTP_IPFSREQUESTTIMEOUT: '3s',
      CLUSTER_STATELESS_RETRYBASEDELAY: '1s',
      CLUSTER_STATELESS_RETRYMAXDELAY: '2s',
    },
  });
  await peer.init(secret);
});

after(async () => {
  if (kubo?.name) {
    try {
      process.kill(pidOf(kubo), 'SIGCONT');
    } catch {
      /* not running */
    }
  }
  await stopAll();
});

test('Kubo down when the peer starts: the peer says so, and pins once Kubo is up', async () => {
  await peer.start();
  const id = await waitFor('/id to name the daemon unreachable', async () => {
    const body = JSON.parse((await peer.get('/id')).body);
    return body.ipfs?.error && body;
  });
  assert.match(id.ipfs.error, /IPFS daemon at http:\/\/127\.0\.0\.1:\d+\/api\/v0 is unreachable/);
  const cid = await onSource(`down at start ${Date.now()}`);
  await pin(cid);
  const failed = await waitFor('the pin to fail on the unreachable daemon', async () => {
    const s = await status(cid);
    return s.status === 'pin_error' && s;
  });
  assert.match(failed.error, /unreachable/);
  assert.match(log(), /IPFS daemon is down; pins wait and are retried/);
  await kubo.start();
  await waitFor('Kubo to pin it once up', () => kubo.isPinned(cid), 60_000);
  await waitFor('the status to read pinned', async () => (await status(cid)).status === 'pinned', 30_000);
  assert.match(log(), /IPFS daemon is reachable again/);
});

test('a pin whose blocks no peer has stalls out after pin_timeout, and pins once they appear', async () => {
  const bytes = `stalled ${randomBytes(8).toString('hex')}`;
  const cid = rawCid(bytes);
  await pin(cid);
  const failed = await waitFor('the stalled pin to be aborted', async () => {
    const s = await status(cid);
    return s.status === 'pin_error' && s;
  });
  assert.match(failed.error, new RegExp(`pinning ${cid} made no progress for 3s; aborted`));
  assert.equal(await onSource(bytes), cid);
  await waitFor('Kubo to pin it once the source has it', () => kubo.isPinned(cid), 60_000);
});

test('Kubo killed in the middle of a pin: the pin fails, then ends pinned after a restart', async () => {
  // Content nobody has yet, so the pin is in flight when Kubo dies.
  const bytes = `killed mid-pin ${randomBytes(8).toString('hex')}`;
  const cid = rawCid(bytes);
  await pin(cid);
  await waitFor('the pin to be in flight', async () => (await status(cid)).status === 'pinning');
  process.kill(pidOf(kubo), 'SIGKILL');
  const failed = await waitFor('the pin to fail with Kubo gone', async () => {
    const s = await status(cid);
    return s.status === 'pin_error' && s;
  });
  assert.ok(failed.error.length > 0, JSON.stringify(failed));
  assert.match(log(), new RegExp(`IPFS operation failed; it is retried.*cid=${cid}`));
  fs.rmSync(path.join(runDir, 'ipfs', kubo.name, 'daemon.pid'));
  await kubo.start();
  assert.equal(await onSource(bytes), cid);
  await waitFor('Kubo to pin it after the restart', () => kubo.isPinned(cid), 60_000);
  await waitFor('the status to read pinned', async () => (await status(cid)).status === 'pinned', 30_000);
});

test('Kubo answering 500: the status carries its reason and the pin is retried', async () => {
  // A block Kubo holds but cannot decode: every pin/add of it fails with a reason.
  const form = new FormData();
  form.append('file', new Blob(['abc']));
  const put = await kubo.rpc('block/put?cid-codec=dag-cbor', { body: form });
  assert.equal(put.status, 200, put.body);
  const cid = JSON.parse(put.body).Key;
  await pin(cid);
  const failed = await waitFor(
    'a second failed attempt',
    async () => {
      const s = await status(cid);
      return s.status === 'pin_error' && s.attempt_count >= 2 && s;
    },
    30_000,
  );
  assert.match(failed.error, /IPFS daemon: pin: unexpected content after end of cbor object/);
  assert.match(log(), new RegExp(`IPFS operation failed; it is retried.*cid=${cid}.*cbor`));
  assert.equal((await peer.post(`/pins/${cid}`, 'DELETE')).status, 200);
});

test('Kubo hanging (SIGSTOP): requests time out, the pin is retried and pinned once it answers', async () => {
  const cid = await onSource(`hanging ${Date.now()}`);
  const pid = pidOf(kubo);
  process.kill(pid, 'SIGSTOP');
  try {
    await pin(cid);
    const failed = await waitFor(
      'the pin to fail on the hanging daemon',
      async () => {
        const s = await status(cid);
        return s.status === 'pin_error' && s;
      },
      30_000,
    );
    assert.match(failed.error, /did not answer .* within 3s|made no progress for 3s/);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await waitFor('Kubo to pin it once it answers', () => kubo.isPinned(cid), 60_000);
  await waitFor('the status to read pinned', async () => (await status(cid)).status === 'pinned', 30_000);
});
