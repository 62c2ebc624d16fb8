// A mixed CRDT cluster: two Go ipfs-cluster v1.1.6 peers and two pinfold peers, one
// secret, the four of them trusted, each next to its own Kubo. Go's own tools
// (`ipfs-cluster-ctl` against a Go peer) must list the pinfold peers' real answers, which
// they get over go-libp2p-gorpc, and `pinfold ctl` the Go peers'.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pinfoldBin, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { clusterCtl, jsonValues, startMixedCluster, stopGoPeers } from './go.mjs';

const secret = 'a3b1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
let go1, go2, pf1, pf2;
const everyone = () => [go1, go2, pf1, pf2];
const pinfoldCtl = (peer, ...args) =>
  execFileSync(pinfoldBin, ['ctl', '--host', peer.api, ...args], { encoding: 'utf8', timeout: 60_000 });

before(async () => {
  ({ go1, go2, pf1, pf2 } = await startMixedCluster(secret));
});

after(async () => {
  await stopGoPeers();
  await stopAll();
});

test("ipfs-cluster-ctl peers ls on a Go peer lists the pinfold peers with names and addresses, and pinfold's the Go peers", async () => {
  const listed = jsonValues(await clusterCtl(go1.api, ['peers', 'ls'], { encoding: 'json' }));
  for (const peer of everyone()) {
    const entry = listed.find((id) => id.id === peer.id);
    assert.ok(entry, `${peer.name} listed by go1: ${JSON.stringify(listed)}`);
    assert.equal(entry.error, '', `${peer.name}: ${entry.error}`);
    assert.equal(entry.peername, peer.name);
    assert.equal(entry.rpc_protocol_version, '/ipfscluster/1.0/rpc');
    assert.ok(entry.addresses.length > 0, `${peer.name} has addresses`);
    assert.ok(entry.ipfs.id, `${peer.name} names its Kubo`);
    assert.equal(entry.cluster_peers.length, 4, `${peer.name} sees the four`);
  }
  assert.equal(listed.find((id) => id.id === pf1.id).version, '0.1.0');
  assert.equal(listed.find((id) => id.id === go2.id).version, '1.1.6');
  // What identify says, as pf1 logged it for go1: Go announces an empty protocolVersion,
  // as pinfold does (core/src/net/pubsub.rs).
  const identified = fs
    .readFileSync(pf1.log, 'utf8')
    .split('\n')
    .find((line) => line.includes('identified') && line.includes(go1.id));
  assert.ok(identified, 'pf1 logged identify from go1');
  assert.match(identified, /protocol_version=""/);
  assert.match(identified, /agent="?github.com\/ipfs-cluster\/ipfs-cluster/);
  assert.match(go2.tail(400), new RegExp(`Bootstrapping to ${pf1.address}`));
  assert.doesNotMatch(go2.tail(400), /bootstrap to .* failed/, 'go2 joined through pf1 (Cluster.PeerAdd)');
  const text = pinfoldCtl(pf2, 'peers', 'ls');
  for (const peer of everyone()) assert.match(text, new RegExp(`${peer.id} \\| ${peer.name}`));
  const fromPinfold = await pf2.list('/peers');
  const goEntry = fromPinfold.find((id) => id.id === go1.id);
  assert.equal(goEntry.version, '1.1.6', JSON.stringify(goEntry));
  assert.ok(goEntry.ipfs.id && goEntry.addresses.length > 0, JSON.stringify(goEntry));
});

test("each side reads the other's freespace and pinqueue metrics", async () => {
  for (const name of ['freespace', 'pinqueue']) {
    await waitFor(`go2 to hold the pinfold peers' ${name}`, async () => {
      const fromGo = jsonValues(await clusterCtl(go2.api, ['health', 'metrics', name], { encoding: 'json' })).flat();
      return [pf1, pf2].every((peer) => fromGo.some((m) => m.peer === peer.id));
    });
    await waitFor(`pf1 to hold the Go peers' ${name}`, async () => {
      const fromPinfold = JSON.parse((await pf1.get(`/monitor/metrics/${name}`)).body);
      return [go1, go2].every((peer) => fromPinfold.some((m) => m.peer === peer.id));
    });
  }
});

/** Waits until each peer named holds `cid` on its own Kubo (`pin/ls`). */
async function pinnedOn(peers, cid) {
  for (const peer of peers) {
    await waitFor(`${peer.name}'s Kubo to pin ${cid}`, () => peer.ipfs.isPinned(cid), 90_000);
  }
}

test('a pin through ipfs-cluster-ctl is allocated from every peer, Go and pinfold, and pinned on each allocated Kubo', async () => {
  for (const name of ['freespace', 'tag:group']) {
    await waitFor(`go1 to hold every peer's ${name}`, async () => {
      const metrics = jsonValues(await clusterCtl(go1.api, ['health', 'metrics', name], { encoding: 'json' })).flat();
      return everyone().every((peer) => metrics.some((m) => m.peer === peer.id));
    });
  }
  const cid = await go1.ipfs.addContent('from go, on all four');
  const pin = JSON.parse(
    await clusterCtl(go1.api, ['pin', 'add', '--no-status', '--replication', '4', '--name', 'four', cid], {
      encoding: 'json',
    }),
  );
  assert.deepEqual(
    [...pin.allocations].sort(),
    everyone()
      .map((p) => p.id)
      .sort(),
  );
  await pinnedOn(everyone(), cid);

  const two = await go2.ipfs.addContent('from go, on two');
  await clusterCtl(go2.api, ['pin', 'add', '--no-status', '--replication', '2', two]);
  const allocations = (await waitFor('the pin on pf1', () => pf1.allocation(two))).allocations;
  assert.equal(allocations.length, 2);
  await pinnedOn(
    everyone().filter((p) => allocations.includes(p.id)),
    two,
  );
  // Go's status of it lists every peer's real view: the allocated pinned, the others remote.
  const status = JSON.parse(await clusterCtl(go1.api, ['status', two], { encoding: 'json' }));
  for (const peer of everyone()) {
    const view = status.peer_map[peer.id];
    assert.ok(view, `${peer.name} in go1's status: ${JSON.stringify(status)}`);
    assert.equal(
      view.status,
      allocations.includes(peer.id) ? 'pinned' : 'remote',
      `${peer.name}: ${JSON.stringify(view)}`,
    );
  }
});

test("a pin through pinfold's REST API with Go peers allocated is pinned on their Kubos", async () => {
  const cid = await pf1.ipfs.addContent('from pinfold, on the Go peers');
  const { status, body } = await pf1.post(`/pins/${cid}?replication=2&name=to-go&user-allocations=${go1.id},${go2.id}`);
  assert.equal(status, 200, body);
  assert.deepEqual([...JSON.parse(body).allocations].sort(), [go1.id, go2.id].sort());
  await pinnedOn([go1, go2], cid);
  const views = await waitFor('pinfold to see both Go peers pinned', async () => {
    const global = JSON.parse((await pf2.get(`/pins/${cid}`)).body);
    return [go1, go2].every((p) => global.peer_map[p.id]?.status === 'pinned') && global;
  });
  assert.equal(views.peer_map[pf1.id].status, 'remote');
  const text = pinfoldCtl(pf2, 'status', cid);
  assert.match(text, /go1\s+: PINNED/);
  assert.match(text, /go2\s+: PINNED/);
});

test('status, recover, health graph and ipfs gc on a Go peer carry the pinfold peers, and on pinfold the Go peers', async () => {
  const cid = await pf2.ipfs.addContent('everywhere');
  assert.equal((await pf2.post(`/pins/${cid}`)).status, 200);
  await pinnedOn(everyone(), cid);

  const all = jsonValues(await clusterCtl(go2.api, ['status'], { encoding: 'json' }));
  const listed = all.find((g) => g.cid === cid);
  assert.ok(listed, 'the pin is in go2 status');
  for (const peer of everyone()) assert.equal(listed.peer_map[peer.id]?.status, 'pinned', `${peer.name} pinned`);

  const recovered = JSON.parse(await clusterCtl(go1.api, ['recover', cid], { encoding: 'json' }));
  for (const peer of everyone()) assert.equal(recovered.peer_map[peer.id]?.status, 'pinned', `${peer.name} recovered`);
  const recoveredByPinfold = JSON.parse((await pf1.post(`/pins/${cid}/recover`)).body);
  for (const peer of everyone()) assert.equal(recoveredByPinfold.peer_map[peer.id]?.status, 'pinned');

  const graph = JSON.parse((await go1.get('/health/graph')).body);
  for (const peer of everyone()) {
    assert.ok(graph.cluster_to_ipfs[peer.id], `go1's graph names ${peer.name}'s Kubo: ${JSON.stringify(graph)}`);
    assert.ok(graph.cluster_links[peer.id]?.length >= 3, `${peer.name}'s cluster links in go1's graph`);
  }
  const pinfoldGraph = JSON.parse((await pf1.get('/health/graph')).body);
  for (const peer of everyone())
    assert.ok(pinfoldGraph.cluster_to_ipfs[peer.id], `pf1's graph names ${peer.name}'s Kubo`);

  const gc = JSON.parse(await clusterCtl(go2.api, ['ipfs', 'gc'], { encoding: 'json' }));
  for (const peer of everyone()) {
    const entry = gc.peer_map[peer.id];
    assert.ok(entry, `${peer.name} in go2's gc: ${JSON.stringify(gc)}`);
    assert.ok(!entry.error, `${peer.name}: ${entry.error}`);
  }
  const pinfoldGc = JSON.parse((await pf2.post('/ipfs/gc')).body);
  for (const peer of everyone()) assert.ok(pinfoldGc.peer_map[peer.id] && !pinfoldGc.peer_map[peer.id].error);
});

test('ipfs-cluster-ctl add on a Go peer streams the blocks to the pinfold peers it allocates (BlockStream)', async () => {
  const file = path.join(runDir, 'go-added.bin');
  fs.writeFileSync(file, Buffer.alloc(600_000, `blocks for pinfold ${Date.now()}`));
  const outputs = jsonValues(
    await clusterCtl(go1.api, ['add', '--cid-version', '1', '--raw-leaves', '--rmin', '4', '--rmax', '4', file], {
      encoding: 'json',
    }),
  );
  const root = outputs.at(-1).cid;
  await pinnedOn(everyone(), root);
  assert.ok(fs.readFileSync(pf1.log, 'utf8').includes('IPFSConnector.BlockStream'), 'go1 streamed blocks to pf1');
});

test('pinfold /add streams the blocks to the Go peers it allocates (BlockStream), before anything pins', async () => {
  const form = new FormData();
  form.append('file', new Blob([Buffer.alloc(600_000, `blocks for Go ${Date.now()}`)]), 'pinfold-added.bin');
  // no-pin: nobody fetches the DAG, so each Kubo holds its blocks only if they were put there.
  const res = await fetch(
    `${pf1.api}/add?stream-channels=false&no-pin=true&cid-version=1&raw-leaves=true&replication-min=4&replication-max=4`,
    { method: 'POST', body: form, signal: AbortSignal.timeout(60_000) },
  );
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const root = JSON.parse(body).at(-1).cid;
  for (const peer of everyone()) {
    const { status, body: stat } = await peer.ipfs.rpc(`block/stat?arg=${root}&offline=true`);
    assert.equal(status, 200, `${peer.name}'s Kubo holds ${root}: ${stat}`);
  }
  assert.equal(await pf1.allocation(root), null, 'no-pin pins nothing');
});

/** The pins of a sharded add at `peer`, by type, for the root `root`. */
async function shardedPins(peer, root) {
  const pins = await peer.list('/allocations?filter=meta-pin,clusterdag-pin,shard-pin');
  const meta = pins.find((p) => p.cid === root);
  const clusterDag = pins.find((p) => p.type === 'clusterdag-pin' && p.reference === root);
  const shards = pins.filter((p) => p.type === 'shard-pin' && p.name.startsWith(`${meta?.name}-shard-`));
  return { meta, clusterDag, shards };
}

/** Waits until `peer`'s cluster-wide status of `root` says sharded on every peer. */
function everyoneCallsSharded(peer, root) {
  return waitFor(`every peer to call ${root} sharded, as ${peer.name} asks`, async () => {
    const status = JSON.parse((await peer.get(`/pins/${root}`)).body);
    if (everyone().every((p) => status.peer_map[p.id]?.status === 'sharded')) return true;
    throw new Error(JSON.stringify(status));
  });
}

test("a Go peer's sharded add: pinfold peers pin its shards where allocated, show its root sharded, and unpin it whole", async () => {
  const form = new FormData();
  form.append('file', new Blob([randomBytes(1_500_000)]), 'sharded.bin');
  // Two 256 KiB leaves to a shard: three shards (the root with the last two leaves), each on
  // two peers.
  const res = await fetch(
    `${go1.api}/add?shard=true&shard-size=600000&replication-min=2&replication-max=2&name=go-sharded`,
    { method: 'POST', body: form, signal: AbortSignal.timeout(120_000) },
  );
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const outputs = body
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const root = outputs.find((o) => o.name === 'sharded.bin').cid;
  const { meta, clusterDag, shards } = await waitFor('the sharded pins at pf1', async () => {
    const found = await shardedPins(pf1, root);
    if (found.meta && found.clusterDag && found.shards.length === 3) return found;
    throw new Error(`pf1 holds ${JSON.stringify(found)} of the add that gave ${body}`);
  });
  assert.equal(meta.type, 'meta-pin');
  assert.equal(meta.reference, clusterDag.cid);
  assert.deepEqual(meta.allocations, []);
  assert.equal(clusterDag.max_depth, 0);
  for (const shard of shards) {
    assert.equal(shard.max_depth, 1);
    assert.equal(shard.allocations.length, 2, JSON.stringify(shard));
  }
  await everyoneCallsSharded(pf1, root);
  for (const shard of shards) {
    const holders = everyone().filter((p) => shard.allocations.includes(p.id));
    await pinnedOn(holders, shard.cid);
  }
  const listed = pinfoldCtl(pf2, 'pin', 'ls', '--filter', 'shard-pin');
  assert.match(listed, /go-sharded-shard-0 \| SHARD-PIN \| Repl\. Factor: 2--2 .*\| Recursive-1$/m, listed);
  assert.doesNotMatch(listed, /META-PIN/);

  const refused = await pf1.post(`/pins/${shards[0].cid}`, 'DELETE');
  assert.equal(refused.status, 400, refused.body);
  assert.match(refused.body, /cannot unpin a shard directly/);
  const unpinned = await pf1.post(`/pins/${root}`, 'DELETE');
  assert.equal(unpinned.status, 200, unpinned.body);
  await waitFor('go2 to hold none of the sharded pins', async () => {
    const left = await go2.list('/allocations?filter=all');
    return !left.some((p) => p.cid === root || p.cid === clusterDag.cid || shards.some((s) => s.cid === p.cid));
  });
});

test('pinfold ctl add --shard spreads the DAG in shards Go peers keep, read back whole, and a Go peer unpins it whole', async () => {
  const file = path.join(runDir, 'pinfold-sharded.bin');
  const content = randomBytes(1_500_000);
  fs.writeFileSync(file, content);
  const added = pinfoldCtl(
    pf1,
    'add',
    '--shard',
    '--shard-size',
    '600000',
    '--replication',
    '2',
    '--name',
    'pf-sharded',
    file,
  );
  const lines = added.trim().split('\n');
  assert.equal(lines.filter((l) => /^added \S+ shard-\d+$/.test(l)).length, 3, added);
  assert.match(lines.at(-2), /^added \S+ pf-sharded-clusterDAG$/, added);
  const root = lines.at(-1).split(' ')[1];
  const { meta, clusterDag, shards } = await waitFor('the sharded pins at go2', async () => {
    const found = await shardedPins(go2, root);
    if (found.meta && found.clusterDag && found.shards.length === 3) return found;
    throw new Error(`go2 holds ${JSON.stringify(found)} of the add that printed ${added}`);
  });
  assert.equal(meta.reference, clusterDag.cid);
  assert.equal(clusterDag.reference, root);
  for (const shard of shards) {
    assert.equal(shard.allocations.length, 2, JSON.stringify(shard));
    await pinnedOn(
      everyone().filter((p) => shard.allocations.includes(p.id)),
      shard.cid,
    );
  }
  // Go's cluster-wide status calls every peer remote for a meta pin (it has no
  // allocations); its own view says sharded, as pinfold's cluster-wide status does.
  const byGo = jsonValues(await clusterCtl(go2.api, ['status', '--local', root], { encoding: 'json' }))[0];
  assert.equal(byGo.peer_map[go2.id]?.status, 'sharded', JSON.stringify(byGo));
  await everyoneCallsSharded(pf2, root);
  const goListed = await clusterCtl(go2.api, ['pin', 'ls', '--filter', 'shard-pin']);
  assert.match(goListed, /pf-sharded-shard-2 \| SHARD-PIN \| Repl\. Factor: 2--2/, goListed);
  const cat = await fetch(`${go1.ipfs.api}/cat?arg=${root}`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
  assert.equal(cat.status, 200);
  assert.ok(Buffer.from(await cat.arrayBuffer()).equals(content), "the content reads back whole through go1's Kubo");

  await clusterCtl(go2.api, ['pin', 'rm', root]);
  await waitFor('pf2 to hold none of the sharded pins', async () => {
    const left = await pf2.list('/allocations?filter=all');
    return !left.some((p) => p.cid === root || p.cid === clusterDag.cid || shards.some((s) => s.cid === p.cid));
  });
});

test('pins written together at a pinfold peer go out in shared deltas, which the Go peers read whole', async (t) => {
  const cids = await Promise.all(Array.from({ length: 64 }, (_, i) => pf1.ipfs.addContent(`grouped ${i}`)));
  const height = async () => JSON.parse((await pf1.get('/state/crdt')).body).height;
  const before = await height();
  const answers = await Promise.all(cids.map((cid) => pf1.post(`/pins/${cid}?replication-min=1&replication-max=1`)));
  for (const answer of answers) assert.equal(answer.status, 200, answer.body);
  const deltas = (await height()) - before;
  t.diagnostic(`${cids.length} pins written together took ${deltas} deltas`);
  assert.ok(deltas < cids.length, `${cids.length} pins written together took ${deltas} deltas`);
  for (const go of [go1, go2]) {
    await waitFor(
      `${go.name} to hold the ${cids.length} pins`,
      async () => {
        const held = new Set((await go.list('/allocations')).map((pin) => pin.cid));
        const missing = cids.filter((cid) => !held.has(cid));
        if (missing.length === 0) return true;
        throw new Error(`${missing.length} missing`);
      },
      60_000,
    );
  }
});

test('health bandwidth: ipfs-cluster-ctl reads a pinfold peer as a Go one, each counting its protocols', async () => {
  for (const peer of [go1, pf1]) {
    const [byProtocol] = jsonValues(await clusterCtl(peer.api, ['health', 'bandwidth'], { encoding: 'json' }));
    const gossip = Object.entries(byProtocol).find(([name]) => name.startsWith('/meshsub/'))?.[1];
    assert.ok(gossip, `${peer.name} counts gossipsub: ${Object.keys(byProtocol)}`);
    assert.ok(gossip.total_in > 0 && gossip.total_out > 0, `${peer.name}: ${JSON.stringify(gossip)}`);
    assert.ok(byProtocol['/ipfscluster/1.0/rpc'], `${peer.name} counts the RPC: ${Object.keys(byProtocol)}`);
    const text = await clusterCtl(peer.api, ['health', 'bandwidth']);
    assert.match(text, /\/ipfs\/id\/1\.0\.0: In: +[0-9.]+ [kMG]?B\. Out: +[0-9.]+ [kMG]?B\. RateIn: [0-9.]+B\/s/);
  }
  const ours = pinfoldCtl(pf2, 'health', 'bandwidth');
  assert.match(ours, /\/meshsub\/1\.\d\.0: In: +[0-9.]+ [kMG]?B\. Out: +[0-9.]+ [kMG]?B\. RateIn: [0-9.]+B\/s/);
});
