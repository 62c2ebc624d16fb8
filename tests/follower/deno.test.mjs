// The npm package in Deno (from npm `deno`, installed by scripts/setup): joins a relay over
// WebSocket inside the private network, syncs its pinset, sees a pin added live through the
// REST API, and runs the follower in a Deno Worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Peer, pinfoldBin, runDir, stopAll } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const deno =
  process.env.DENO ??
  path.join(
    process.env.PINFOLD_CACHE ?? path.join(process.env.HOME, '.cache/pinfold'),
    'node-tools/node_modules/.bin/deno',
  );
const PINS = 2_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let relay;
let child;

before(async () => {
  assert.ok(fs.existsSync(deno), `no Deno at ${deno}: run scripts/setup (or set DENO)`);
  relay = await new Peer('deno-relay', { listen: ['tcp', 'ws'], env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  const lines = [];
  for (let i = 0; i < PINS; i++) lines.push(JSON.stringify({ cid: rawCid(`deno pin ${i}`), name: `bulk-${i}` }));
  const file = path.join(runDir, 'deno-bulk.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();
});

after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await stopAll();
});

test(`Deno joins over WebSocket, syncs ${PINS} pins, sees a live pin and runs a Worker`, async () => {
  const address = await relay.addressOf('ws');
  child = spawn(
    deno,
    [
      'run',
      '--allow-net=127.0.0.1',
      `--allow-read=${path.join(root, 'npm')}`,
      path.join(here, 'deno-follower.mjs'),
      address,
      secret,
      relay.id,
      String(PINS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const steps = {};
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  for await (const line of readline.createInterface({ input: child.stdout })) {
    const step = JSON.parse(line);
    Object.assign(steps, step);
    if (step.waiting) {
      const res = await relay.post(`/pins/${rawCid('deno live pin')}?name=for-deno`);
      assert.equal(res.status, 200, res.body);
    }
  }
  clearTimeout(timer);
  assert.equal(await exited, 0, `deno exited with a failure: ${JSON.stringify(steps)}`);
  console.log(
    `# Deno: joined in ${steps.joined.toFixed(0)} ms, ${steps.pins} pins synced in ${steps.synced.toFixed(0)} ms; ` +
      `in a Worker, ${steps.workerPins} pins synced in ${steps.worker.toFixed(0)} ms`,
  );
  assert.equal(steps.pins, PINS);
  assert.equal(steps.live, rawCid('deno live pin'));
  assert.equal(steps.workerPins, PINS + 1);
});
