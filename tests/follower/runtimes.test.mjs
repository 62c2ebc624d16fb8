// The npm package in Deno and Bun (npm `deno` and `bun`, installed by scripts/setup),
// imported by its name as from node_modules, so that each runtime's export condition picks
// the entry (the build without WebRTC): in each, it joins a relay over WebSocket inside the
// private network, syncs its pinset, sees a pin added live through the REST API, and runs
// the follower in the runtime's Worker.
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
const tools = path.join(process.env.PINFOLD_CACHE ?? path.join(process.env.HOME, '.cache/pinfold'), 'node-tools');
const PINS = 2_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const npm = path.join(root, 'npm');
/** A project that depends on the package: node_modules/pinfold links to npm/. */
const project = path.join(runDir, 'runtimes-project');
const script = path.join(project, 'runtime-follower.mjs');
/** Each runtime: its binary and the command that runs the follower script with `args`. */
const runtimes = {
  Deno: {
    binary: process.env.DENO ?? path.join(tools, 'node_modules/.bin/deno'),
    command: (deno, args) => [deno, 'run', '--allow-net=127.0.0.1', `--allow-read=${npm},${project}`, script, ...args],
  },
  Bun: {
    binary: process.env.BUN ?? path.join(tools, 'node_modules/.bin/bun'),
    command: (bun, args) => [bun, 'run', script, ...args],
  },
};
let relay;
const children = new Set();

before(async () => {
  fs.mkdirSync(path.join(project, 'node_modules'), { recursive: true });
  fs.symlinkSync(npm, path.join(project, 'node_modules/pinfold'));
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ type: 'module', dependencies: { pinfold: '*' } }),
  );
  fs.copyFileSync(path.join(here, 'runtime-follower.mjs'), script);
  relay = await new Peer('runtimes-relay', { listen: ['tcp', 'ws'], env: { CLUSTER_ROLE: 'relay' } }).init(secret);
  const lines = [];
  for (let i = 0; i < PINS; i++) lines.push(JSON.stringify({ cid: rawCid(`runtime pin ${i}`), name: `bulk-${i}` }));
  const file = path.join(runDir, 'runtimes-bulk.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();
});

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await stopAll();
});

for (const [name, runtime] of Object.entries(runtimes)) {
  test(`${name} joins over WebSocket, syncs ${PINS} pins, sees a live pin and runs a Worker`, async () => {
    assert.ok(fs.existsSync(runtime.binary), `no ${name} at ${runtime.binary}: run scripts/setup`);
    const address = await relay.addressOf('ws');
    const livePin = rawCid(`${name} live pin`);
    const liveName = `for-${name.toLowerCase()}`;
    const [command, ...args] = runtime.command(runtime.binary, [address, secret, relay.id, String(PINS), liveName]);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const steps = {};
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    for await (const line of readline.createInterface({ input: child.stdout })) {
      const step = JSON.parse(line);
      Object.assign(steps, step);
      if (step.waiting) {
        const res = await relay.post(`/pins/${livePin}?name=${liveName}`);
        assert.equal(res.status, 200, res.body);
      }
    }
    clearTimeout(timer);
    assert.equal(await exited, 0, `${name} exited with a failure: ${JSON.stringify(steps)}`);
    console.log(
      `# ${name}: joined in ${steps.joined.toFixed(0)} ms, ${steps.pins} pins synced in ${steps.synced.toFixed(0)} ms; ` +
        `in a Worker, ${steps.workerPins} pins synced in ${steps.worker.toFixed(0)} ms`,
    );
    assert.ok(steps.entry.endsWith('/npm/lib/server.js'), `${name} loaded ${steps.entry}`);
    assert.ok(steps.pins >= PINS, JSON.stringify(steps));
    assert.equal(steps.live, livePin);
    assert.ok(steps.workerPins > PINS, JSON.stringify(steps));
  });
}
