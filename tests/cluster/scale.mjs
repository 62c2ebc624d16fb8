// A new native peer joining a peer that holds a large pinset, on loopback with release
// builds (run by scripts/bench-scale, figures printed as one table). For each size in
// PINFOLD_BENCH_SIZES (100000,1000000; PINFOLD_BENCH_SCALE_10M=1 adds 10,000,000), the
// pins are written into a stopped peer with `pinfold service state import` (1000 pins to a
// delta), and the same store is copied to a second stopped peer. Then:
//   1. through the DAG: the copy runs with snapshots off; a new peer (snapshots off too)
//      joins through it and walks the whole DAG (ancestors requests, then bitswap);
//   2. from a snapshot: the first runs with a snapshot due at once; once it has made one, a
//      new peer joins through it and loads it.
// Each join is timed from the new peer's start to its heads matching the other's, and its
// resident memory and pinset file are read once synced (disk: the blocks the file takes;
// file: its length, which the database grows ahead of its writes). Once synced and 2 s
// without a write, a peer merges the key runs its sync wrote, and compacts its store if
// the file grew by 64 MiB and is largely free space: a row gives each of these (its time,
// from the peer's log, and the file after it). Each new peer is then restarted (timed to
// its REST API; the file as its stop left it). Peers are relays (they keep the pinset, pin
// nothing) and log at info. Each size is bounded by PINFOLD_BENCH_SCALE_MINUTES (30) per
// join.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { rawCid } from '../support/cid.mjs';

const sizes = (process.env.PINFOLD_BENCH_SIZES ?? '100000,1000000').split(',').map(Number);
if (process.env.PINFOLD_BENCH_SCALE_10M && !sizes.includes(10_000_000)) sizes.push(10_000_000);
const limitMs = Number(process.env.PINFOLD_BENCH_SCALE_MINUTES ?? 30) * 60_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const relay = { CLUSTER_ROLE: 'relay' };

const crdt = async (peer) => JSON.parse((await peer.get('/state/crdt')).body);
const rssBytes = (peer) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${peer.child.pid}/status`, 'utf8'))[1]) * 1024;
/**
 * The pinset file's size: what it takes on disk (its allocated blocks), and its length,
 * which is larger when the database has grown the file ahead (sparsely) of what it wrote.
 */
const pinsetBytes = (peer) => {
  const stat = fs.statSync(path.join(peer.dir, 'pinset.redb'));
  return { disk: stat.blocks * 512, length: stat.size };
};

/** Writes `count` pins, one ipfs-cluster pin JSON object per line, to `file`. */
function writePins(file, count) {
  const out = fs.openSync(file, 'w');
  const chunk = 10_000;
  for (let start = 0; start < count; start += chunk) {
    let lines = '';
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      lines += `{"cid":"${rawCid(`pinfold scale ${i}`)}","type":"pin","max_depth":-1,"replication_factor_min":-1,"replication_factor_max":-1,"name":"scale-${i}","allocations":[]}\n`;
    }
    fs.writeSync(out, lines);
  }
  fs.closeSync(out);
}

const logOf = (peer) => fs.readFileSync(peer.log, 'utf8');
const durationMs = (text) => {
  const [, amount, unit] = /^([\d.]+)(ns|µs|ms|s)$/.exec(text);
  return Number(amount) * { ns: 1e-6, µs: 1e-3, ms: 1, s: 1000 }[unit];
};

/** Polls `peer`'s log until `pattern` matches it (its match) or `ms` pass (null). */
async function logMatch(peer, pattern, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = pattern.exec(logOf(peer));
    if (found || Date.now() >= deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Waits for what a new peer that has just synced does to its store within 5 s (once it
 * has written nothing for 2 s), if anything: merging its key runs, then compacting. Gives
 * a row for each, with its time and the file after it.
 */
async function housekeepingOnceSynced(peer) {
  const rows = [];
  const first = await logMatch(peer, /merging the pinset's key runs|compacting the pinset store/, 5000);
  if (!first) return rows;
  if (first[0].startsWith('merging')) {
    const merged = await logMatch(peer, /merged the pinset's key runs.*took=(\S+)/, limitMs);
    if (!merged) throw new Error(`${peer.name} did not finish merging its key runs`);
    rows.push({ step: 'it merges its key runs once synced', ms: durationMs(merged[1]), ...pinsetBytes(peer) });
    // Then it flushes and counts its free pages (seconds at 10,000,000 pins) and says
    // whether it compacts.
    const next = await logMatch(peer, /compacting the pinset store|too little free space/, limitMs);
    if (!next || !next[0].startsWith('compacting')) return rows;
  }
  const compacted = await logMatch(peer, /compacted the pinset store.*took=(\S+)/, limitMs);
  if (!compacted) throw new Error(`${peer.name} did not finish compacting its store`);
  rows.push({ step: 'it compacts its store once synced', ms: durationMs(compacted[1]), ...pinsetBytes(peer) });
  return rows;
}

/**
 * Starts a new peer through `source` and waits until its heads are `source`'s, then for
 * what it does to its store once synced (rows of their own). With `restart`, then
 * restarts it and gives that as a last row.
 */
async function join(name, source, { restart = false, env = {} } = {}) {
  const target = await crdt(source);
  const heads = JSON.stringify(target.heads.map((h) => h.cid).sort());
  const started = Date.now();
  const joiner = await (
    await new Peer(name, { env: { ...relay, ...env }, logLevel: 'info' }).init(secret)
  ).start(['--bootstrap', source.address]);
  let state;
  await waitFor(
    `${name} to sync`,
    async () => {
      state = await crdt(joiner);
      return state.synced && JSON.stringify(state.heads.map((h) => h.cid).sort()) === heads;
    },
    limitMs,
  );
  const ms = Date.now() - started;
  const figures = { ms, rss: rssBytes(joiner), ...pinsetBytes(joiner), state };
  const housekeeping = await housekeepingOnceSynced(joiner);
  await joiner.stop();
  if (!restart) return { figures, housekeeping };
  const logFrom = logOf(joiner).length;
  const restarted = Date.now();
  await joiner.start([], limitMs);
  const again = { ms: Date.now() - restarted, ...pinsetBytes(joiner) };
  again.compacted = logOf(joiner).slice(logFrom).includes('compacted the pinset store');
  await joiner.stop();
  return { figures, housekeeping, restarted: again };
}

const rows = [];
try {
  for (const pins of sizes) {
    const file = path.join(fs.mkdtempSync('/tmp/pinfold-scale-'), 'pins.jsonl');
    writePins(file, pins);
    const writer = await new Peer(`writer-${pins}`, { env: relay, logLevel: 'info' }).init(secret);
    let started = Date.now();
    execFileSync(pinfoldBin, ['service', '--config', writer.dir, 'state', 'import', file], {
      env: writer.env(),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    rows.push({ pins, step: 'state import into a stopped peer', ms: Date.now() - started, ...pinsetBytes(writer) });
    fs.rmSync(path.dirname(file), { recursive: true });

    // 1. Through the DAG, from a copy of the store that never makes a snapshot.
    const copy = await new Peer(`copy-${pins}`, {
      env: { ...relay, CLUSTER_CRDT_SNAPSHOTEVERY: '0' },
      logLevel: 'info',
    }).init(secret);
    fs.copyFileSync(path.join(writer.dir, 'pinset.redb'), path.join(copy.dir, 'pinset.redb'));
    await copy.start();
    // With snapshots off, as the peer it walks: the row is the walk alone, not the walk
    // and the snapshot a peer makes when its height calls for one (which holds it, at
    // 10,000,000 pins for as long as the writer's row below).
    const dag = await join(`dag-${pins}`, copy, { restart: true, env: { CLUSTER_CRDT_SNAPSHOTEVERY: '0' } });
    rows.push({ pins, step: 'a new peer joins through the DAG', ...dag.figures });
    rows.push(...dag.housekeeping.map((row) => ({ pins, ...row })));
    const { restarted } = dag;
    rows.push({
      pins,
      step: `it restarts${restarted.compacted ? ', compacting its store' : ''}`,
      ...restarted,
    });
    await copy.stop();

    // 2. From a snapshot the writer makes as soon as it starts.
    writer.extraEnv = { ...writer.extraEnv, CLUSTER_CRDT_SNAPSHOTEVERY: '1', CLUSTER_CRDT_SNAPSHOTMININTERVAL: '0s' };
    started = Date.now();
    await writer.start();
    await waitFor(
      `writer-${pins} to make a snapshot`,
      () => fs.existsSync(path.join(writer.dir, 'snapshot.json')),
      limitMs,
    );
    rows.push({ pins, step: 'the writer starts and makes a snapshot', ms: Date.now() - started });
    const snap = await join(`snapshot-${pins}`, writer, { restart: true });
    if (!snap.figures.state.snapshot) throw new Error(`snapshot-${pins} synced without loading the snapshot`);
    rows.push({ pins, step: 'a new peer joins from a snapshot', ...snap.figures });
    rows.push(...snap.housekeeping.map((row) => ({ pins, ...row })));
    rows.push({
      pins,
      step: `it restarts${snap.restarted.compacted ? ', compacting its store' : ''}`,
      ...snap.restarted,
    });
    await writer.stop();
    for (const peer of [writer, copy]) fs.rmSync(peer.dir, { recursive: true, force: true });
  }
} finally {
  await stopAll();
}

const perPin = (bytes, pins) => (bytes === undefined ? '-' : Math.round(bytes / pins).toString());
console.log(
  `| ${'step'.padEnd(40)} | ${'pins'.padStart(10)} | ${'time (s)'.padStart(9)} | ${'pins/s'.padStart(10)} | ${'resident B/pin'.padStart(14)} | ${'disk B/pin'.padStart(10)} | ${'file B/pin'.padStart(10)} |`,
);
console.log(
  `|${'-'.repeat(42)}|${'-'.repeat(12)}|${'-'.repeat(11)}|${'-'.repeat(12)}|${'-'.repeat(16)}|${'-'.repeat(12)}|${'-'.repeat(12)}|`,
);
for (const row of rows) {
  console.log(
    `| ${row.step.padEnd(40)} | ${String(row.pins).padStart(10)} | ${(row.ms / 1000).toFixed(2).padStart(9)} | ${String(Math.round((row.pins / row.ms) * 1000)).padStart(10)} | ${perPin(row.rss, row.pins).padStart(14)} | ${perPin(row.disk, row.pins).padStart(10)} | ${perPin(row.length, row.pins).padStart(10)} |`,
  );
}
