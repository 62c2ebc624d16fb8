// The IPFS proxy API against Go ipfs-cluster v1.1.6's: the same Kubo CLI commands, run
// against a Go peer's proxy and a pinfold peer's (each alone, with its own Kubo), give the
// same answers.
// Run: node --test tests/interop/ (scripts/test does), after scripts/setup and a build.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Ipfs, Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { GoPeer, stopGoPeers } from './go.mjs';

const run = promisify(execFile);
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let go, pinfold;

/** Kubo's CLI against `api` (a multiaddr): its output, or its error output when it fails. */
async function ipfs(api, ...args) {
  const repo = path.join(runDir, 'proxy-interop-cli');
  fs.mkdirSync(repo, { recursive: true });
  try {
    const { stdout } = await run('ipfs', ['--api', api, ...args], {
      env: { ...process.env, IPFS_PATH: repo },
      timeout: 60_000,
    });
    return { ok: true, out: stdout.trim() };
  } catch (error) {
    return { ok: false, out: String(error.stderr).trim() };
  }
}

before(async () => {
  go = new GoPeer('proxy-go', { ipfs: await new Ipfs('proxy-go').start() });
  pinfold = new Peer('proxy-pinfold', { ipfs: await new Ipfs('proxy-pinfold').start() });
  await go.init(secret);
  await pinfold.init(secret);
  await go.start();
  await pinfold.start();
  for (const peer of [go, pinfold]) {
    await waitFor(`${peer.name}'s own freespace metric`, async () => {
      const metrics = JSON.parse((await peer.get('/monitor/metrics/freespace')).body);
      return metrics.some((m) => m.valid);
    });
  }
});

after(async () => {
  await stopGoPeers();
  await stopAll();
});

test("Kubo's CLI gets the same answers from Go's proxy and from pinfold's", async () => {
  const proxies = {
    go: `/ip4/127.0.0.1/tcp/${go.proxyPort}`,
    pinfold: pinfold.proxy,
  };
  // The same content in both Kubos, so that both answers name the same CIDs.
  const file = (name, text) => {
    const at = path.join(runDir, name);
    fs.writeFileSync(at, text);
    return at;
  };
  const stamp = Date.now();
  const first = file('proxy-interop-1', `first ${stamp}`);
  const second = file('proxy-interop-2', `second ${stamp}`);
  const added = file('proxy-interop-3', `added ${stamp}`);
  const block = file('proxy-interop-4', `block ${stamp}`);
  const cids = {};
  for (const [name, peer] of [
    ['go', go],
    ['pinfold', pinfold],
  ]) {
    const kubo = peer.ipfs.multiaddr;
    const one = await ipfs(kubo, 'add', '-Q', '--pin=false', '--cid-version=1', first);
    const two = await ipfs(kubo, 'add', '-Q', '--pin=false', '--cid-version=1', second);
    cids[name] = [one.out, two.out];
  }
  assert.deepEqual(cids.go, cids.pinfold);
  const [a, b] = cids.go;
  const steps = [
    ['pin', 'add', '--progress=false', a],
    ['pin', 'ls', '--type=recursive', a],
    ['pin', 'update', a, b],
    ['pin', 'ls', '--type=recursive', b],
    ['add', '-Q', '--cid-version=1', added],
    ['block', 'put', '--pin', '--cid-codec=raw', block],
    ['pin', 'rm', b],
    ['version'],
  ];
  for (const step of steps) {
    const fromGo = await ipfs(proxies.go, ...step);
    const fromPinfold = await ipfs(proxies.pinfold, ...step);
    assert.ok(fromGo.ok, `Go's proxy: ipfs ${step.join(' ')}: ${fromGo.out}`);
    assert.deepEqual(fromPinfold, fromGo, `ipfs ${step.join(' ')}`);
  }
  // Both refuse to list what is not pinned, in their own words.
  for (const proxy of Object.values(proxies)) {
    const missing = await ipfs(proxy, 'pin', 'ls', a);
    assert.equal(missing.ok, false);
    assert.match(missing.out, new RegExp(`path '${a}' is not pinned`));
  }
  const stats = {};
  for (const [name, proxy] of Object.entries(proxies)) {
    stats[name] = Object.keys(JSON.parse((await ipfs(proxy, 'repo', 'stat', '--size-only', '--enc=json')).out)).sort();
  }
  assert.deepEqual(stats.pinfold, stats.go, 'repo stat answers the same fields');
});
