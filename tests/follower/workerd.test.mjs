// The npm package in workerd (Cloudflare Workers' runtime, from npm `workerd`, installed by
// scripts/setup): `pinfold` resolves to its `workerd` entry under that export condition,
// which hands workerd's ahead-of-time compiled .wasm to the loader; in a Worker, the
// follower joins a relay over WebSocket inside the private network, syncs its pinset and
// sees a pin added live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { freePort } from '../support/net.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const npm = path.resolve(here, '../../npm');
const workerd =
  process.env.WORKERD ??
  path.join(
    process.env.PINFOLD_CACHE ?? path.join(process.env.HOME, '.cache/pinfold'),
    'node-tools/node_modules/.bin/workerd',
  );
const PINS = 1_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let relay;
let runtime;
let url;

/**
 * A workerd configuration serving the test's Worker on `port`, with the package's files as
 * modules (named as under node_modules, so that its relative imports resolve) and outbound
 * connections allowed to loopback.
 */
function configuration(port) {
  const modules = ['(name = "worker.mjs", esModule = embed "worker.mjs")'];
  for (const folder of ['lib', 'dist/browser', 'dist/server']) {
    for (const file of fs.readdirSync(path.join(npm, folder)).sort()) {
      const name = `node_modules/pinfold/${folder}/${file}`;
      if (file.endsWith('.js')) modules.push(`(name = "${name}", esModule = embed "${name}")`);
      else if (file.endsWith('.wasm')) modules.push(`(name = "${name}", wasm = embed "${name}")`);
    }
  }
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "loopback", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [
    ${modules.join(',\n    ')}
  ],
  compatibilityDate = "2026-11-01",
  globalOutbound = "loopback",
);
`;
}

before(async () => {
  assert.ok(fs.existsSync(workerd), `no workerd at ${workerd}: run scripts/setup (or set WORKERD)`);
  relay = await new Peer('workerd-relay', { listen: ['tcp', 'ws'], env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  const lines = [];
  for (let i = 0; i < PINS; i++) lines.push(JSON.stringify({ cid: rawCid(`workerd pin ${i}`), name: `bulk-${i}` }));
  const file = path.join(runDir, 'workerd-bulk.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();

  const dir = path.join(runDir, 'workerd');
  fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  fs.symlinkSync(npm, path.join(dir, 'node_modules/pinfold'));
  fs.copyFileSync(path.join(here, 'workerd-worker.mjs'), path.join(dir, 'worker.mjs'));
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'config.capnp'), configuration(port));
  const log = fs.openSync(path.join(runDir, 'workerd.log'), 'w');
  runtime = spawn(workerd, ['serve', 'config.capnp'], { cwd: dir, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  url = `http://127.0.0.1:${port}/`;
  await waitFor('workerd to listen', async () => {
    if (runtime.exitCode !== null) throw new Error(fs.readFileSync(path.join(runDir, 'workerd.log'), 'utf8'));
    return (await fetch(url, { method: 'POST', body: 'null', signal: AbortSignal.timeout(2000) })).status > 0;
  });
});

after(async () => {
  if (runtime && runtime.exitCode === null) runtime.kill('SIGKILL');
  await stopAll();
});

test("the package's workerd export condition picks the entry that takes a compiled module", () => {
  const resolved = execFileSync(
    process.execPath,
    ['--conditions=workerd', '--input-type=module', '-e', "console.log(import.meta.resolve('pinfold'))"],
    { cwd: npm, encoding: 'utf8' },
  ).trim();
  assert.ok(resolved.endsWith('/npm/lib/workerd.js'), resolved);
});

test(`in workerd, a Worker joins over WebSocket, syncs ${PINS} pins and sees a live pin`, async () => {
  const livePin = rawCid('workerd live pin');
  const body = JSON.stringify({
    address: await relay.addressOf('ws'),
    secret,
    trusted: relay.id,
    expected: PINS,
    liveName: 'for-workerd',
  });
  const res = await fetch(url, { method: 'POST', body, signal: AbortSignal.timeout(180_000) });
  assert.equal(res.status, 200);
  const steps = {};
  for await (const line of readline.createInterface({ input: Readable.fromWeb(res.body) })) {
    const step = JSON.parse(line);
    Object.assign(steps, step);
    assert.equal(step.error, undefined, step.error);
    if (step.waiting) {
      const pinned = await relay.post(`/pins/${livePin}?name=for-workerd`);
      assert.equal(pinned.status, 200, pinned.body);
    }
  }
  console.log(
    `# workerd: joined in ${steps.joined.toFixed(0)} ms, ${steps.pins} pins synced in ${steps.synced.toFixed(0)} ms`,
  );
  assert.equal(steps.pins, PINS);
  assert.equal(steps.live, livePin);
});
