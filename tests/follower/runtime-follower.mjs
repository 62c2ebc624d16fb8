// Run in Deno and Bun by runtimes.test.mjs, from a project whose node_modules holds the
// package: the npm package joins a relay over WebSocket, syncs, sees a pin added live (named
// as the last argument says), and runs in the runtime's Worker through spawnWorker. One JSON line per step on stdout: {entry}, {joined},
// {synced, pins}, {waiting}, {live}, {worker, workerPins}.
import { follow, spawnWorker } from 'pinfold';

const [address, secret, trusted, expected, liveName] = globalThis.Deno?.args ?? process.argv.slice(2);
const options = { bootstrap: [address], secret, trustedPeers: [trusted] };
const say = (step) => console.log(JSON.stringify(step));

async function synced(follower, started) {
  for (;;) {
    const state = await follower.syncState();
    if (state.synced && state.pins >= Number(expected)) return state;
    if (performance.now() - started > 120_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

say({ entry: import.meta.resolve('pinfold') });
const started = performance.now();
const follower = await follow(options);
say({ joined: performance.now() - started });
const state = await synced(follower, started);
say({ synced: performance.now() - started, pins: state.pins });
const live = new Promise((resolve) => follower.on('pin', (pin) => pin.name === liveName && resolve(pin.cid)));
say({ waiting: true });
say({ live: await live });

const workerStarted = performance.now();
const proxied = await spawnWorker(options);
const workerState = await synced(proxied, workerStarted);
say({ worker: performance.now() - workerStarted, workerPins: workerState.pins });
await proxied.close();
await follower.close();
