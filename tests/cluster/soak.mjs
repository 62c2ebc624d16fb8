// Soak: three full peers on loopback, each with its own Kubo, under a steady load of pins
// and unpins for a set time (run by scripts/soak). Every 10 s it samples each process's
// resident memory and open files, and each peer's queue (pins queued and pinning, from its
// Prometheus gauges) and pinset file, then prints the first and last samples and each
// figure's growth per hour (the least-squares slope over the samples after the first fifth
// of the run), and each peer's memory at every tenth of the run, so that a level shows.
// Environment: PINFOLD_SOAK_MINUTES (default 10), PINFOLD_SOAK_RATE (pins per second,
// default 20; as many unpins once PINFOLD_SOAK_WINDOW pins, default 2000, are live).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { awaitFreespace, Ipfs, Peer, pinfoldBin, runDir, sleep, stopAll } from './harness.mjs';
import { identityCid } from '../support/cid.mjs';
import { freePort } from '../support/net.mjs';

const minutes = Number(process.env.PINFOLD_SOAK_MINUTES ?? 10);
const rate = Number(process.env.PINFOLD_SOAK_RATE ?? 20);
const window = Number(process.env.PINFOLD_SOAK_WINDOW ?? 2000);
const SAMPLE_MS = 10_000;
const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

const statusOf = (pid) => fs.readFileSync(`/proc/${pid}/status`, 'utf8');
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(statusOf(pid))[1]);
const openFiles = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
const kuboPid = (ipfs) => Number(fs.readFileSync(path.join(runDir, 'ipfs', ipfs.name, 'daemon.pid'), 'utf8'));

/** Growth per hour of `values` sampled every SAMPLE_MS: the least-squares slope. */
function perHour(values) {
  const n = values.length;
  if (n < 2) return NaN;
  const xs = values.map((_, i) => (i * SAMPLE_MS) / 3_600_000);
  const mx = xs.reduce((a, b) => a + b) / n;
  const my = values.reduce((a, b) => a + b) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (values[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return num / den;
}

async function main() {
  const metricsPorts = [];
  const peers = [];
  for (let n = 0; n < 3; n++) {
    metricsPorts.push(await freePort());
    const ipfs = await new Ipfs(`soak-${n}`).start();
    const env = {
      CLUSTER_REPLICATIONFACTORMIN: '2',
      CLUSTER_REPLICATIONFACTORMAX: '2',
      CLUSTER_METRICS_ENABLESTATS: 'true',
      CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/127.0.0.1/tcp/${metricsPorts[n]}`,
    };
    const peer = await new Peer(`soak-${n}`, { ipfs, env, logLevel: 'info' }).init(secret);
    await peer.start(n === 0 ? [] : ['--bootstrap', peers[0].address]);
    peers.push(peer);
  }
  await awaitFreespace(peers);
  const queue = async (n) => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPorts[n]}/metrics`)).text();
    const gauge = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return gauge('ipfscluster_pins_pin_queued') + gauge('ipfscluster_pins_pinning');
  };

  const processes = [
    ...peers.map((p) => ({ name: p.name, pid: p.child.pid, peer: peers.indexOf(p) })),
    ...peers.map((p) => ({ name: `${p.name} Kubo`, pid: kuboPid(p.ipfs) })),
  ];
  const samples = processes.map(() => ({ rss: [], files: [], queue: [], pinset: [] }));
  const pinsetBytes = (n) => fs.statSync(path.join(peers[n].dir, 'pinset.redb')).size;
  const ends = Date.now() + minutes * 60_000;
  let written = 0;
  let removed = 0;
  let failed = 0;
  const live = [];

  // The load: `rate` pins per second, each at the next peer in turn; past `window` live
  // pins, the oldest is unpinned for each new one.
  const load = (async () => {
    let next = Date.now();
    while (Date.now() < ends) {
      const writer = peers[written % peers.length];
      const cid = identityCid(`soak ${process.pid} ${written}`);
      const pinned = await writer.post(`/pins/${cid}`).catch(() => ({ status: 0 }));
      if (pinned.status === 200) live.push(cid);
      else failed++;
      written++;
      if (live.length > window) {
        const oldest = live.shift();
        const unpinned = await writer.post(`/pins/${oldest}`, 'DELETE').catch(() => ({ status: 0 }));
        if (unpinned.status === 200) removed++;
        else failed++;
      }
      next += 1000 / rate;
      await sleep(Math.max(0, next - Date.now()));
    }
  })();

  console.log(`soak: ${minutes} min, ${rate} pins/s, unpins past ${window} live pins, replication 2`);
  while (Date.now() < ends) {
    for (const [i, proc] of processes.entries()) {
      samples[i].rss.push(rssKiB(proc.pid));
      samples[i].files.push(openFiles(proc.pid));
      if (proc.peer !== undefined) {
        samples[i].queue.push(await queue(proc.peer));
        samples[i].pinset.push(pinsetBytes(proc.peer));
      }
    }
    await sleep(Math.min(SAMPLE_MS, Math.max(0, ends - Date.now())));
  }
  await load;

  const skip = Math.floor(samples[0].rss.length / 5);
  console.log(
    `soak: ${written} pins and ${removed} unpins written, ${failed} refused; ${samples[0].rss.length} samples`,
  );
  console.log('process            RSS first → last (MiB)   growth/h   open files first → last   growth/h   queue max');
  for (const [i, proc] of processes.entries()) {
    const s = samples[i];
    const mib = (kib) => (kib / 1024).toFixed(1);
    const row = [
      proc.name.padEnd(18),
      `${mib(s.rss[0])} → ${mib(s.rss.at(-1))}`.padEnd(24),
      `${mib(perHour(s.rss.slice(skip)))} MiB`.padEnd(10),
      `${s.files[0]} → ${s.files.at(-1)}`.padEnd(25),
      `${perHour(s.files.slice(skip)).toFixed(1)}`.padEnd(10),
      s.queue.length ? String(Math.max(...s.queue)) : '-',
    ];
    console.log(row.join(' '));
  }
  for (const [i, proc] of processes.entries()) {
    const s = samples[i];
    const tenths = Array.from(
      { length: 11 },
      (_, t) => s.rss[Math.min(s.rss.length - 1, Math.round((t * (s.rss.length - 1)) / 10))],
    );
    const pinset = s.pinset.length
      ? `; pinset file ${(s.pinset[0] / 2 ** 20).toFixed(1)} → ${(s.pinset.at(-1) / 2 ** 20).toFixed(1)} MiB`
      : '';
    console.log(
      `${proc.name}: RSS at each tenth of the run (MiB) ${tenths.map((k) => (k / 1024).toFixed(0)).join(' ')}${pinset}`,
    );
  }
}

try {
  await main();
} finally {
  await stopAll();
}
