// Replication when peers are lost: five full peers, each with its own Kubo, with
// re-pinning left off (the default), as Go ipfs-cluster's tests run them. Each test is
// named after the Go test it mirrors (ipfscluster_test.go, peer_manager_test.go); a test
// that kills peers starts them again before the next one.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Ipfs, Peer, pinfoldBin, sleep, stopAll, waitFor } from './harness.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
/** The five peers; the last pings every 5 s (so its ping outlives it by up to 10 s). */
const peers = [];
const SLOW_PINGER = 4;

before(async () => {
  for (let i = 0; i < 5; i++) {
    const name = `repl-${i}`;
    const ipfs = await new Ipfs(name).start();
    const env = {
      CLUSTER_MONITORPINGINTERVAL: i === SLOW_PINGER ? '5s' : '1s',
      // The allocator's metrics, refreshed every 2 s, so that a peer that starts is a
      // candidate soon after.
      CLUSTER_DISK_METRICTTL: '4s',
      CLUSTER_TAGS_METRICTTL: '4s',
    };
    peers.push(await new Peer(name, { ipfs, env }).init(secret));
  }
});

after(async () => {
  await stopAll();
});

const running = (peer) => peer.child && peer.child.exitCode === null && peer.child.signalCode === null;
const byId = (id) => peers.find((p) => p.id === id);
const sorted = (ids) => [...ids].sort();

/**
 * Waits until every running peer holds valid `ping` and `freespace` metrics (what the
 * peerset and the allocator read) of each peer of `members`, and of no other.
 */
async function metricsAre(members) {
  const want = JSON.stringify(sorted(members.map((p) => p.id)));
  for (const peer of peers.filter(running)) {
    for (const metric of ['ping', 'freespace']) {
      await waitFor(
        `${peer.name} to hold valid ${metric} metrics of ${members.map((p) => p.name)} only`,
        async () => {
          const metrics = JSON.parse((await peer.get(`/monitor/metrics/${metric}`)).body);
          return JSON.stringify(sorted(metrics.filter((m) => m.valid).map((m) => m.peer))) === want;
        },
        40_000,
      );
    }
  }
}

/** Kills `gone` with SIGKILL and waits for every other peer to see its metrics expire. */
async function kill(...gone) {
  for (const peer of gone) await peer.stop('SIGKILL');
  await metricsAre(peers.filter(running));
}

/** Pins `cid` at `peer` with the query `options`, and returns the pin once `peer` holds it. */
async function pin(peer, cid, options = '') {
  const res = await peer.post(`/pins/${cid}?${options}`);
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

/** Waits until `peer` holds `cid` allocated as `check` wants, and returns the allocations. */
async function allocationsOf(peer, cid, what, check) {
  return waitFor(`${cid} at ${peer.name} ${what}`, async () => {
    const allocation = await peer.allocation(cid);
    return allocation && check(allocation.allocations) ? allocation.allocations : null;
  });
}

async function pinnedOnKubo(peer, cid) {
  await waitFor(`${cid} pinned on ${peer.name}'s Kubo`, () => peer.ipfs.isPinned(cid), 60_000);
}

afterEach(async () => {
  const down = peers.filter((p) => !running(p));
  if (down.length === 0) return;
  const up = peers.find(running);
  for (const peer of down) await peer.start(['--bootstrap', up.address]);
  await metricsAre(peers);
});

// Go: TestClustersPeerJoinAllAtOnce.
test('PeerJoinAllAtOnce: four peers join the first at once; all see five peers and the pin', async () => {
  await peers[0].start();
  await Promise.all(peers.slice(1).map((p) => p.start(['--bootstrap', peers[0].address])));
  const cid = await peers[0].ipfs.addContent('join all at once');
  await pin(peers[0], cid);
  const all = sorted(peers.map((p) => p.id));
  for (const peer of peers) {
    await waitFor(`${peer.name} to list the five peers`, async () => {
      const ids = (await peer.list('/peers')).filter((id) => !id.error).map((id) => id.id);
      return JSON.stringify(sorted(ids)) === JSON.stringify(all);
    });
    await waitFor(`${peer.name} to hold the pin`, () => peer.allocation(cid));
    await pinnedOnKubo(peer, cid);
  }
  await metricsAre(peers);
});

// Go: TestClustersReplicationRealloc.
test('ReplicationRealloc: a re-pin keeps live allocations and replaces a lost one', async () => {
  const writer = peers[2];
  const cid = await writer.ipfs.addContent('replication realloc');
  await pin(writer, cid, 'replication-min=4&replication-max=4');
  const first = await allocationsOf(writer, cid, 'on 4 peers', (a) => a.length === 4);
  for (const id of first) await pinnedOnKubo(byId(id), cid);

  await pin(writer, cid, 'replication-min=4&replication-max=4');
  await sleep(1000);
  assert.deepEqual(sorted((await writer.allocation(cid)).allocations), sorted(first), 'nothing to change');

  const victim = byId(first.find((id) => id !== writer.id && byId(id) !== peers[SLOW_PINGER]));
  await kill(victim);
  await pin(writer, cid, 'replication-min=4&replication-max=4');
  const live = peers.filter(running);
  const second = await allocationsOf(writer, cid, 'on the 4 live peers', (a) => !a.includes(victim.id));
  assert.deepEqual(sorted(second), sorted(live.map((p) => p.id)));
  for (const peer of live) await pinnedOnKubo(peer, cid);
});

// Go: TestClustersReplicationMinMaxRealloc.
test('MinMaxRealloc: with two of four allocations lost, a re-pin allocates the three live peers it can', async () => {
  const cid = await peers[0].ipfs.addContent('min max realloc');
  await pin(peers[0], cid, 'replication-min=3&replication-max=4&name=a');
  const first = await allocationsOf(peers[0], cid, 'on 4 peers', (a) => a.length === 4);
  const candidates = first.map(byId).filter((p) => p !== peers[SLOW_PINGER]);
  const safe = candidates[0];
  const lost = candidates.slice(1, 3);
  await kill(...lost);

  // Changing the name makes it a new pin request, as in Go's test.
  await pin(safe, cid, 'replication-min=3&replication-max=4&name=b');
  const second = await allocationsOf(safe, cid, 'renamed and re-allocated', (a) => !a.includes(lost[0].id));
  assert.notDeepEqual(sorted(second), sorted(first), 'allocations should have changed');
  assert.equal(second.length, Math.min(peers.length - 2, 4));
  assert.ok(!second.includes(lost[1].id), JSON.stringify(second));
  assert.equal((await safe.allocation(cid)).name, 'b');
  for (const id of second) await pinnedOnKubo(byId(id), cid);
});

// Go: TestClustersDisabledRepinning.
test('DisabledRepinning: with repinning off, a lost allocation stays and no other Kubo pins', async () => {
  const writer = peers[1];
  const cid = await writer.ipfs.addContent('disabled repinning');
  await pin(writer, cid, 'replication-min=4&replication-max=4');
  const allocated = await allocationsOf(writer, cid, 'on 4 peers', (a) => a.length === 4);
  for (const id of allocated) await pinnedOnKubo(byId(id), cid);
  const victim = byId(allocated.find((id) => id !== writer.id && byId(id) !== peers[SLOW_PINGER]));
  const spare = peers.find((p) => !allocated.includes(p.id));

  await kill(victim);
  await waitFor('the ping alert for the lost peer', async () =>
    JSON.parse((await writer.get('/health/alerts')).body).some((a) => a.name === 'ping' && a.peer === victim.id),
  );
  // Several ping intervals in which a re-pinning peer would have moved the pin.
  await sleep(5000);
  for (const peer of peers.filter(running)) {
    assert.deepEqual(sorted((await peer.allocation(cid)).allocations), sorted(allocated), peer.name);
  }
  const pinned = [];
  for (const peer of peers.filter(running)) if (await peer.ipfs.isPinned(cid)) pinned.push(peer.name);
  assert.equal(pinned.length, peers.length - 2, `pinned on ${pinned}`);
  assert.ok(!pinned.includes(spare.name), `${spare.name} is not allocated and must not pin`);
});

// Go: leave_on_shutdown (a no-op under Go's CRDT consensus, which refuses peer removals).
test('Leave: a peer stopped with --leave has another re-allocate its pins, though repinning is off', async () => {
  const writer = peers[1];
  const leaver = peers.find((p) => p !== writer && p !== peers[SLOW_PINGER]);
  await leaver.stop();
  await leaver.start(['--leave', '--bootstrap', writer.address]);
  await metricsAre(peers);
  const cids = [];
  for (let n = 0; n < 3; n++) {
    const cid = await writer.ipfs.addContent(`leave ${n}`);
    await pin(writer, cid, `replication-min=2&replication-max=2&user-allocations=${leaver.id}`);
    cids.push(cid);
  }
  // Whichever peer takes the removal must know the pins first.
  for (const peer of peers.filter(running)) {
    for (const cid of cids) await allocationsOf(peer, cid, `on ${leaver.name}`, (a) => a.includes(leaver.id));
  }
  await leaver.stop();
  assert.match(leaver.tail(20), /left the cluster: that peer re-allocated this peer's pins/);
  for (const cid of cids) {
    const moved = await allocationsOf(writer, cid, `away from ${leaver.name}`, (a) => !a.includes(leaver.id));
    assert.equal(moved.length, 2, `still two allocations: ${moved}`);
    for (const id of moved) await pinnedOnKubo(byId(id), cid);
  }
});

// Go: TestClustersStatusAllWithErrors.
test('StatusAllWithErrors: a peer down while its ping is valid is a cluster_error described from its ping; once expired it is left out', async () => {
  const writer = peers[0];
  const victim = peers[SLOW_PINGER];
  const victimIpfs = JSON.parse((await victim.get('/id')).body).ipfs.id;
  const cid = await writer.ipfs.addContent('status all with errors');
  await pin(writer, cid, 'name=test');
  for (const peer of peers) await pinnedOnKubo(peer, cid);

  await victim.stop('SIGKILL');
  const start = Date.now();
  const others = peers.filter(running);
  for (const peer of others) {
    const statuses = (await peer.list('/pins')).filter((s) => s.cid === cid);
    assert.equal(statuses.length, 1, `${peer.name}: one status for the CID`);
    assert.equal(statuses[0].name, 'test');
    const map = statuses[0].peer_map;
    assert.equal(Object.keys(map).length, peers.length, `${peer.name}: ${JSON.stringify(map)}`);
    const down = map[victim.id];
    assert.equal(down.status, 'cluster_error', JSON.stringify(down));
    assert.equal(down.peername, victim.name);
    assert.equal(down.ipfs_peer_id, victimIpfs);
    assert.ok(down.error, 'says why');
    for (const live of others)
      assert.equal(map[live.id].status, 'pinned', `${live.name}: ${JSON.stringify(map[live.id])}`);
  }
  assert.ok(Date.now() - start < 10_000, 'checked while the ping was valid');

  await metricsAre(others);
  for (const peer of others) {
    const [status] = (await peer.list('/pins')).filter((s) => s.cid === cid);
    assert.deepEqual(sorted(Object.keys(status.peer_map)), sorted(others.map((p) => p.id)), peer.name);
  }
});

// Go: TestClustersGraphUnhealthy.
test('GraphUnhealthy: with two peers down, the graph holds the three live peers, each linked to the others', async () => {
  const asked = peers[3];
  const [down1, down2] = [peers[0], peers[1]];
  await kill(down1, down2);
  const live = peers.filter(running);
  const graph = JSON.parse((await asked.get('/health/graph')).body);
  assert.deepEqual(sorted(Object.keys(graph.cluster_links)), sorted(live.map((p) => p.id)));
  assert.equal(Object.keys(graph.cluster_trust_links).length, live.length);
  for (const peer of live) {
    const links = sorted(graph.cluster_links[peer.id]);
    assert.deepEqual(links, sorted(live.filter((p) => p !== peer).map((p) => p.id)), peer.name);
    assert.equal(graph.id_to_peername[peer.id], peer.name);
  }
  // Each live peer's Kubo is a node of the graph, linked to the others' Kubos.
  const kubos = new Set(Object.values(graph.cluster_to_ipfs));
  assert.equal(kubos.size, live.length);
  for (const kubo of kubos)
    assert.ok(graph.ipfs_links[kubo].length >= live.length - 1, JSON.stringify(graph.ipfs_links));
});

// Go: TestAddPeerDown.
test('AddPeerDown: a file added with a peer down is pinned on every live peer', async () => {
  await kill(peers[0]);
  const adder = peers[1];
  const form = new FormData();
  form.append('file', new Blob([`add peer down ${Date.now()}`]), 'down.txt');
  const res = await fetch(`${adder.api}/add?name=testlocal&stream-channels=false`, {
    method: 'POST',
    body: form,
    signal: AbortSignal.timeout(60_000),
  });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const root = JSON.parse(body).at(-1).cid;
  for (const peer of peers.filter(running)) {
    await waitFor(
      `${peer.name} to report ${root} pinned`,
      async () => {
        const local = (await peer.list(`/pins?cids=${root}&local=true`))[0];
        return local?.peer_map[peer.id]?.status === 'pinned';
      },
      60_000,
    );
    await pinnedOnKubo(peer, root);
  }
});

/** POSTs `bytes` as one file to `peer`'s `/add` with `query`; the status and the parsed answer. */
async function addFile(peer, bytes, query) {
  const form = new FormData();
  form.append('file', new Blob([bytes]), 'big.bin');
  const res = await fetch(`${peer.api}/add?stream-channels=false&${query}`, {
    method: 'POST',
    body: form,
    signal: AbortSignal.timeout(120_000),
  });
  return { status: res.status, body: JSON.parse(await res.text()) };
}

// Go: TestAddOnePeerFails.
test('AddOnePeerFails: a destination killed during an add is left out; the others get the blocks and pin', async () => {
  const adder = peers[0];
  const victim = peers[SLOW_PINGER];
  const adding = addFile(adder, randomBytes(8 << 20), 'name=testlocal');
  await sleep(100);
  await victim.stop('SIGKILL');
  const { status, body } = await adding;
  assert.equal(status, 200, JSON.stringify(body));
  const root = body.at(-1).cid;
  for (const peer of peers.filter(running)) await pinnedOnKubo(peer, root);
});

// Go: TestAddAllPeersFail.
test('AddAllPeersFail: when every destination dies during an add, it fails with Go’s error and pins nothing', async () => {
  const [adder, ...others] = peers;
  const adding = addFile(
    adder,
    randomBytes(8 << 20),
    `name=testlocal&replication-min=4&replication-max=4&user-allocations=${others.map((p) => p.id).join(',')}`,
  );
  await sleep(100);
  await Promise.all(others.map((p) => p.stop('SIGKILL')));
  const { status, body } = await adding;
  assert.equal(status, 500, JSON.stringify(body));
  assert.match(body.message, /failed to put block on all destinations/);
  const pins = await adder.list('/allocations');
  assert.ok(!pins.some((p) => p.name === 'testlocal' && p.replication_factor_min === 4), JSON.stringify(pins));
});
