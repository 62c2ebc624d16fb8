// Benchmark of live following (run by scripts/bench-follower, figures printed): a writer
// peer with default settings (no write batching) takes PINFOLD_BENCH_LIVE_PINS pins (1000)
// through its REST API, one at a time; for each, the time from sending the POST to the pin
// being seen by a native follower (`role: follower`, its REST API asked request after
// request on one kept-alive connection, which answers in a fraction of a millisecond), by
// the npm package's follower in Node (its `pin` event) and in headless Chromium (its `pin`
// event, stamped in the page). All three follow at once, on loopback.
// Prints the median, 99th percentile and worst per follower.
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { Connection } from '../support/http.mjs';
import { percentiles } from '../support/stats.mjs';
import { launchChromium, serveNpm } from '../browser/page.mjs';
import { follow } from '../../npm/lib/server.js';

const count = Number(process.env.PINFOLD_BENCH_LIVE_PINS ?? 1000);
/** Longest wait for one pin at one follower before the run fails. */
const PIN_TIMEOUT_MS = 10_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const now = () => performance.timeOrigin + performance.now();

const writer = await new Peer('live-writer', { listen: ['tcp', 'ws'], env: { CLUSTER_ROLE: 'relay' } }).init(secret);
await writer.start();
const native = await new Peer('live-native', { env: { CLUSTER_ROLE: 'follower' } }).init(secret);
await native.start(['--bootstrap', writer.address]);
const trust = { bootstrap: [await writer.addressOf('ws')], secret, trustedPeers: [writer.id] };

const { server, origin } = await serveNpm();
const browser = await launchChromium();
let node;
try {
  node = await follow(trust);
  const seenInNode = new Map();
  node.on('pin', (pin) => seenInNode.set(pin.cid, now()));

  const page = await browser.newPage();
  await page.goto(origin);
  const seenInPage = new Map();
  await page.exposeFunction('pinSeen', (cid, at) => seenInPage.set(cid, at));
  await page.evaluate(async (trust) => {
    const pinfold = await import('/lib/index.js');
    await pinfold.ready();
    window.follower = await pinfold.follow(trust);
    window.follower.on('pin', (pin) => window.pinSeen(pin.cid, performance.timeOrigin + performance.now()));
  }, trust);

  const warmup = rawCid('live warm-up');
  await writer.post(`/pins/${warmup}`);
  await waitFor(
    'every follower to see the warm-up pin',
    async () =>
      seenInNode.has(warmup) && seenInPage.has(warmup) && (await native.get(`/allocations/${warmup}`)).status === 200,
    60_000,
  );

  const nativeApi = new Connection(native.api);
  const delays = { native: [], node: [], chromium: [] };
  const answers = [];
  for (let i = 0; i < count; i++) {
    const cid = rawCid(`live pin ${i}`);
    const sent = now();
    const res = await writer.post(`/pins/${cid}`);
    if (res.status !== 200) throw new Error(`pin ${i}: ${res.status} ${res.body}`);
    answers.push(now() - sent);
    const deadline = sent + PIN_TIMEOUT_MS;
    let nativeAt;
    while (nativeAt === undefined || !seenInNode.has(cid) || !seenInPage.has(cid)) {
      if (now() > deadline) {
        throw new Error(
          `pin ${i} not seen within ${PIN_TIMEOUT_MS} ms: native ${nativeAt !== undefined}, Node ${seenInNode.has(cid)}, Chromium ${seenInPage.has(cid)}`,
        );
      }
      if (nativeAt === undefined) {
        if ((await nativeApi.request('GET', `/allocations/${cid}`)).status === 200) nativeAt = now();
      } else await new Promise((r) => setTimeout(r, 1));
    }
    delays.native.push(nativeAt - sent);
    delays.node.push(seenInNode.get(cid) - sent);
    delays.chromium.push(seenInPage.get(cid) - sent);
  }
  nativeApi.close();

  const summary = (xs) => {
    const { p50, p99, max } = percentiles(xs);
    return `median ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, worst ${max.toFixed(1)} ms`;
  };
  console.log(`live: the writer answered ${count} POSTs: ${summary(answers)}`);
  for (const [who, xs] of Object.entries(delays)) {
    console.log(`live: ${count} pins from the POST to the ${who} follower: ${summary(xs)}`);
  }
} finally {
  await node?.close();
  await browser.close();
  server.close();
  await stopAll();
}
