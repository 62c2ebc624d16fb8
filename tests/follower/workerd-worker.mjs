// The Worker workerd.test.mjs runs in workerd: for a POST of {address, secret, trusted,
// expected, liveName}, the npm package (through its `workerd` entry) joins the relay over
// WebSocket, syncs, and sees a pin named liveName added live. The answer streams one JSON
// line per step: {joined}, {synced, pins}, {waiting}, {live}, or {error}.
import { follow } from './node_modules/pinfold/lib/workerd.js';

async function run({ address, secret, trusted, expected, liveName }, say) {
  const started = performance.now();
  const follower = await follow({ bootstrap: [address], secret, trustedPeers: [trusted] });
  say({ joined: performance.now() - started });
  for (;;) {
    const state = await follower.syncState();
    if (state.synced && state.pins >= expected) {
      say({ synced: performance.now() - started, pins: state.pins });
      break;
    }
    if (performance.now() - started > 120_000) throw new Error(`not synced: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const live = new Promise((resolve) => follower.on('pin', (pin) => pin.name === liveName && resolve(pin.cid)));
  say({ waiting: true });
  say({ live: await live });
  await follower.close();
}

export default {
  async fetch(request) {
    const options = await request.json();
    const { readable, writable } = new TransformStream();
    const writer = writable.getWriter();
    const encoder = new TextEncoder();
    const say = (step) => writer.write(encoder.encode(`${JSON.stringify(step)}\n`));
    // Runs on after the answer starts: workerd keeps the request alive until the stream ends.
    run(options, say)
      .catch((error) => say({ error: `${error.name}: ${error.message}` }))
      .finally(() => writer.close());
    return new Response(readable, { headers: { 'content-type': 'application/x-ndjson' } });
  },
};
