// Go ipfs-cluster v1.1.6's own tools and files against pinfold: `ipfs-cluster-ctl --host`
// pointed at a pinfold peer's REST API runs every verb it has, each output checked; a
// pinfold peer runs from the `service.json` and `identity.json` that
// `ipfs-cluster-service init` writes; bearer tokens from either work at both.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, runDir, sleep, stopAll, waitFor } from '../cluster/harness.mjs';
import { freePort } from '../support/net.mjs';
import { GoPeer, clusterCtl, goBin, jsonValues, stopGoPeers } from './go.mjs';

const secret = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
let ipfs, peer;
const ctl = (args, options) => clusterCtl(peer.api, args, options);
const json = async (args) => jsonValues(await ctl(args, { encoding: 'json' }));

before(async () => {
  ipfs = await new Ipfs('tools').start();
  peer = new Peer('tools-pinfold', { ipfs });
  await peer.init(secret);
  await peer.start();
  await waitFor('its own metrics', async () => (await peer.list('/peers')).length === 1);
});

after(async () => {
  await stopGoPeers();
  await stopAll();
});

test('id, version, peers ls and health metrics read as Go writes them', async () => {
  const [id] = await json(['id']);
  assert.equal(id.id, peer.id);
  assert.equal(id.peername, 'tools-pinfold');
  assert.equal(id.rpc_protocol_version, '/ipfscluster/1.0/rpc');
  assert.match(await ctl(['id']), new RegExp(`^${peer.id} \\| tools-pinfold \\| Sees 0 other peers`));
  assert.equal((await ctl(['version'])).trim(), '0.1.0');
  const [listed] = await json(['peers', 'ls']);
  assert.equal(listed.id, peer.id);
  assert.ok(listed.ipfs.id, 'the Kubo is named');
  const names = (await ctl(['health', 'metrics'])).trim().split('\n');
  for (const name of ['freespace', 'ping', 'pinqueue']) assert.ok(names.includes(name), names.join(','));
  const freespace = await ctl(['health', 'metrics', 'freespace']);
  assert.match(freespace, new RegExp(`${peer.id} \\| freespace: [0-9.]+ [kMGT]?B \\| Expires in: `));
  assert.deepEqual((await json(['health', 'alerts'])).flat(), []);
});

test('pin add, ls, update, status, recover and rm', async () => {
  const cid = await ipfs.addContent('go ctl pins');
  const added = await ctl(['pin', 'add', '--name', 'by-go-ctl', '--metadata', 'k=v', '--replication', '1', cid]);
  assert.match(added, new RegExp(`${cid} \\| by-go-ctl:\\n\\s+> tools-pinfold\\s+: PINNED`));
  const ls = await ctl(['pin', 'ls', cid]);
  assert.match(
    ls,
    new RegExp(
      `${cid} \\| by-go-ctl \\| PIN \\| Repl. Factor: 1--1 \\| Allocations: \\[${peer.id}\\] \\| Recursive \\| Metadata: yes`,
    ),
  );
  const [pinJson] = await json(['pin', 'ls', cid]);
  assert.deepEqual(pinJson.metadata, { k: 'v' });

  const next = await ipfs.addContent('go ctl update');
  const updated = await ctl(['pin', 'update', cid, next]);
  assert.match(updated, new RegExp(`${next} \\| by-go-ctl:\\n\\s+> tools-pinfold\\s+: PINNED`));
  assert.ok(await ipfs.isPinned(next), 'Kubo holds the updated pin');

  const [status] = await json(['status', next]);
  assert.equal(status.peer_map[peer.id].status, 'pinned');
  assert.match(await ctl(['status']), new RegExp(`${next} \\| by-go-ctl:`));
  assert.match(await ctl(['status', '--filter', 'pinned']), new RegExp(next));
  assert.doesNotMatch(await ctl(['status', '--filter', 'pin_error']), new RegExp(next));
  const [recovered] = await json(['recover', next]);
  assert.equal(recovered.peer_map[peer.id].status, 'pinned');
  assert.equal((await ctl(['recover'])).trim(), '', 'nothing in error to recover');

  const removed = await ctl(['pin', 'rm', next]);
  assert.match(removed, new RegExp(`${next}:\\n\\s+> tools-pinfold\\s+: UNPINNED`));
  await waitFor('Kubo to drop the pin', async () => !(await ipfs.isPinned(next)));
  await assert.rejects(ctl(['pin', 'ls', next]), /is not pinned in the cluster/);
});

test('add streams the files, pins the root, and --no-stream answers once', async () => {
  const dir = path.join(runDir, 'go-ctl-add');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'a.txt'), `first ${Date.now()}`);
  fs.writeFileSync(path.join(dir, 'b.txt'), `second ${Date.now()}`);
  const text = await ctl(['add', '--recursive', '--cid-version', '1', '--name', 'tree', dir]);
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 3, text);
  assert.match(lines[0], /^added bafk\w+ go-ctl-add\/a\.txt$/);
  const root = lines[2].split(' ')[1];
  const pin = await waitFor('the added root pinned', () => peer.allocation(root));
  assert.equal(pin.name, 'tree');
  await waitFor('Kubo to pin the root', () => ipfs.isPinned(root));
  const quiet = await ctl(['add', '--no-stream', '--quieter', '--cid-version', '1', path.join(dir, 'a.txt')]);
  assert.match(quiet.trim(), /^bafk\w+$/);
});

test('health graph, ipfs gc and peers rm', async () => {
  const dot = await ctl(['health', 'graph']);
  assert.match(dot, /^digraph cluster \{/);
  assert.match(dot, /tools-pinfold/);
  assert.match(dot, /C0 -> I0/);
  const [gc] = await json(['ipfs', 'gc']);
  assert.ok(gc.peer_map[peer.id], JSON.stringify(gc));
  assert.equal(gc.peer_map[peer.id].error ?? '', '');
  const local = await ctl(['ipfs', 'gc', '--local']);
  assert.match(local, /tools-pinfold/);
  await assert.rejects(ctl(['peers', 'rm', peer.id]), /cannot remove itself/);
});

test('an empty pinset lists nothing, as Go answers 204', async () => {
  const fresh = new Peer('tools-empty', { ipfs });
  await fresh.init(secret);
  await fresh.start();
  try {
    assert.equal((await fresh.get('/pins')).status, 204);
    assert.equal((await clusterCtl(fresh.api, ['pin', 'ls'])).trim(), '');
    assert.equal((await clusterCtl(fresh.api, ['status'])).trim(), '');
  } finally {
    await fresh.stop();
  }
});

test("pinfold runs from the service.json and identity.json Go's init writes, naming the keys it ignores", async () => {
  const dir = path.join(runDir, 'go-init');
  const [swarmPort, apiPort, proxyPort] = [await freePort(), await freePort(), await freePort()];
  execFileSync(goBin('ipfs-cluster-service'), ['--config', dir, 'init', '--consensus', 'crdt'], {
    env: { ...process.env, CLUSTER_SECRET: secret },
    stdio: 'ignore',
  });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'service.json'), 'utf8'));
  config.cluster.listen_multiaddress = [`/ip4/127.0.0.1/tcp/${swarmPort}`, '/ip4/127.0.0.1/udp/0/quic'];
  config.api.restapi.http_listen_multiaddress = `/ip4/127.0.0.1/tcp/${apiPort}`;
  config.api.pinsvcapi.http_listen_multiaddress = '/ip4/127.0.0.1/tcp/0';
  config.api.ipfsproxy.listen_multiaddress = `/ip4/127.0.0.1/tcp/${proxyPort}`;
  config.api.ipfsproxy.node_multiaddress = ipfs.multiaddr;
  config.ipfs_connector.ipfshttp.node_multiaddress = ipfs.multiaddr;
  config.cluster.peername = 'from-go-config';
  fs.writeFileSync(path.join(dir, 'service.json'), JSON.stringify(config, null, 2));
  const goId = JSON.parse(fs.readFileSync(path.join(dir, 'identity.json'), 'utf8')).id;
  const log = path.join(runDir, 'go-init.log');
  const out = fs.openSync(log, 'w');
  const child = spawn(pinfoldBin, ['service', '--config', dir, 'daemon'], {
    stdio: ['ignore', out, out],
    env: { ...process.env },
  });
  fs.closeSync(out);
  try {
    const id = await waitFor('the daemon from Go files', async () => {
      if (child.exitCode !== null) throw new Error(fs.readFileSync(log, 'utf8'));
      const res = await fetch(`http://127.0.0.1:${apiPort}/id`, { signal: AbortSignal.timeout(2000) });
      return res.ok && res.json();
    });
    assert.equal(id.id, goId, "Go's identity.json gives the peer id");
    assert.equal(id.peername, 'from-go-config', "the service.json's peername took effect");
    const text = fs.readFileSync(log, 'utf8');
    const warning = text.split('\n').find((l) => l.includes('that pinfold does not implement are ignored'));
    assert.ok(warning, text);
    for (const key of [
      'cluster.peer_watch_interval',
      'cluster.connection_manager',
      'api.ipfsproxy.read_header_timeout',
    ]) {
      assert.ok(warning.includes(key), `${key} named: ${warning}`);
    }
    for (const key of ['api.ipfsproxy.listen_multiaddress', 'cluster.leave_on_shutdown', 'cluster.mdns_interval']) {
      assert.ok(!warning.includes(key), `${key} is read: ${warning}`);
    }
    const version = await fetch(`http://127.0.0.1:${proxyPort}/api/v0/version`, { method: 'POST' });
    assert.equal(version.status, 200, 'the proxy of the Go-written section passes requests to Kubo');
    assert.ok((await version.json()).Version, 'Kubo answered');
    assert.match(text, /no transport for these, not listening on them.*quic/);
  } finally {
    child.kill('SIGTERM');
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(10_000)]);
  }
});

test('a bearer token from Go works at pinfold and one from pinfold at Go: the same token', async () => {
  const credentials = { CLUSTER_RESTAPI_BASICAUTHCREDENTIALS: 'alice:s3cret' };
  const go = new GoPeer('tools-go', { ipfs, env: credentials });
  await go.init(secret);
  const guarded = new Peer('tools-guarded', { ipfs, credentials: 'alice:s3cret' });
  await guarded.init(secret);
  await go.start();
  await guarded.start();
  const basic = { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` };
  const token = async (api) => {
    const res = await fetch(`${api}/token`, { method: 'POST', headers: basic });
    assert.equal(res.status, 200);
    return (await res.json()).token;
  };
  const [fromGo, fromPinfold] = [await token(go.api), await token(guarded.api)];
  assert.equal(fromPinfold, fromGo, 'byte for byte the token Go issues');
  for (const [api, bearer] of [
    [guarded.api, fromGo],
    [go.api, fromPinfold],
  ]) {
    const res = await fetch(`${api}/id`, { headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(res.status, 200, `${api} takes the other's token`);
  }
});

test("Go's RPC policy: a Go peer pinfold does not trust reaches the open methods only", async () => {
  const guard = new Peer('tools-guard', { ipfs });
  await guard.init(secret);
  guard.extraEnv.CLUSTER_CRDT_TRUSTEDPEERS = guard.id;
  await guard.start();
  const outsider = new GoPeer('tools-outsider', { ipfs });
  await outsider.init(secret);
  await outsider.start(['--bootstrap', guard.address]);
  const cid = await ipfs.addContent('guarded');
  assert.equal((await guard.post(`/pins/${cid}`)).status, 200);
  // Open: Cluster.IDStream answers.
  const listed = await waitFor('the outsider to list the guard', async () => {
    const ids = jsonValues(await clusterCtl(outsider.api, ['peers', 'ls'], { encoding: 'json' }));
    const entry = ids.find((id) => id.id === guard.id);
    return entry && !entry.error && entry;
  });
  assert.equal(listed.peername, 'tools-guard');
  // Trusted only: PinTracker.Status is refused, and Go leaves a refusing peer out.
  const status = await waitFor('the pin at the outsider', async () => {
    const [global] = jsonValues(await clusterCtl(outsider.api, ['status', cid], { encoding: 'json' }));
    return global?.peer_map?.[outsider.id] && global;
  });
  assert.equal(status.peer_map[guard.id], undefined, JSON.stringify(status));
  assert.match(guard.tail(400), /RPC call refused: Go's policy does not let this peer call it.*PinTracker\.Status/);
  await outsider.stop();
  await guard.stop();
});
