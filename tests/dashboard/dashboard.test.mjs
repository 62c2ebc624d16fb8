// The web dashboard (web/dist, built by scripts/build-web) in headless Chromium, served by a
// native relay at /ui/ next to a full peer with its own IPFS daemon: the page joins from a
// link carrying the secret, shows the right peer and pin counts, finds a pin by name, shows
// a pin's per-peer statuses, updates live when `pinfold ctl` adds a pin, pins through the
// operator view, fits a phone's screen, resumes after a reload when asked to remember, and
// says what is wrong for a wrong secret or an unreachable peer. Screenshots go to
// tests/artifacts/dashboard/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ipfs, Peer, pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { rawCid } from '../support/cid.mjs';
import { freePort } from '../support/net.mjs';
import { launchChromium } from '../browser/page.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDist = path.resolve(here, '../../web/dist');
const artifacts = path.resolve(here, '../artifacts/dashboard');
const PINS = 3_000;
const CREDENTIALS = 'operator:dashboard-test';
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
let relay;
let full;
let ipfs;
let browser;
let page;

/** Waits until `selector`'s text matches `pattern`; returns the text. */
async function textOf(selector, pattern, timeout = 30_000) {
  await page
    .waitForFunction(
      ({ selector, source, flags }) =>
        new RegExp(source, flags).test(document.querySelector(selector)?.textContent ?? ''),
      { selector, source: pattern.source, flags: pattern.flags },
      { timeout, polling: 100 },
    )
    .catch(async (error) => {
      const text = await page.evaluate((s) => document.querySelector(s)?.textContent, selector);
      throw new Error(
        `${selector} never matched ${pattern} (it says ${JSON.stringify(text?.trim())}): ${error.message}`,
      );
    });
  return page.evaluate((s) => document.querySelector(s).textContent.trim(), selector);
}

async function shoot(name, on = page) {
  fs.mkdirSync(artifacts, { recursive: true });
  await on.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

async function newTab(options) {
  const tab = await browser.newPage(options);
  tab.on('pageerror', (error) => console.log(`# page error: ${error.message}`));
  return tab;
}

async function openTab(name) {
  await page.click(`#tab-${name}`);
}

async function search(text) {
  await page.fill('#pin-search', text);
}

before(async () => {
  assert.ok(fs.existsSync(path.join(webDist, 'index.html')), 'web/dist is built (scripts/build-web)');
  // Its REST API takes basic auth; the dashboard and connect.json are served without.
  relay = await new Peer('dashboard-relay', {
    listen: ['tcp', 'ws'],
    credentials: CREDENTIALS,
    env: {
      CLUSTER_ROLE: 'relay',
      CLUSTER_RESTAPI_DASHBOARDDIR: webDist,
      CLUSTER_CRDT_SNAPSHOTEVERY: '1',
      CLUSTER_CRDT_SNAPSHOTMININTERVAL: '1s',
    },
  }).init(secret);
  const lines = [];
  for (let i = 0; i < PINS; i++) {
    lines.push(
      JSON.stringify({
        cid: rawCid(`dashboard pin ${i}`),
        name: `bulk-${i}`,
        allocations: [relay.id],
        metadata: { batch: `b${i % 10}` },
        replication_factor_min: 1,
        replication_factor_max: 1,
        type: 'pin',
        mode: 'recursive',
      }),
    );
  }
  const file = path.join(runDir, 'dashboard-bulk.ndjson');
  fs.writeFileSync(file, lines.join('\n'));
  execFileSync(pinfoldBin, ['service', '--config', relay.dir, 'state', 'import', file], {
    env: relay.env(),
    stdio: 'ignore',
  });
  await relay.start();
  ipfs = await new Ipfs('dashboard-ipfs').start();
  // Its WebSocket listener lets the page connect to it too, and so ask it for statuses.
  full = await new Peer('dashboard-full', {
    ipfs,
    listen: ['tcp', 'ws'],
    env: { CLUSTER_CRDT_TRUSTEDPEERS: relay.id },
  }).init(secret);
  // A second tag besides the default group, for the Peers tab to show.
  const configFile = path.join(full.dir, 'service.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  config.informer.tags.tags.region = 'lab';
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  await full.start(['--bootstrap', relay.address]);
  await waitFor('the relay and the full peer to see each other', async () => (await relay.list('/peers')).length === 2);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (error) => console.log(`# page error: ${error.message}`));
});

after(async () => {
  await browser?.close();
  await stopAll();
});

test('the relay serves the dashboard and what it needs to join, never the secret, without credentials', async () => {
  assert.equal((await fetch(`${relay.api}/pins`)).status, 401, 'the REST API itself takes credentials');
  const res = await fetch(`${relay.api}/ui/connect.json`);
  assert.equal(res.status, 200);
  const defaults = await res.json();
  assert.deepEqual(Object.keys(defaults).sort(), ['bootstrap', 'cluster', 'peer', 'peername', 'trusted_peers']);
  assert.equal(defaults.peer, relay.id);
  assert.ok(
    defaults.bootstrap.some((a) => a.includes('/ws/p2p/')),
    defaults.bootstrap,
  );
  assert.ok(!JSON.stringify(defaults).includes(secret));
  const redirect = await fetch(`${relay.api}/ui`, { redirect: 'manual' });
  assert.equal(redirect.status, 308);
  assert.match(await (await fetch(`${relay.api}/ui/`)).text(), /pinfold dashboard/);
});

test('a link with the secret joins and shows the peers and the pins', async () => {
  const started = Date.now();
  await page.goto(`${relay.api}/ui/#secret=${secret}`);
  await textOf('#peers-alive', /^2$/);
  await textOf('#pin-count', new RegExp(`^${PINS.toLocaleString('en')}$`));
  await textOf('#status-counts', /remote/, 60_000);
  console.log(`# the dashboard showed ${PINS} pins and 2 peers ${Date.now() - started} ms after the page was opened`);
  assert.equal(await page.evaluate(() => location.hash), '', 'the secret left the address bar');
  await shoot('overview');
  await openTab('peers');
  const peers = await textOf('#peers-table', /dashboard-full/);
  assert.match(peers, /dashboard-relay/);
  assert.match(peers, /relay/);
  assert.match(peers, /trusted/);
  // The full peer's free space metric, from its IPFS daemon's repo/stat.
  await textOf('#peers-table', /dashboard-full[\s\S]*\d (B|[KMGTP]iB)[\s\S]*dashboard-relay/, 60_000);
  // Its tags, from every tag:<name> metric.
  await textOf('#peers-table', /dashboard-full[\s\S]*group=default[\s\S]*region=lab[\s\S]*dashboard-relay/, 60_000);
  await shoot('peers');
});

test('the pin table finds a pin by name and shows its per-peer status', async () => {
  await openTab('pins');
  await textOf('#pin-total', new RegExp(`^${PINS.toLocaleString('en')} pins$`));
  await search('bulk-1234');
  await textOf('#pin-total', /^1 pin$/);
  const row = page.locator('.pin-row[data-cid]');
  await row.first().waitFor();
  assert.match(await row.first().textContent(), /bulk-1234/);
  await search('batch=b7');
  await textOf('#pin-total', new RegExp(`^${(PINS / 10).toLocaleString('en')} pins$`));
  await search('bulk-1234');
  await textOf('#pin-total', /^1 pin$/);
  await page.locator('.pin-row[data-cid]').first().click();
  const statuses = await textOf('#peer-status', /dashboard-full/);
  assert.match(statuses, /dashboard-relay/);
  assert.match(statuses, /remote/);
  await shoot('pin-detail');
  await page.keyboard.press('Escape');
});

test('a pin added with pinfold ctl shows up live, pinned by the full peer', async () => {
  const cid = await ipfs.addContent('dashboard live pin');
  execFileSync(
    pinfoldBin,
    [
      'ctl',
      '--host',
      relay.api,
      '--basic-auth',
      CREDENTIALS,
      'pin',
      'add',
      cid,
      '--name',
      'live-from-ctl',
      '--replication',
      '-1',
    ],
    { stdio: 'ignore' },
  );
  await openTab('activity');
  await textOf('#feed', /live-from-ctl/, 15_000);
  await openTab('overview');
  await textOf('#pin-count', new RegExp(`^${(PINS + 1).toLocaleString('en')}$`));
  await openTab('pins');
  await search('live-from-ctl');
  await textOf('#pin-total', /^1 pin$/);
  await page.locator('.pin-row[data-cid]').first().click();
  await waitFor(
    'the full peer to pin it, as the detail shows',
    async () => {
      await page.locator('.pin-row[data-cid]').first().click();
      const text = await page.evaluate(() => document.querySelector('#peer-status')?.textContent ?? '');
      return /dashboard-full\s*pinned/.test(text);
    },
    60_000,
  );
  await shoot('live-pin');
  await page.keyboard.press('Escape');
});

test('the operator view pins through the REST API of the peer that serves it, with its credentials', async () => {
  const cid = rawCid('pinned from the dashboard');
  await openTab('operate');
  await page.click('#rest-check');
  await textOf('#operate-message', /refused the credentials/);
  await page.fill('#rest-basic', CREDENTIALS);
  await page.click('#rest-check');
  await textOf('#operate-message', /The API answers: peer dashboard-relay/);
  await page.fill('#op-cid', cid);
  await page.fill('#op-name', 'from-the-ui');
  await page.click('form button[type=submit]');
  await textOf('#operate-message', /done/);
  await waitFor('the relay to have the pin', async () => (await relay.allocation(cid))?.name === 'from-the-ui');
  await openTab('pins');
  await search('from-the-ui');
  await textOf('#pin-total', /^1 pin$/);
});

test('it fits a phone-sized screen', async () => {
  const phone = await newTab({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.goto(`${relay.api}/ui/#secret=${secret}`);
  await phone.waitForSelector('#pin-count');
  const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok((await overflow()) <= 0, 'no sideways scrolling on the overview');
  await shoot('phone-overview', phone);
  await phone.click('#tab-pins');
  await phone.waitForSelector('.pin-row[data-cid]');
  assert.ok((await overflow()) <= 0, 'no sideways scrolling on the pin table');
  await shoot('phone-pins', phone);
  await phone.close();
});

test('remembered settings join again after a reload, resuming the pinset kept in the browser', async () => {
  const tab = await newTab();
  await tab.goto(`${relay.api}/ui/`);
  // The peer filled in its address; the secret is the user's to give.
  assert.match(await tab.inputValue('#bootstrap'), /\/ws\/p2p\//);
  await tab.fill('#secret', secret);
  await tab.click('summary');
  await tab.check('#keep');
  await tab.check('#remember');
  await tab.click('button[type=submit]');
  await tab.waitForFunction(
    () => /all in the table/.test(document.querySelector('#pin-count')?.nextElementSibling?.textContent ?? ''),
    null,
    { timeout: 60_000 },
  );
  const count = await tab.textContent('#pin-count');
  const reloaded = Date.now();
  await tab.reload();
  await tab.waitForFunction(
    (count) =>
      document.querySelector('#pin-count')?.textContent === count &&
      /all in the table/.test(document.querySelector('#pin-count')?.nextElementSibling?.textContent ?? ''),
    count,
    { timeout: 60_000 },
  );
  console.log(
    `# after a reload, the remembered dashboard showed its ${count} pins again in ${Date.now() - reloaded} ms`,
  );
  await tab.close();
});

test('an unreachable peer is reported as such', async () => {
  const tab = await newTab();
  const closed = `/ip4/127.0.0.1/tcp/${await freePort()}/ws/p2p/${relay.id}`;
  await tab.goto(`${relay.api}/ui/#secret=${secret}&bootstrap=${encodeURIComponent(closed)}`);
  await tab.waitForSelector('#connect-error', { timeout: 30_000 });
  assert.match(await tab.textContent('#connect-error'), /Could not reach .*Is the peer running/);
  await tab.close();
});

test('a wrong secret is reported as such', async () => {
  const wrong = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
  const other = await newTab();
  const started = Date.now();
  await other.goto(`${relay.api}/ui/#secret=${wrong}`);
  await other.waitForSelector('#connect-error', { timeout: 30_000 });
  const message = await other.textContent('#connect-error');
  console.log(`# a wrong secret was reported ${Date.now() - started} ms after the page was opened`);
  assert.match(message, /Wrong cluster secret\?/);
  fs.mkdirSync(artifacts, { recursive: true });
  await other.screenshot({ path: path.join(artifacts, 'wrong-secret.png') });
  await other.close();
});
