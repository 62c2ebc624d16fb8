// The IPFS proxy API as its users use it: Kubo's own CLI (`ipfs --api <proxy> ...`) and
// the npm Kubo RPC client pointed at a pinfold peer's proxy, in a cluster of two peers,
// each with its own Kubo. Pins, unpins, updates, adds and puts become the cluster's (seen at
// the other peer and pinned on its Kubo); everything else is Kubo's own answer.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { create } from 'kubo-rpc-client';
import { Ipfs, Peer, awaitFreespace, pinfoldBin, runDir, stopAll, waitFor } from './harness.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const run = promisify(execFile);
let writer;
let other;

/** Kubo's CLI against `writer`'s proxy, with no repository of its own: its output. */
async function ipfs(...args) {
  const repo = path.join(runDir, 'proxy-cli-repo');
  fs.mkdirSync(repo, { recursive: true });
  const { stdout } = await run('ipfs', ['--api', writer.proxy, ...args], {
    env: { ...process.env, IPFS_PATH: repo },
    timeout: 60_000,
  });
  return stdout.trim();
}

/** Kubo's CLI failing: its error output. */
async function ipfsFails(...args) {
  try {
    await ipfs(...args);
  } catch (error) {
    return error.stderr;
  }
  throw new Error(`ipfs ${args.join(' ')} should have failed`);
}

/** Waits until `peer` holds `cid` in the pinset (and returns the pin), or holds it no more. */
const allocated = (peer, cid) => waitFor(`${cid} in ${peer.name}'s pinset`, () => peer.allocation(cid));
const gone = (peer, cid) =>
  waitFor(`${cid} gone from ${peer.name}'s pinset`, async () => (await peer.get(`/allocations/${cid}`)).status === 404);
const pinnedOn = (peer, cid) => waitFor(`${cid} pinned on ${peer.name}'s Kubo`, () => peer.ipfs.isPinned(cid), 60_000);

before(async () => {
  const writerIpfs = await new Ipfs('proxy-writer', { filestore: true }).start();
  const otherIpfs = await new Ipfs('proxy-other').start();
  writer = await new Peer('proxy-writer', { ipfs: writerIpfs }).init(secret);
  other = await new Peer('proxy-other', { ipfs: otherIpfs }).init(secret);
  await writer.start();
  await other.start(['--bootstrap', writer.address]);
  await awaitFreespace([writer, other]);
});

after(async () => {
  await stopAll();
});

test("Kubo's CLI pins, lists, updates and unpins through the proxy: the cluster's pins, on both peers' Kubo", async () => {
  const first = await writer.ipfs.addContent('proxy pin');
  const second = await writer.ipfs.addContent('proxy pin update');
  assert.equal(await ipfs('pin', 'add', '--progress=false', first), `pinned ${first} recursively`);
  const pin = await allocated(other, first);
  assert.equal(pin.replication_factor_min, -1, 'pinned everywhere, the cluster default');
  await pinnedOn(other, first);
  await pinnedOn(writer, first);

  assert.equal(await ipfs('pin', 'ls', '--type=recursive', first), `${first} recursive`);
  // The argument in the path, a form Go's proxy takes too.
  const inPath = await fetch(`http://${writer.apiIp}:${writer.proxyPort}/api/v0/pin/ls/${first}?type=recursive`, {
    method: 'POST',
    signal: AbortSignal.timeout(30_000),
  });
  assert.deepEqual(await inPath.json(), { Keys: { [first]: { Type: 'recursive' } } });
  const listed = await ipfs('pin', 'ls');
  assert.ok(listed.split('\n').includes(`${first} recursive`), listed);
  const streamed = await ipfs('pin', 'ls', '--stream', '--enc=json');
  assert.ok(
    streamed.split('\n').some((l) => JSON.parse(l).Cid === first),
    `the streamed list names the pin: ${streamed}`,
  );
  assert.match(await ipfsFails('pin', 'ls', second), /is not pinned/);

  assert.equal(await ipfs('pin', 'update', first, second), `updated ${first} to ${second}`);
  await allocated(other, second);
  await gone(other, first);
  await pinnedOn(other, second);

  assert.equal(await ipfs('pin', 'rm', second), `unpinned ${second}`);
  await gone(other, second);
  assert.match(await ipfsFails('pin', 'rm', second), /is not pinned in the cluster/);
});

test("Kubo's CLI adds through the proxy: the blocks on both peers' Kubo, the root pinned in the cluster", async () => {
  const file = path.join(runDir, 'proxy-added.txt');
  fs.writeFileSync(file, `added through the proxy ${Date.now()}\n`);
  const out = await ipfs('add', '--cid-version=1', file);
  const [, root, name] = out.split('\n').at(-1).split(' ');
  assert.equal(name, 'proxy-added.txt', out);
  await allocated(other, root);
  await pinnedOn(other, root);
  await pinnedOn(writer, root);
  const unpinned = await ipfs('add', '-Q', '--pin=false', '--cid-version=1', file);
  assert.equal(unpinned, root, 'the same content, not pinned again');
  assert.match(await ipfsFails('add', '--only-hash', file), /only-hash is not supported/);
});

test("Kubo's CLI adds by reference through the proxy (--nocopy): the writer's filestore holds the file", async () => {
  const file = path.join(writer.ipfs.dir, 'proxy-by-reference.txt');
  fs.writeFileSync(file, `referenced through the proxy ${Date.now()}\n`);
  const root = await ipfs('add', '-Q', '--nocopy', file);
  await allocated(other, root);
  await pinnedOn(writer, root);
  const references = await ipfs('filestore', 'ls', root);
  assert.match(references, new RegExp(`^${root}\\s+\\d+\\s+proxy-by-reference.txt\\s+0$`), references);
});

test('block and dag puts with --pin are pinned by the cluster; without it they are only put', async () => {
  const blockFile = path.join(runDir, 'proxy-block');
  fs.writeFileSync(blockFile, `a block through the proxy ${Date.now()}`);
  const block = await ipfs('block', 'put', '--pin', '--cid-codec=raw', blockFile);
  await allocated(other, block);
  await pinnedOn(other, block);
  const dagFile = path.join(runDir, 'proxy-dag.json');
  fs.writeFileSync(dagFile, JSON.stringify({ proxy: Date.now() }));
  const dag = await ipfs('dag', 'put', '--pin', dagFile);
  await allocated(other, dag);
  fs.writeFileSync(blockFile, `an unpinned block ${Date.now()}`);
  const loose = await ipfs('block', 'put', '--cid-codec=raw', blockFile);
  assert.equal((await writer.get(`/allocations/${loose}`)).status, 404, 'not pinned in the cluster');
  assert.equal(await ipfs('block', 'stat', loose).then((s) => s.split('\n')[0]), `Key: ${loose}`, 'put on Kubo');
});

test("repo stat adds up both peers' Kubo; other commands are Kubo's own answers", async () => {
  const own = JSON.parse((await writer.ipfs.rpc('repo/stat?size-only=true')).body);
  const theirs = JSON.parse((await other.ipfs.rpc('repo/stat?size-only=true')).body);
  const total = JSON.parse(await ipfs('repo', 'stat', '--size-only', '--enc=json'));
  assert.equal(total.StorageMax, own.StorageMax + theirs.StorageMax);
  assert.ok(total.RepoSize >= own.RepoSize, JSON.stringify(total));

  const id = JSON.parse(await ipfs('id'));
  assert.equal(id.ID, JSON.parse((await writer.ipfs.rpc('id')).body).ID, "the writer's Kubo answered");
  const content = await writer.ipfs.addContent('read through the proxy');
  assert.match(await ipfs('cat', content), /^read through the proxy/);
  const headers = (await fetch(`http://127.0.0.1:${writer.proxyPort}/api/v0/pin/ls`, { method: 'POST' })).headers;
  assert.match(headers.get('server'), /^pinfold\/ipfsproxy\//);
});

test('repo gc through the proxy collects garbage on every peer', async () => {
  const content = await other.ipfs.addContent('garbage on the other peer');
  const out = await ipfs('repo', 'gc');
  assert.ok(out.split('\n').includes(`removed ${content}`), out);
});

test('the npm Kubo RPC client pins, lists and unpins through the proxy', async () => {
  const client = create({ url: `http://127.0.0.1:${writer.proxyPort}/api/v0` });
  const cid = await writer.ipfs.addContent('npm client');
  const pinned = await client.pin.add(cid);
  assert.equal(pinned.toString(), cid);
  await allocated(other, cid);
  const listed = [];
  for await (const entry of client.pin.ls({ paths: [cid] })) listed.push(entry);
  assert.deepEqual(
    listed.map((e) => [e.cid.toString(), e.type]),
    [[cid, 'recursive']],
  );
  const { cid: added } = await client.add(`added by the npm client ${Date.now()}`, { cidVersion: 1 });
  await allocated(other, added.toString());
  const removed = await client.pin.rm(cid);
  assert.equal(removed.toString(), cid);
  await gone(other, cid);
  const version = await client.version();
  assert.ok(version.version, 'passed to Kubo');
});
