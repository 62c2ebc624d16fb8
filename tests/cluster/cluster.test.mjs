// A real cluster on loopback: three full peers and a follower, each with its own Kubo,
// pinning through the Kubo RPC API. Checks replication, unpinning, the follower,
// a SIGKILL and restart, a wrong secret (over TCP and over webrtc-direct), peers reached only
// over webrtc-direct or WebSocket, an untrusted writer, the Prometheus endpoint, and an IPFS
// daemon restart.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { awaitFreespace, Ipfs, Peer, pinfoldBin, stopAll, waitFor } from './harness.mjs';
import { freePort } from '../support/net.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const full = [];
let follower;
const everyone = () => [...full, follower];

/** Every peer's daemon that must hold `cid` per its allocations (empty = every peer). */
function holders(allocations) {
  return everyone().filter((p) => allocations.length === 0 || allocations.includes(p.id));
}

async function dump() {
  for (const peer of everyone()) console.error(`--- ${peer.name} log ---\n${peer.tail(30)}`);
}

before(async () => {
  const names = ['p1', 'p2', 'p3'];
  for (const name of names) {
    const ipfs = await new Ipfs(name).start();
    full.push(new Peer(name, { ipfs, listen: name === 'p1' ? ['tcp', 'ws', 'webrtc'] : ['tcp'] }));
  }
  follower = new Peer('follower', { ipfs: await new Ipfs('follower').start() });
  for (const peer of everyone()) await peer.init(secret);
  // Only the three full peers may write.
  const trusted = full.map((p) => p.id).join(',');
  for (const peer of everyone()) peer.extraEnv.CLUSTER_CRDT_TRUSTEDPEERS = trusted;
  follower.extraEnv.CLUSTER_ROLE = 'follower';
  // p1 serves Prometheus metrics.
  full[0].metricsUrl = `http://127.0.0.1:${await freePort()}/metrics`;
  Object.assign(full[0].extraEnv, {
    CLUSTER_METRICS_ENABLESTATS: 'true',
    CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/127.0.0.1/tcp/${new URL(full[0].metricsUrl).port}`,
    CLUSTER_METRICS_REPORTINGINTERVAL: '1s',
  });
  await full[0].start();
  for (const peer of [...full.slice(1), follower]) await peer.start(['--bootstrap', full[0].address]);
  // Everyone sees all four peers and the freespace of each.
  for (const peer of everyone()) {
    await waitFor(`${peer.name} to see 4 peers`, async () => (await peer.list('/peers')).length === 4);
  }
  await awaitFreespace(everyone(), 4);
});

after(async () => {
  await stopAll();
});

test('a pin with replication 2 reaches pinned on exactly its allocated daemons', async (t) => {
  const cid = await full[0].ipfs.addContent('replication two');
  const { status, body } = await full[0].post(`/pins/${cid}?replication-min=2&replication-max=2&name=two`);
  assert.equal(status, 200, body);
  const pin = JSON.parse(body);
  assert.equal(pin.allocations.length, 2, body);
  assert.equal(pin.name, 'two');
  const allocated = holders(pin.allocations);
  try {
    for (const peer of allocated) {
      await waitFor(`${cid} pinned on ${peer.name}'s daemon`, () => peer.ipfs.isPinned(cid));
      await waitFor(`${peer.name} to report pinned`, async () => {
        const info = JSON.parse((await peer.get(`/pins/${cid}`)).body);
        return info.peer_map[peer.id]?.status === 'pinned';
      });
    }
    for (const peer of everyone().filter((p) => !allocated.includes(p))) {
      await waitFor(`${peer.name} to know the pin`, () => peer.allocation(cid));
      const info = JSON.parse((await peer.get(`/pins/${cid}`)).body);
      assert.equal(info.peer_map[peer.id].status, 'remote', JSON.stringify(info));
      assert.equal(await peer.ipfs.isPinned(cid), false, `${peer.name} should not pin ${cid}`);
    }
  } catch (error) {
    await dump();
    throw error;
  }

  await t.test('unpin removes it from the daemons', async () => {
    const rm = await full[1].post(`/pins/${cid}`, 'DELETE');
    assert.equal(rm.status, 200, rm.body);
    for (const peer of allocated) {
      await waitFor(`${cid} unpinned on ${peer.name}'s daemon`, async () => !(await peer.ipfs.isPinned(cid)));
    }
    for (const peer of everyone()) {
      await waitFor(`${peer.name} to drop the pin`, async () => (await peer.allocation(cid)) === null);
    }
  });
});

test('a pin everywhere reaches every daemon, the follower included', async () => {
  const cid = await full[1].ipfs.addContent('everywhere');
  const { status, body } = await full[1].post(`/pins/${cid}`);
  assert.equal(status, 200, body);
  assert.deepEqual(JSON.parse(body).allocations, []);
  for (const peer of everyone()) {
    await waitFor(`${cid} pinned on ${peer.name}'s daemon`, () => peer.ipfs.isPinned(cid));
  }
});

test('the follower sees every pin and cannot write', async () => {
  const cid = await full[2].ipfs.addContent('seen by the follower');
  assert.equal((await full[2].post(`/pins/${cid}?replication=1`)).status, 200);
  await waitFor('the follower to list the pin', async () =>
    (await follower.list('/allocations')).some((p) => p.cid === cid),
  );
  const ours = (await full[2].list('/allocations')).map((p) => p.cid).sort();
  await waitFor(
    'the follower to hold the same pinset',
    async () => JSON.stringify((await follower.list('/allocations')).map((p) => p.cid).sort()) === JSON.stringify(ours),
  );

  const write = await follower.post(`/pins/${await follower.ipfs.addContent('follower write')}`);
  assert.equal(write.status, 403, write.body);
  assert.match(JSON.parse(write.body).message, /does not write to the pinset/);
});

test("a pin's status lists every peer; ?local=true only the asked one", async () => {
  const cid = await full[0].ipfs.addContent('cluster-wide status');
  const pin = JSON.parse((await full[0].post(`/pins/${cid}?replication=2`)).body);
  const allocated = holders(pin.allocations);
  for (const peer of allocated) await waitFor(`${cid} pinned on ${peer.name}'s daemon`, () => peer.ipfs.isPinned(cid));
  const asked = everyone().find((p) => !allocated.includes(p));
  const global = await waitFor('every peer to report', async () => {
    const info = JSON.parse((await asked.get(`/pins/${cid}`)).body);
    return allocated.every((p) => info.peer_map[p.id]?.status === 'pinned') ? info : null;
  });
  assert.deepEqual(
    Object.keys(global.peer_map).sort(),
    everyone()
      .map((p) => p.id)
      .sort(),
  );
  for (const peer of everyone().filter((p) => !allocated.includes(p))) {
    assert.equal(global.peer_map[peer.id].status, 'remote', JSON.stringify(global));
    assert.equal(global.peer_map[peer.id].peername, peer.name);
  }
  const local = JSON.parse((await asked.get(`/pins/${cid}?local=true`)).body);
  assert.deepEqual(Object.keys(local.peer_map), [asked.id]);
  // The listing carries every peer's view too, and filters on any of them.
  const listed = (await asked.list('/pins?filter=pinned')).find((g) => g.cid === cid);
  assert.ok(listed, 'the pin is pinned somewhere, so ?filter=pinned lists it');
  assert.equal(Object.keys(listed.peer_map).length, everyone().length);
  // As Go's handlers do, parameters a route does not take are passed over.
  const extra = await asked.get(`/pins/${cid}?stream-channels=true&locall=true`);
  assert.equal(extra.status, 200, extra.body);
  assert.equal(Object.keys(JSON.parse(extra.body).peer_map).length, everyone().length);
});

test('a status never lags a pin or unpin its peer completed', async () => {
  const [holder, asked] = [full[1], full[2]];
  // A cluster-wide status first, so that the holder keeps a fresh listing of its daemon's
  // pins for the next requests.
  await asked.get(`/pins/${await full[0].ipfs.addContent('warm the listing')}`);
  const viewOfHolder = async (cid) => JSON.parse((await asked.get(`/pins/${cid}`)).body).peer_map[holder.id]?.status;
  const watch = async (cid, wanted, forbidden) => {
    const deadline = Date.now() + 2_000;
    while (Date.now() < deadline) {
      const status = await viewOfHolder(cid);
      assert.notEqual(status, forbidden, `${asked.name} saw ${holder.name}'s ${cid} as ${forbidden}`);
      if (status === wanted) return;
    }
    assert.fail(`${holder.name}'s ${cid} never read ${wanted}`);
  };
  const cid = await full[0].ipfs.addContent('fresh status');
  assert.equal((await full[0].post(`/pins/${cid}?replication=1&user-allocations=${holder.id}`)).status, 200);
  await waitFor(`${cid} pinned on ${holder.name}'s daemon`, () => holder.ipfs.isPinned(cid));
  await watch(cid, 'pinned', 'unexpectedly_unpinned');
  assert.equal((await full[0].post(`/pins/${cid}`, 'DELETE')).status, 200);
  await waitFor(`${cid} unpinned on ${holder.name}'s daemon`, async () => !(await holder.ipfs.isPinned(cid)));
  await watch(cid, 'unpinned', 'pinned');
});

test('pinfold ctl pins, waits, lists and unpins as ipfs-cluster-ctl does', async () => {
  const ctl = (...args) => {
    try {
      return {
        code: 0,
        out: execFileSync(pinfoldBin, ['ctl', '--host', `/ip4/127.0.0.1/tcp/${full[1].apiPort}`, ...args], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      };
    } catch (error) {
      return { code: error.status, out: error.stdout, err: error.stderr };
    }
  };
  const cid = await full[1].ipfs.addContent('through ctl');
  const added = ctl(
    '--enc',
    'json',
    'pin',
    'add',
    cid,
    '--replication',
    '2',
    '--name',
    'via-ctl',
    '--metadata',
    'team=ops',
    '--wait',
    '--wait-timeout',
    '60',
  );
  if (added.code !== 0) {
    console.error(ctl('status', cid).out);
    for (const peer of everyone()) console.error(peer.name, await peer.ipfs.isPinned(cid));
    await dump();
  }
  assert.equal(added.code, 0, added.err);
  const status = JSON.parse(added.out);
  assert.equal(status.name, 'via-ctl');
  assert.equal(Object.values(status.peer_map).filter((v) => v.status === 'pinned').length, 2, added.out);
  for (const peer of holders(status.allocations)) assert.ok(await peer.ipfs.isPinned(cid), `${peer.name} holds it`);

  const text = ctl('status', cid);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, new RegExp(`^${cid} \\| via-ctl:`));
  assert.equal((text.out.match(/: PINNED \|/g) ?? []).length, 2, text.out);
  const ls = ctl('pin', 'ls', cid);
  assert.match(ls.out, /via-ctl \| PIN \| Repl\. Factor: 2--2/);
  const peers = ctl('--enc', 'json', 'peers', 'ls');
  assert.equal(peers.out.match(/"peername"/g).length, 4, peers.out);
  assert.match(ctl('id').out, new RegExp(`^${full[1].id} \\| p2 \\| Sees 3 other peers`));
  assert.match(ctl('health', 'metrics').out, /^freespace$/m);
  assert.match(ctl('health', 'metrics', 'ping').out, / \| ping \| /);

  const rm = ctl('pin', 'rm', cid);
  assert.equal(rm.code, 0, rm.err);
  assert.match(rm.out, /unpinned from the cluster/);
  await waitFor('the unpin to reach every peer', async () =>
    (await Promise.all(everyone().map((p) => p.allocation(cid)))).every((a) => a === null),
  );

  const bad = ctl('pin', 'add', 'not-a-cid');
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /400 Bad Request: error decoding Cid "not-a-cid"/);
  try {
    execFileSync(pinfoldBin, ['ctl', '--host', '/ip4/127.0.0.1/tcp/1', 'id'], { stdio: ['ignore', 'pipe', 'pipe'] });
    assert.fail('ctl reached a closed port');
  } catch (error) {
    assert.equal(error.status, 1);
    assert.match(
      error.stderr.toString(),
      /could not reach the pinfold API at http:\/\/127\.0\.0\.1:1: is `pinfold service daemon` running there\? \(set --host\)/,
    );
  }
});

test('basic auth and bearer tokens guard the REST API; pinfold ctl passes --basic-auth', async () => {
  const guarded = new Peer('guarded', { ipfs: full[0].ipfs, credentials: 'ops:s3cret' });
  await guarded.init(secret);
  guarded.extraEnv.CLUSTER_CRDT_TRUSTEDPEERS = full.map((p) => p.id).join(',');
  const basic = guarded.headers.authorization;
  await guarded.start(['--bootstrap', full[0].address]);
  const get = (route, headers = {}) =>
    fetch(`${guarded.api}${route}`, { headers, signal: AbortSignal.timeout(10_000) });
  try {
    for (const headers of [
      {},
      { authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` },
      { authorization: 'Bearer not.a.token' },
    ]) {
      const res = await get('/id', headers);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate'), /^Basic realm=/);
      const body = await res.text();
      assert.deepEqual(JSON.parse(body), { code: 401, message: 'Unauthorized' });
      assert.ok(!body.includes(guarded.id), 'a refused request learns nothing');
    }
    assert.equal((await get('/id', { authorization: basic })).status, 200);

    const issued = await fetch(`${guarded.api}/token`, { method: 'POST', headers: { authorization: basic } });
    assert.equal(issued.status, 200);
    const { token } = await issued.json();
    assert.equal(token.split('.').length, 3);
    assert.ok((await get('/pins', { authorization: `Bearer ${token}` })).ok);
    // Go's token for the same user and password: claims {"iss":"alice"}, no others.
    const [, claims] = token.split('.');
    assert.deepEqual(JSON.parse(Buffer.from(claims, 'base64url').toString()), { iss: 'ops' });
    const renewed = await fetch(`${guarded.api}/token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(renewed.status, 200, 'a token gets a token, as in Go');
    const forged = `${token.slice(0, -4)}AAAA`;
    assert.equal((await get('/pins', { authorization: `Bearer ${forged}` })).status, 401);

    const names = await waitFor('metric names', async () => {
      const list = await (await get('/monitor/metrics', { authorization: basic })).json();
      return list.includes('ping') && list.includes('freespace') ? list : null;
    });
    assert.ok(names.includes('pinqueue'), names);

    const ctl = (...args) =>
      execFileSync(pinfoldBin, ['ctl', '--host', guarded.api, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    assert.match(ctl('--basic-auth', 'ops:s3cret', 'id'), new RegExp(`^${guarded.id} \\| guarded`));
    assert.throws(
      () => ctl('id'),
      (error) => /401 Unauthorized: Unauthorized \(check --basic-auth\)/.test(error.stderr),
    );
  } finally {
    await guarded.stop();
  }
});

test('a peer killed with SIGKILL and restarted loses no acknowledged pin and catches up', async () => {
  const victim = full[2];
  const acked = await victim.ipfs.addContent('acknowledged before the kill');
  const res = await victim.post(`/pins/${acked}?replication=1`);
  assert.equal(res.status, 200, res.body);
  await victim.stop('SIGKILL');

  const whileDown = await full[0].ipfs.addContent('pinned while the victim is down');
  assert.equal((await full[0].post(`/pins/${whileDown}`)).status, 200);

  await victim.start();
  assert.ok(await victim.allocation(acked), 'the acknowledged pin survives the kill');
  await waitFor('the victim to catch up', () => victim.allocation(whileDown));
  for (const peer of everyone()) {
    await waitFor(`${peer.name} to learn the acknowledged pin`, () => peer.allocation(acked));
  }
  await waitFor(`${whileDown} pinned on the victim's daemon`, () => victim.ipfs.isPinned(whileDown));
});

test('pins imported into a stopped peer reach the cluster when it runs again', async () => {
  const peer = full[2];
  const cid = await peer.ipfs.addContent('imported');
  await peer.stop();
  const line = JSON.stringify({ cid, name: 'imported', replication_factor_min: 1, replication_factor_max: 1 });
  const out = execFileSync(pinfoldBin, ['service', '--config', peer.dir, 'state', 'import'], {
    input: `${line}\n`,
    env: peer.env(),
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  assert.equal(out, '');
  await peer.start();
  for (const other of everyone()) {
    await waitFor(
      `${other.name} to take the imported pin`,
      async () => (await other.allocation(cid))?.name === 'imported',
    );
  }
  const exported = execFileSync(pinfoldBin, ['ctl', '--host', peer.api, '--enc', 'json', 'pin', 'ls', cid], {
    encoding: 'utf8',
  });
  assert.equal(JSON.parse(exported).name, 'imported');
});

test('a peer with the wrong secret cannot join or read', async () => {
  const intruder = new Peer('intruder', { ipfs: full[0].ipfs });
  await intruder.init(execFileSync(pinfoldBin, ['secret', 'new']).toString().trim());
  await intruder.start(['--bootstrap', full[0].address]);
  try {
    await waitFor(
      'the intruder to report the wrong secret',
      async () => intruder.tail(200).includes('wrong cluster secret'),
      15_000,
    );
    assert.deepEqual(await intruder.list('/allocations'), []);
    assert.equal((await intruder.list('/peers')).length, 1);
    assert.ok(!(await full[0].list('/peers')).some((p) => p.id === intruder.id));
  } finally {
    await intruder.stop();
  }
});

for (const [transport, proof] of [
  ['webrtc', true],
  ['ws', false],
]) {
  test(`a peer bootstrapped with only p1's ${transport} address syncs${proof ? ' after proving the secret' : ''}`, async () => {
    const cid = await full[0].ipfs.addContent(`seen over ${transport}`);
    assert.equal((await full[0].post(`/pins/${cid}?replication=1`)).status, 200);
    // A read-only peer that knows p1 by that address alone, as a browser would.
    const remote = new Peer(`${transport}-follower`, { listen: [transport], env: { CLUSTER_ROLE: 'relay' } });
    await remote.init(secret);
    remote.extraEnv.CLUSTER_CRDT_TRUSTEDPEERS = full.map((p) => p.id).join(',');
    const address = await full[0].addressOf(transport);
    await remote.start(['--bootstrap', address, '--no-trust']);
    try {
      const ours = (await full[0].list('/allocations')).map((p) => p.cid).sort();
      await waitFor(
        `the ${transport} peer to hold the whole pinset`,
        async () =>
          JSON.stringify((await remote.list('/allocations')).map((p) => p.cid).sort()) === JSON.stringify(ours),
      );
      assert.ok(ours.includes(cid));
      const log = remote.tail(400);
      assert.equal(log.includes('the WebRTC connection proved the cluster secret'), proof, log);
      assert.match(
        log,
        new RegExp(`connected peer=${full[0].id} address=${address.split('/p2p/')[0].replaceAll('/', '\\/')}`),
      );
    } catch (error) {
      console.error(remote.tail(60));
      throw error;
    } finally {
      await remote.stop();
    }
  });
}

test('a peer with the wrong secret over webrtc-direct is closed before any cluster data', async () => {
  const intruder = new Peer('webrtc-intruder', { listen: ['webrtc'], env: { CLUSTER_ROLE: 'relay' } });
  await intruder.init(execFileSync(pinfoldBin, ['secret', 'new']).toString().trim());
  await intruder.start(['--bootstrap', await full[0].addressOf('webrtc')]);
  try {
    await waitFor(
      'the intruder to report the wrong secret',
      async () =>
        intruder.tail(200).includes('could not connect: wrong cluster secret or not a pinfold/ipfs-cluster peer'),
      15_000,
    );
    assert.deepEqual(await intruder.list('/allocations'), []);
    assert.equal((await intruder.list('/peers')).length, 1);
    await waitFor(
      'p1 to log the closed connection',
      async () => full[0].tail(400).includes('did not prove the cluster secret'),
      10_000,
    );
  } finally {
    await intruder.stop();
  }
});

test("an untrusted writer's pins are ignored", async () => {
  const mallory = new Peer('mallory', { ipfs: full[0].ipfs });
  await mallory.init(secret);
  await mallory.start(['--bootstrap', full[0].address, '--no-trust']);
  try {
    await waitFor('mallory to join', async () => (await full[0].list('/peers')).some((p) => p.id === mallory.id));
    const cid = await full[0].ipfs.addContent('untrusted');
    const res = await mallory.post(`/pins/${cid}`);
    assert.equal(res.status, 200, res.body);
    // A trusted pin made after it does arrive, so the untrusted one had every chance to.
    const marker = await full[0].ipfs.addContent('trusted marker');
    assert.equal((await full[0].post(`/pins/${marker}`)).status, 200);
    for (const peer of everyone()) {
      await waitFor(`${peer.name} to see the trusted marker`, () => peer.allocation(marker));
      assert.equal(await peer.allocation(cid), null, `${peer.name} took mallory's pin`);
    }
  } finally {
    await mallory.stop();
  }
});

/** One sample's value from Prometheus text, by metric name (and label text). */
function sample(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('the Prometheus endpoint reports pins, daemon pins, peers and libp2p traffic', async () => {
  const scrape = async () => {
    const res = await fetch(full[0].metricsUrl, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /openmetrics-text/);
    return res.text();
  };
  const pins = (await full[0].list('/allocations')).length;
  assert.ok(pins > 0);
  // Other peers of these tests share p1's daemon: listing the statuses reads its pin list
  // afresh, as a recover sweep does.
  await full[0].list('/pins');
  const daemonPins = Object.keys(JSON.parse((await full[0].ipfs.rpc('pin/ls?type=recursive')).body).Keys).length;
  const text = await waitFor(
    'the pinset and daemon counts in the metrics',
    async () => {
      const text = await scrape();
      return sample(text, 'ipfscluster_pins') === pins &&
        sample(text, 'ipfscluster_pins_ipfs_pins') === daemonPins &&
        sample(text, 'pinfold_peers') >= 4
        ? text
        : null;
    },
    10_000,
  );
  assert.ok(sample(text, 'ipfscluster_pins_pin_add') >= 1, text);
  assert.equal(sample(text, 'ipfscluster_pins_pin_add_errors'), 0, text);
  assert.ok(sample(text, 'ipfscluster_informer_disk') > 0, text);
  assert.ok(sample(text, 'pinfold_crdt_heads') >= 1, text);
  assert.ok(sample(text, 'pinfold_psk_rejections_total') >= 1, 'the WebRTC intruder was counted');
  assert.ok(sample(text, 'process_resident_memory_bytes') > 1e6, text);
  assert.match(text, /^libp2p_swarm_connections_established_total\{.*\} [1-9]/m);
  assert.match(text, /^libp2p_gossipsub_messages_total [1-9]/m);
});

test('peers that stopped show in /health/alerts and in ctl health alerts', async () => {
  // The guarded peer, mallory and the WebRTC and WebSocket followers have stopped by now.
  const alerts = await waitFor('an alert for a stopped peer', async () => {
    const { status, body } = await full[0].get('/health/alerts');
    assert.equal(status, 200);
    const list = JSON.parse(body);
    return list.some((a) => a.name === 'ping') ? list : null;
  });
  for (const alert of alerts) {
    assert.notEqual(alert.peer, full[0].id, 'p1 never stopped, so it cannot be in its own alerts');
    assert.match(alert.triggered_at, /^\d{4}-\d\d-\d\dT/);
  }
  const text = execFileSync(pinfoldBin, ['ctl', '--host', full[0].api, 'health', 'alerts'], { encoding: 'utf8' });
  assert.match(text, /\| ping \| expired, alert at /);
});

test('the IPFS daemon stopped and restarted under a pinning peer: pins end pinned', async () => {
  const peer = full[1];
  const cid = await full[0].ipfs.addContent('daemon restart');
  peer.ipfs.stop();
  const res = await full[0].post(`/pins/${cid}`);
  assert.equal(res.status, 200, res.body);
  await waitFor(`${peer.name} to report the daemon down`, async () => {
    const info = JSON.parse((await peer.get(`/pins/${cid}`)).body);
    const status = info.peer_map[peer.id]?.status;
    return ['pin_error', 'pinning', 'pin_queued', 'cluster_error'].includes(status) && status;
  });
  const id = JSON.parse((await peer.get('/id')).body);
  assert.match(id.ipfs.error, /unreachable/);
  await peer.ipfs.start();
  await waitFor(`${cid} pinned on the restarted daemon`, () => peer.ipfs.isPinned(cid), 60_000);
  await waitFor(`${peer.name} to report pinned`, async () => {
    const info = JSON.parse((await peer.get(`/pins/${cid}`)).body);
    return info.peer_map[peer.id]?.status === 'pinned';
  });
});
