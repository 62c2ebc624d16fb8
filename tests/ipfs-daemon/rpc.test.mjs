// The facts about Kubo's HTTP RPC API that pinfold's connector (native/src/ipfs.rs, after
// ipfs-cluster's ipfshttp connector) relies on, checked on two real Kubo daemons: id, pin/ls,
// pin/add and its progress lines, pin/update, pin/rm, repo/stat, repo/gc, swarm/connect,
// swarm/peers, block/put. Run: node --test tests/ipfs-daemon/ (scripts/test does), after scripts/setup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { freePort } from '../support/net.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const scripts = path.join(root, 'scripts');
const names = [`rpc-a-${process.pid}`, `rpc-b-${process.pid}`];
const daemons = [];

// POST /api/v0/<cmd> with a 30 s bound; returns { status, body }.
async function rpc(api, cmd, init = {}) {
  const res = await fetch(`${api}/api/v0/${cmd}`, { method: 'POST', signal: AbortSignal.timeout(30_000), ...init });
  return { status: res.status, body: await res.text() };
}

/** Puts a raw block of unique content on `api`'s daemon, unpinned; returns its CIDv1. */
async function putBlock(api, label) {
  const form = new FormData();
  form.append('file', new Blob([`${label} ${Date.now()} ${Math.random()}`]));
  const put = await rpc(api, 'block/put?cid-codec=raw', { body: form });
  assert.equal(put.status, 200, put.body);
  return json(put.body).Key;
}

const json = (text) => JSON.parse(text);
const lines = (text) => text.split('\n').filter(Boolean).map(json);

before(async () => {
  for (const name of names) {
    const apiPort = await freePort();
    const swarmPort = await freePort();
    execFileSync(path.join(scripts, 'start-ipfs'), [name, String(apiPort), String(swarmPort)], { stdio: 'inherit' });
    daemons.push({ name, api: `http://127.0.0.1:${apiPort}`, swarm: `/ip4/127.0.0.1/tcp/${swarmPort}` });
  }
});

after(() => {
  for (const { name } of daemons) {
    execFileSync(path.join(scripts, 'stop-ipfs'), [name, '--purge'], { stdio: 'inherit' });
  }
});

test('id reports a peer id and loopback addresses', async () => {
  const { status, body } = await rpc(daemons[0].api, 'id');
  assert.equal(status, 200);
  const id = json(body);
  assert.match(id.ID, /^12D3KooW/);
  assert.ok(
    id.Addresses.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')),
    body,
  );
});

test('pin/add, pin/ls and pin/rm behave as Kubo', async () => {
  const api = daemons[0].api;
  const cid = await putBlock(api, 'pinfold rpc test');
  assert.match(cid, /^bafkrei/, 'CIDv1 in base32');

  const before = await rpc(api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(before.status, 500);
  assert.match(json(before.body).Message, /is not pinned/);

  const add = await rpc(api, `pin/add?arg=${cid}&recursive=true&progress=true`);
  assert.equal(add.status, 200, add.body);
  assert.deepEqual(lines(add.body).at(-1).Pins, [cid]);

  const one = await rpc(api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(one.status, 200, one.body);
  assert.deepEqual(
    lines(one.body).map((p) => [p.Cid, p.Type]),
    [[cid, 'recursive']],
  );

  const all = await rpc(api, 'pin/ls?stream=true&type=recursive');
  assert.ok(
    lines(all.body).some((p) => p.Cid === cid),
    all.body,
  );

  const rm = await rpc(api, `pin/rm?arg=${cid}`);
  assert.equal(rm.status, 200, rm.body);
  assert.deepEqual(json(rm.body).Pins, [cid]);

  const again = await rpc(api, `pin/rm?arg=${cid}`);
  assert.equal(again.status, 500);
  assert.match(json(again.body).Message, /not pinned/);
});

test('repo/stat reports sizes as numbers', async () => {
  const { status, body } = await rpc(daemons[0].api, 'repo/stat?size-only=true');
  assert.equal(status, 200, body);
  const stat = json(body);
  assert.equal(typeof stat.RepoSize, 'number', body);
  assert.ok(stat.RepoSize > 0, body);
  assert.ok(stat.StorageMax > stat.RepoSize, body);
});

test('pin/update moves a pin, keeping the old one with unpin=false', async () => {
  const api = daemons[0].api;
  const [from, to] = [await putBlock(api, 'update from'), await putBlock(api, 'update to')];
  assert.equal((await rpc(api, `pin/add?arg=${from}`)).status, 200);
  const update = await rpc(api, `pin/update?arg=${from}&arg=${to}&unpin=false`);
  assert.equal(update.status, 200, update.body);
  assert.deepEqual(json(update.body).Pins, [from, to]);
  for (const cid of [from, to]) {
    assert.equal((await rpc(api, `pin/ls?stream=true&arg=${cid}&type=recursive`)).status, 200, cid);
  }
  const notPinned = await rpc(api, `pin/update?arg=${await putBlock(api, 'unpinned')}&arg=${to}`);
  assert.equal(notPinned.status, 500);
  assert.match(json(notPinned.body).Message, /not recursively pinned/);
});

test('repo/gc streams the removed blocks, one {"Key":{"/":cid}} a line', async () => {
  const api = daemons[0].api;
  const loose = await putBlock(api, 'garbage');
  const kept = await putBlock(api, 'kept');
  assert.equal((await rpc(api, `pin/add?arg=${kept}`)).status, 200);
  const gc = await rpc(api, 'repo/gc?stream-errors=true');
  assert.equal(gc.status, 200, gc.body);
  const removed = lines(gc.body).map((l) => l.Key['/']);
  assert.ok(removed.includes(loose), gc.body);
  assert.ok(!removed.includes(kept), gc.body);
  assert.equal((await rpc(api, `block/stat?arg=${loose}&offline=true`)).status, 500, 'the loose block is gone');
});

test('a block Kubo cannot decode makes pin/add answer 500 with the reason', async () => {
  const form = new FormData();
  form.append('file', new Blob(['abc'])); // a one-byte CBOR string, then bytes after it
  const put = await rpc(daemons[0].api, 'block/put?cid-codec=dag-cbor', { body: form });
  assert.equal(put.status, 200, put.body);
  const add = await rpc(daemons[0].api, `pin/add?arg=${json(put.body).Key}&progress=true`);
  assert.equal(add.status, 500);
  assert.match(json(add.body).Message, /cbor/);
});

test('a pin on one daemon fetches the blocks from another over bitswap, with progress lines', async () => {
  const [a, b] = daemons;
  // 4 MiB of random bytes: 16 chunks and a root, so the pin has progress to report.
  const form = new FormData();
  form.append('file', new Blob(Array.from({ length: 64 }, () => crypto.getRandomValues(new Uint8Array(65536)))));
  const added = await rpc(a.api, 'add?pin=false&cid-version=1', { body: form });
  assert.equal(added.status, 200, added.body);
  const cid = json(added.body.trim().split('\n').at(-1)).Hash;
  const aId = json((await rpc(a.api, 'id')).body).ID;

  const connect = await rpc(b.api, `swarm/connect?arg=${a.swarm}/p2p/${aId}`);
  assert.equal(connect.status, 200, connect.body);
  assert.match(json(connect.body).Strings[0], /success/);
  const peers = json((await rpc(b.api, 'swarm/peers')).body).Peers;
  assert.ok(
    peers.some((p) => p.Peer === aId),
    JSON.stringify(peers),
  );

  const add = await rpc(b.api, `pin/add?arg=${cid}&recursive=true&progress=true`);
  assert.equal(add.status, 200, add.body);
  const updates = lines(add.body);
  assert.deepEqual(updates.at(-1).Pins, [cid]);
  assert.ok(
    updates.slice(0, -1).every((u) => typeof u.Progress === 'number'),
    add.body,
  );
  const ls = await rpc(b.api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(json(ls.body.split('\n')[0]).Cid, cid);
});

test('a pin of blocks no peer has sends progress lines that do not advance', async () => {
  // A CID nobody holds: Kubo keeps the request open, sending `{}` (no Progress) lines.
  const res = await fetch(
    `${daemons[1].api}/api/v0/pin/add?arg=bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy&progress=true`,
    {
      method: 'POST',
      signal: AbortSignal.timeout(3_000),
    },
  );
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  let text = '';
  try {
    while (text.split('\n').length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  } catch (error) {
    assert.equal(error.name, 'TimeoutError');
  } finally {
    await reader.cancel().catch(() => {});
  }
  const updates = lines(text);
  assert.ok(updates.length >= 2, text);
  assert.ok(
    updates.every((u) => !u.Pins && !u.Progress),
    text,
  );
});
