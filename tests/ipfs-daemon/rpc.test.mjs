// The test IPFS daemon answers the Kubo HTTP RPC calls pinfold's connector makes
// (ipfs-cluster's ipfshttp connector): id, pin/ls, pin/add, pin/rm, repo/stat, swarm/connect.
// Run: node --test tests/ipfs-daemon/ (scripts/test does), after scripts/setup.
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


// POST /api/v0/<cmd> with a 30 s bound; returns { status, body }. CIDv1 are asked for in
// base32, Kubo's default (js-ipfs otherwise prints them in base58btc).
async function rpc(api, cmd, init = {}) {
  const sep = cmd.includes('?') ? '&' : '?';
  const res = await fetch(`${api}/api/v0/${cmd}${sep}cid-base=base32`, { method: 'POST', signal: AbortSignal.timeout(30_000), ...init });
  return { status: res.status, body: await res.text() };
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
  assert.ok(id.Addresses.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')), body);
});

test('pin/add, pin/ls and pin/rm behave as Kubo', async () => {
  const api = daemons[0].api;
  const form = new FormData();
  form.append('file', new Blob([`pinfold rpc test ${Date.now()}`]));
  const put = await rpc(api, 'block/put?format=raw&pin=false', { body: form });
  assert.equal(put.status, 200, put.body);
  const cid = json(put.body).Key;

  const before = await rpc(api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(before.status, 500);
  assert.match(json(before.body).Message, /is not pinned/);

  const add = await rpc(api, `pin/add?arg=${cid}&recursive=true&progress=true`);
  assert.equal(add.status, 200, add.body);
  assert.deepEqual(lines(add.body).at(-1).Pins, [cid]);

  const one = await rpc(api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(one.status, 200, one.body);
  assert.deepEqual(lines(one.body).map((p) => [p.Cid, p.Type]), [[cid, 'recursive']]);

  const all = await rpc(api, 'pin/ls?stream=true&type=recursive');
  assert.ok(lines(all.body).some((p) => p.Cid === cid), all.body);

  const rm = await rpc(api, `pin/rm?arg=${cid}`);
  assert.equal(rm.status, 200, rm.body);
  assert.deepEqual(json(rm.body).Pins, [cid]);

  const again = await rpc(api, `pin/rm?arg=${cid}`);
  assert.equal(again.status, 500);
  assert.match(json(again.body).Message, /is not pinned/);
});

test('repo/stat reports sizes (as strings on js-ipfs, numbers on Kubo)', async () => {
  const { status, body } = await rpc(daemons[0].api, 'repo/stat?size-only=true');
  assert.equal(status, 200, body);
  const stat = json(body);
  assert.ok(Number(stat.RepoSize) > 0, body);
  assert.ok(Number(stat.StorageMax) > Number(stat.RepoSize), body);
});

test('a pin on one daemon fetches the blocks from another over bitswap', async () => {
  const [a, b] = daemons;
  const form = new FormData();
  form.append('file', new Blob([`only on daemon a ${Date.now()}`]));
  const put = await rpc(a.api, 'block/put?format=raw&pin=false', { body: form });
  const cid = json(put.body).Key;
  const aId = json((await rpc(a.api, 'id')).body).ID;

  const connect = await rpc(b.api, `swarm/connect?arg=${a.swarm}/p2p/${aId}`);
  assert.equal(connect.status, 200, connect.body);
  assert.match(json(connect.body).Strings[0], /success/);

  const add = await rpc(b.api, `pin/add?arg=${cid}&recursive=true&timeout=20s`);
  assert.equal(add.status, 200, add.body);
  const ls = await rpc(b.api, `pin/ls?stream=true&arg=${cid}&type=recursive`);
  assert.equal(json(ls.body.split('\n')[0]).Cid, cid);
});
