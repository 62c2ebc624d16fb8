// The dashboard's benchmark (run by scripts/bench-dashboard, figures printed): a release
// relay serves the built dashboard and a pinset of PINFOLD_BENCH_PINS pins (100000); headless
// Chromium opens it and the script measures, on the page's main thread (PerformanceObserver
// 'longtask': tasks over 50 ms):
//   1. the time until every pin is in the table, and the long tasks while the Worker syncs;
//   2. scrolling the pin table from top to bottom in 200 steps, one per frame;
//   3. typing a search character by character, and the time until its one result shows;
//   4. sorting by name, and the time until the sorted rows show.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, runDir, stopAll } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { launchChromium } from '../browser/page.mjs';

const pins = Number(process.env.PINFOLD_BENCH_PINS ?? 100_000);
const webDist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web/dist');
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

/** Long tasks since the last call: count, total and longest, in ms. */
const takeLongTasks = (page) =>
  page.evaluate(() => {
    const tasks = window.longTasks.splice(0);
    return {
      count: tasks.length,
      total: Math.round(tasks.reduce((a, b) => a + b, 0)),
      longest: Math.round(Math.max(0, ...tasks)),
    };
  });
const show = (label, t) =>
  console.log(`${label}: ${t.count} long tasks, ${t.total} ms in all, longest ${t.longest} ms`);

try {
  const lines = [];
  for (let i = 0; i < pins; i++) {
    lines.push(
      JSON.stringify({
        cid: rawCid(`dashboard bench ${i}`),
        name: `bench-${i}`,
        metadata: { shard: `s${i % 100}` },
        replication_factor_min: -1,
        replication_factor_max: -1,
      }),
    );
  }
  const file = path.join(runDir, 'dashboard-bench.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  const relay = await new Peer('dashboard-bench', {
    listen: ['tcp', 'ws'],
    env: {
      CLUSTER_ROLE: 'relay',
      CLUSTER_RESTAPI_DASHBOARDDIR: webDist,
      CLUSTER_CRDT_SNAPSHOTEVERY: '1',
      CLUSTER_CRDT_SNAPSHOTMININTERVAL: '1s',
    },
  }).init(secret);
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();

  const browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.addInitScript(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
    }).observe({ type: 'longtask', buffered: true });
  });
  const count = pins.toLocaleString('en');
  await page.goto(`${relay.api}/ui/connect.json`);
  // The observer sees a task the page blocks on for 120 ms: the measurement works.
  await page.evaluate(() =>
    setTimeout(() => {
      const until = performance.now() + 120;
      while (performance.now() < until);
    }),
  );
  await page.waitForFunction(() => window.longTasks.length > 0, null, { timeout: 5000 });
  const started = Date.now();
  await page.goto(`${relay.api}/ui/#secret=${secret}`);
  await page.waitForSelector('#pin-count', { timeout: 60_000 });
  console.log(`joined, first overview shown ${Date.now() - started} ms after the page was opened`);
  await page.waitForFunction(
    (count) =>
      document.querySelector('#pin-count')?.textContent === count &&
      /all in the table/.test(document.querySelector('#pin-count')?.nextElementSibling?.textContent ?? ''),
    count,
    { timeout: 600_000, polling: 100 },
  );
  console.log(`pins: ${count}`);
  console.log(`every pin in the table ${Date.now() - started} ms after the page was opened`);
  show('while syncing', await takeLongTasks(page));

  await page.click('#tab-pins');
  await page.waitForFunction((count) => document.querySelector('#pin-total')?.textContent === `${count} pins`, count);
  await page.waitForSelector('.pin-row[data-cid]');
  await takeLongTasks(page);
  const scrolled = await page.evaluate(async () => {
    const scroller = document.querySelector('#pin-scroller');
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    let blank = 0;
    const steps = 200;
    const t0 = performance.now();
    for (let i = 1; i <= steps; i++) {
      scroller.scrollTop = ((scroller.scrollHeight - scroller.clientHeight) * i) / steps;
      await frame();
      await frame();
      if (document.querySelectorAll('.pin-row.loading').length > 0) blank++;
    }
    return { ms: performance.now() - t0, steps, blank };
  });
  console.log(
    `scrolled the table top to bottom in ${scrolled.steps} steps: ${Math.round(scrolled.ms)} ms, ` +
      `${scrolled.blank} frames with rows still loading`,
  );
  show('while scrolling', await takeLongTasks(page));

  const needle = `bench-${pins - 1}`;
  await page.click('#pin-search');
  await page.keyboard.type(needle, { delay: 60 });
  const typed = Date.now();
  await page.waitForFunction(
    (needle) =>
      document.querySelector('#pin-total')?.textContent === '1 pin' &&
      document.querySelector('.pin-row[data-cid] .col-name')?.textContent === needle,
    needle,
    { timeout: 60_000, polling: 'raf' },
  );
  console.log(
    `search "${needle}": its one row shown ${Date.now() - typed} ms after the last keystroke (typing at 60 ms a key)`,
  );
  show('while searching', await takeLongTasks(page));

  await page.fill('#pin-search', '');
  await page.waitForFunction((count) => document.querySelector('#pin-total')?.textContent === `${count} pins`, count);
  await takeLongTasks(page);
  const sortStarted = Date.now();
  await page.click('.pin-row.head .col-name button');
  await page.waitForFunction(
    () => document.querySelector('.pin-row[data-cid] .col-name')?.textContent === 'bench-0',
    null,
    { timeout: 60_000, polling: 'raf' },
  );
  console.log(`sort by name: sorted rows shown ${Date.now() - sortStarted} ms after the click`);
  show('while sorting', await takeLongTasks(page));

  const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
  if (heap)
    console.log(`page JS heap: ${(heap / 1024 / 1024).toFixed(1)} MiB (the follower and the index live in the Worker)`);
  await browser.close();
} finally {
  await stopAll();
}
