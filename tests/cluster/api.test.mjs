// The REST API of a running three-peer cluster, each peer with its own Kubo:
// ipfs-cluster v1.1.6's routes and options that the cluster test does not already cover
// (expiry, path pins, /add, cids=, recover, pin update, the connectivity graph, peer
// removal, CORS), their JSON shapes, bad input, `pinfold ctl` driving them, in scripts and
// in a terminal, the Pinning Services API with its bearer tokens, HTTPS, and `pinfold
// follow` running a follower from the template a peer serves, or from a DNSLink name read
// through an IPFS gateway.
// Run: node --test tests/cluster/ (scripts/test does), after scripts/setup and a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Ipfs, Peer, httpsGet, pinfoldBin, runDir, sleep, stopAll, waitFor } from './harness.mjs';
import { assertShape, shapes } from './shapes.mjs';
import { cidBytes, cidText, rawCid } from '../support/cid.mjs';
import { startDoh } from '../support/dns.mjs';
import { carFile } from '../support/car.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
const peers = [];
const [p1, p2, p3] = [0, 1, 2].map((n) => () => peers[n]);

/** Runs `pinfold ctl` against `peer`: its exit code, standard output and error. */
function ctl(peer, ...args) {
  try {
    const out = execFileSync(pinfoldBin, ['ctl', '--host', `/ip4/127.0.0.1/tcp/${peer.apiPort}`, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, out, err: '' };
  } catch (error) {
    return { code: error.status, out: error.stdout, err: error.stderr };
  }
}

/** Runs `pinfold ctl` in a pseudo-terminal (as a person at a shell would) and returns all it printed. */
function ctlInTerminal(peer, ...args) {
  const command = [pinfoldBin, 'ctl', '--host', `/ip4/127.0.0.1/tcp/${peer.apiPort}`, ...args]
    .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
    .join(' ');
  return execFileSync('script', ['-qefc', command, '/dev/null'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
}

/** A CIDv1 of random bytes no daemon has. */
const absentCid = () => rawCid(randomBytes(32));

async function request(peer, route, init = {}) {
  const res = await fetch(`${peer.api}${route}`, { signal: AbortSignal.timeout(60_000), ...init });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const lines = (body) =>
  body
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** Fails unless the answer is ipfs-cluster's error shape with `status` and a message matching `message`. */
function assertError({ status, body }, expected, message, what) {
  assert.equal(status, expected, `${what}: ${body}`);
  const error = JSON.parse(body);
  assertShape(error, shapes.error, what);
  assert.equal(error.code, expected, what);
  assert.match(error.message, message, what);
}

before(async () => {
  for (const name of ['p1', 'p2', 'p3']) {
    // p1's Kubo routes through the DHT (with no peer but the test's daemons): with no
    // routing at all, Kubo drops the IPNS records it publishes, and the /ipns path test
    // resolves one.
    // p2's Kubo has its filestore on, for adds by reference (nocopy).
    const ipfs = await new Ipfs(`api-${name}`, {
      routing: name === 'p1' ? 'dht' : undefined,
      filestore: name === 'p2',
    }).start();
    const peer = new Peer(`api-${name}`, {
      ipfs,
      env: {
        CLUSTER_STATESYNCINTERVAL: '1s',
        CLUSTER_IPFSHTTP_PINTIMEOUT: '4s',
        // p2's Pinning Services API asks for credentials; p1 serves the follow template.
        ...(name === 'p2' ? { CLUSTER_PINSVCAPI_BASICAUTHCREDENTIALS: 'pinner:pw' } : {}),
        ...(name === 'p1' ? { CLUSTER_RESTAPI_SERVEFOLLOWTEMPLATE: 'true' } : {}),
      },
    });
    await peer.init(secret);
    peers.push(peer);
  }
  await p1().start();
  await p2().start(['--bootstrap', p1().address]);
  await p3().start(['--bootstrap', p1().address]);
  for (const peer of peers) {
    await waitFor(`${peer.name} to see 3 peers with freespace`, async () => {
      const { body } = await peer.get('/monitor/metrics/freespace');
      return JSON.parse(body).filter((m) => m.valid).length === 3 && (await peer.list('/peers')).length === 3;
    });
  }
});

after(async () => {
  await stopAll();
});

test("the JSON of every route has ipfs-cluster's field names and types", async () => {
  const cid = await p1().ipfs.addContent('shapes');
  const { status, body } = await p1().post(`/pins/${cid}?name=shapes&meta-kind=test`);
  assert.equal(status, 200, body);
  assertShape(JSON.parse(body), shapes.pin, 'POST /pins/{cid}');
  const id = JSON.parse((await p1().get('/id')).body);
  assertShape(id, shapes.id, '/id');
  assertShape(id.ipfs, shapes.ipfsId, '/id ipfs');
  for (const peer of await p1().list('/peers')) assertShape(peer, shapes.peer, '/peers');
  assertShape(JSON.parse((await p1().get('/version')).body), shapes.version, '/version');
  await waitFor('the pin to reach every peer', async () =>
    (await Promise.all(peers.map((p) => p.allocation(cid)))).every(Boolean),
  );
  assertShape(await p2().allocation(cid), shapes.pin, '/allocations/{cid}');
  for (const pin of await p1().list('/allocations')) assertShape(pin, shapes.pin, '/allocations');
  const global = JSON.parse((await p1().get(`/pins/${cid}`)).body);
  assertShape(global, shapes.globalPinInfo, '/pins/{cid}');
  assert.equal(Object.keys(global.peer_map).length, 3);
  for (const short of Object.values(global.peer_map)) assertShape(short, shapes.pinInfoShort, 'peer_map value');
  for (const info of await p1().list('/pins')) assertShape(info, shapes.globalPinInfo, '/pins');
  const metrics = JSON.parse((await p1().get('/monitor/metrics/freespace')).body);
  for (const metric of metrics) assertShape(metric, shapes.metric, '/monitor/metrics/freespace');
  assert.ok(Array.isArray(JSON.parse((await p1().get('/monitor/metrics')).body)));
  assert.ok(Array.isArray(JSON.parse((await p1().get('/health/alerts')).body)));
  assertShape(JSON.parse((await p1().get('/health/graph')).body), shapes.graph, '/health/graph');
  assert.equal((await p1().get('/health')).status, 204);
  assert.equal((await p1().post(`/pins/${cid}`, 'DELETE')).status, 200);
});

test("bad input gets ipfs-cluster's error shape and says what is wrong", async () => {
  const cid = await p1().ipfs.addContent('bad input');
  const cases = [
    ['/pins/not-a-cid', 'POST', 400, /error decoding Cid "not-a-cid"/],
    [`/pins/${cid}?replication-min=3&replication-max=2`, 'POST', 400, /replication/i],
    [`/pins/${cid}?replication=two`, 'POST', 400, /parameter replication: "two" is not a number/],
    [`/pins/${cid}?expire-in=soon`, 'POST', 400, /expire-in "soon"/],
    [`/pins/${cid}?expire-in=500ms`, 'POST', 400, /less than one second/],
    [`/pins/${cid}?expire-at=tomorrow`, 'POST', 400, /expire-at "tomorrow" is not an RFC 3339 time/],
    [`/pins/${cid}?origins=/ip4/127.0.0.1/tcp/4001`, 'POST', 400, /has no \/p2p\/<peer id>/],
    [`/pins/${cid}?mode=sideways`, 'POST', 400, /mode "sideways": use recursive or direct/],
    [`/pins/${cid}?pin-update=${absentCid()}`, 'POST', 404, /is not pinned in the cluster/],
    ['/pins?filter=sideways', 'GET', 400, /sideways/],
    ['/pins?cids=nope', 'GET', 400, /error decoding Cid "nope"/],
    ['/pins?local=maybe', 'GET', 400, /parameter local: "maybe" is not true or false/],
    [`/pins/${absentCid()}`, 'DELETE', 404, /is not pinned in the cluster/],
    [`/allocations/${absentCid()}`, 'GET', 404, /is not pinned in the cluster/],
    ['/peers/not-a-peer', 'DELETE', 400, /error decoding peer ID "not-a-peer"/],
    [`/peers/${p1().id}`, 'DELETE', 400, /cannot remove itself/],
    ['/pins/recover?local=maybe', 'POST', 400, /not true or false/],
    ['/add', 'POST', 400, /multipart\/form-data/],
    ['/add?shard=true&local=true', 'POST', 400, /local puts every block on this peer, shard spreads them/],
    ['/add?format=tar', 'POST', 400, /format "tar" is not supported: use unixfs or car/],
  ];
  for (const [route, method, status, message] of cases) {
    assertError(await request(p1(), route, { method }), status, message, `${method} ${route}`);
  }
});

test('expire-in and expire-at set expire_at; the pin is unpinned cluster-wide once it passes', async () => {
  const cid = await p1().ipfs.addContent('expiring');
  const before = Date.now();
  const { status, body } = await p1().post(`/pins/${cid}?expire-in=3s&name=short-lived`);
  assert.equal(status, 200, body);
  // expire_at is in whole seconds of the cluster's time, which may run a little behind this host's clock.
  const expireAt = Date.parse(JSON.parse(body).expire_at);
  assert.ok(expireAt >= before + 1000 && expireAt <= Date.now() + 4000, `expire_at ${JSON.parse(body).expire_at}`);
  await waitFor('the pin to reach every peer', async () =>
    (await Promise.all(peers.map((p) => p.allocation(cid)))).every(Boolean),
  );
  await waitFor(
    'the expired pin to leave every peer',
    async () => (await Promise.all(peers.map((p) => p.allocation(cid)))).every((a) => a === null),
    30_000,
  );
  for (const peer of peers)
    await waitFor(`${peer.name}'s daemon to drop it`, async () => !(await peer.ipfs.isPinned(cid)));

  const later = await p1().ipfs.addContent('expires later');
  const pin = JSON.parse((await p1().post(`/pins/${later}?expire-at=2099-01-02T03:04:05Z`)).body);
  assert.equal(pin.expire_at, '2099-01-02T03:04:05Z');
  assert.equal((await p1().post(`/pins/${later}`, 'DELETE')).status, 200);
});

test('path pins resolve /ipfs and /ipns paths through the daemon', async () => {
  const form = new FormData();
  form.append('file', new Blob([`inside a directory ${Date.now()}`]), 'a.txt');
  const { body } = await p1().ipfs.rpc('add?pin=false&cid-version=1&wrap-with-directory=true', { body: form });
  const [file, dir] = lines(body);
  const pinned = await p1().post(`/pins/ipfs/${dir.Hash}/a.txt?name=by-path`);
  assert.equal(pinned.status, 200, pinned.body);
  const pin = JSON.parse(pinned.body);
  assert.equal(pin.cid, file.Hash);
  assert.equal(pin.name, 'by-path');
  await waitFor('the path pin on p2', () => p2().allocation(file.Hash));
  assertError(
    await request(p1(), `/pins/ipfs/${dir.Hash}/missing.txt`, { method: 'POST' }),
    400,
    /could not resolve \/ipfs\//,
    'a missing path',
  );
  // An /ipns path: p1's daemon publishes the file under its own key, and the pin is of the
  // CID the name resolves to.
  const published = await p1().ipfs.rpc(`name/publish?arg=/ipfs/${file.Hash}&allow-offline=true&resolve=false`);
  assert.equal(published.status, 200, published.body);
  const byName = await p1().post(`/pins/ipns/${JSON.parse(published.body).Name}?name=by-ipns`);
  assert.equal(byName.status, 200, byName.body);
  assert.equal(JSON.parse(byName.body).cid, file.Hash);
  assert.equal(JSON.parse(byName.body).name, 'by-ipns');
  // Removed through p2 once p2 holds the renamed pin: a removal takes away only the
  // writes its peer has seen (the pinset is an add-wins set).
  await waitFor('the renamed pin on p2', async () => (await p2().allocation(file.Hash))?.name === 'by-ipns');
  const ctlRm = ctl(p2(), 'pin', 'rm', `/ipfs/${dir.Hash}/a.txt`);
  assert.equal(ctlRm.code, 0, ctlRm.err);
  await waitFor('the path unpin everywhere', async () =>
    (await Promise.all(peers.map((p) => p.allocation(file.Hash)))).every((a) => a === null),
  );
});

test('/add hands the files to the daemon and pins the root with the pin options', async () => {
  const form = new FormData();
  form.append('file', new Blob([`added through the cluster ${Date.now()}`]), 'note.txt');
  const res = await request(p2(), '/add?replication=2&name=added&cid-version=1&meta-via=rest', {
    method: 'POST',
    body: form,
  });
  assert.equal(res.status, 200, res.body);
  const outputs = lines(res.body);
  assert.equal(outputs.length, 1, res.body);
  assertShape(outputs[0], shapes.added, '/add output');
  assert.equal(outputs[0].name, 'note.txt');
  assert.ok(outputs[0].cid.startsWith('b'), 'cid-version=1 reached the daemon');
  assert.equal(outputs[0].allocations.length, 2, res.body);
  const pin = await waitFor('the added pin on p3', () => p3().allocation(outputs[0].cid));
  assert.equal(pin.name, 'added');
  assert.equal(pin.metadata.via, 'rest');
  for (const peer of peers.filter((p) => outputs[0].allocations.includes(p.id))) {
    await waitFor(`${peer.name}'s daemon to pin the added file`, () => peer.ipfs.isPinned(outputs[0].cid));
  }

  const unpinned = new FormData();
  unpinned.append('file', new Blob([`not pinned ${Date.now()}`]), 'loose.txt');
  const loose = lines((await request(p2(), '/add?no-pin=true', { method: 'POST', body: unpinned })).body);
  assert.equal(loose.length, 1);
  assert.equal(await p2().allocation(loose[0].cid), null, 'no-pin adds without pinning');
});

test('/add?format=car imports a CAR file with one root and pins that root', async () => {
  // A dag-pb directory linking one raw leaf, as two blocks of a CAR file.
  const leafBytes = Buffer.from(`a leaf from a CAR file ${Date.now()}`);
  const leaf = cidBytes(0x55, leafBytes);
  const name = Buffer.from('leaf');
  const link = Buffer.concat([
    Buffer.from([0x0a, leaf.length]),
    leaf,
    Buffer.from([0x12, name.length]),
    name,
    Buffer.from([0x18, leafBytes.length]),
  ]);
  const directory = Buffer.concat([Buffer.from([0x12, link.length]), link, Buffer.from([0x0a, 0x02, 0x08, 0x01])]);
  const root = cidBytes(0x70, directory);
  const upload = (bytes, query) => {
    const form = new FormData();
    form.append('file', new Blob([bytes]), 'tree.car');
    return request(p2(), `/add?format=car&${query}`, { method: 'POST', body: form });
  };

  const res = await upload(
    carFile(
      [root],
      [
        [root, directory],
        [leaf, leafBytes],
      ],
    ),
    'name=from-car&replication=2',
  );
  assert.equal(res.status, 200, res.body);
  const outputs = lines(res.body);
  assert.equal(outputs.length, 1, res.body);
  assertShape(outputs[0], shapes.added, '/add?format=car output');
  assert.equal(outputs[0].cid, cidText(root));
  assert.equal(outputs[0].allocations.length, 2, res.body);
  const pin = await waitFor('the CAR root pinned in the cluster', () => p3().allocation(cidText(root)));
  assert.equal(pin.name, 'from-car');
  for (const peer of peers.filter((p) => outputs[0].allocations.includes(p.id))) {
    await waitFor(`${peer.name}'s daemon to pin the CAR's DAG`, () => peer.ipfs.isPinned(cidText(root)));
  }

  const file = path.join(runDir, 'tree.car');
  fs.writeFileSync(
    file,
    carFile(
      [root],
      [
        [root, directory],
        [leaf, leafBytes],
      ],
    ),
  );
  const viaCtl = ctl(p1(), 'add', '--format', 'car', '-q', '--name', 'car-by-ctl', file);
  assert.equal(viaCtl.code, 0, viaCtl.err);
  assert.equal(viaCtl.out.trim(), cidText(root));
  await waitFor(
    'the new name of the CAR root',
    async () => (await p3().allocation(cidText(root)))?.name === 'car-by-ctl',
  );

  const twoRoots = await upload(
    carFile(
      [root, leaf],
      [
        [root, directory],
        [leaf, leafBytes],
      ],
    ),
    'name=two',
  );
  assertError(twoRoots, 400, /the CAR file names 2 roots: it needs exactly one/, 'a CAR file with two roots');
});

test('add --nocopy has the daemon reference the file through its filestore, and says when it is off', async () => {
  const file = path.join(p2().ipfs.dir, 'by-reference.bin');
  fs.writeFileSync(file, randomBytes(600_000));
  const added = ctl(p2(), 'add', '-Q', '--nocopy', '--local', '--replication', '1', file);
  assert.equal(added.code, 0, added.err);
  const root = added.out.trim();
  // add answers once the pin is in the shared pinset; the peer's tracker then pins it on its daemon.
  await waitFor("the adding peer's daemon to pin the file", () => p2().ipfs.isPinned(root));
  const pin = await p2().allocation(root);
  assert.deepEqual(pin.allocations, [p2().id]);
  const { status, body } = await p2().ipfs.rpc('filestore/ls');
  assert.equal(status, 200, body);
  // Kubo names the file relative to the repository's parent folder.
  const references = lines(body).filter((entry) => path.join(p2().ipfs.dir, entry.FilePath) === file);
  assert.equal(references.length, 3, `two 256 KiB leaves and the rest, in ${file}:\n${body}`);
  assert.ok(
    references.every((entry) => entry.Key['/'].startsWith('bafk')),
    'raw leaves, as nocopy implies',
  );

  // A small file: the refusal comes before the upload ends, which a large one may still be sending.
  const small = path.join(p3().ipfs.dir, 'small-by-reference.txt');
  fs.writeFileSync(small, 'nocopy without a filestore');
  const refused = ctl(p3(), 'add', '--nocopy', '--local', small);
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /the filestore or the urlstore must be enabled to use nocopy/);
  const viaRest = await request(p3(), '/add?nocopy=true&format=car', { method: 'POST' });
  assert.equal(viaRest.status, 400);
  assert.match(viaRest.body, /nocopy adds files by reference/);
});

test('add --shard puts each shard on its own peers; the root is sharded and unpins whole', async () => {
  const file = path.join(runDir, 'sharded.bin');
  fs.writeFileSync(file, randomBytes(800_000));
  // One 256 KiB leaf to a shard, the small blocks beside them: three shards, each on one peer.
  const added = ctl(p3(), 'add', '--shard', '--shard-size', '300000', '--replication', '1', '--name', 'spread', file);
  assert.equal(added.code, 0, added.err);
  const lines = added.out.trim().split('\n');
  const shards = lines.filter((l) => / shard-\d+$/.test(l)).map((l) => l.split(' ')[1]);
  assert.equal(shards.length, 3, added.out);
  const root = lines.at(-1).split(' ')[1];
  const meta = await waitFor(`the meta pin at p1`, () => p1().allocation(root));
  assert.equal(meta?.type, 'meta-pin', JSON.stringify(meta));
  const holders = new Set();
  for (const cid of shards) {
    const shard = await waitFor(`shard ${cid} at p1`, () => p1().allocation(cid));
    assert.equal(shard.type, 'shard-pin');
    assert.equal(shard.allocations.length, 1);
    const holder = peers.find((p) => p.id === shard.allocations[0]);
    holders.add(holder.name);
    await waitFor(`${holder.name}'s Kubo to pin ${cid}`, () => holder.ipfs.isPinned(cid), 60_000);
  }
  await waitFor('every peer to call the root sharded', async () => {
    const status = JSON.parse((await p2().get(`/pins/${root}`)).body);
    if (peers.every((peer) => status.peer_map[peer.id]?.status === 'sharded')) return true;
    throw new Error(JSON.stringify(status));
  });
  const listed = ctl(p2(), 'pin', 'ls', '--filter', 'clusterdag-pin');
  assert.match(
    listed.out,
    /spread-clusterDAG \| CLUSTERDAG-PIN-DIRECT \| Repl\. Factor: -1---1 .*\| Direct$/m,
    listed.out,
  );

  const refused = ctl(p1(), 'pin', 'rm', shards[0]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /cannot unpin a shard directly/);
  const removed = ctl(p1(), 'pin', 'rm', root);
  assert.equal(removed.code, 0, removed.err);
  await waitFor('every part of the sharded add to leave the pinset at p3', async () => {
    const left = await p3().list('/allocations?filter=meta-pin,clusterdag-pin,shard-pin');
    return left.length === 0;
  });
});

test('pinfold ctl add uploads a directory, pins its root and can wait for it', async () => {
  const dir = path.join(runDir, 'upload');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'one.txt'), `one ${Date.now()}`);
  fs.writeFileSync(path.join(dir, 'sub', 'two words.txt'), 'two '.repeat(100_000));

  const refused = ctl(p1(), 'add', dir);
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /is a directory: add it with -r \(--recursive\)/);

  const quiet = ctl(
    p1(),
    'add',
    '-r',
    '-Q',
    '--cid-version',
    '1',
    '--name',
    'tree',
    '--replication',
    '2',
    '--wait',
    '--wait-timeout',
    '60',
    dir,
  );
  assert.equal(quiet.code, 0, quiet.err);
  assert.equal(quiet.err, '', 'nothing on standard error in a script');
  const root = quiet.out.trim().split('\n')[0];
  const pin = await p1().allocation(root);
  assert.equal(pin.name, 'tree');
  assert.equal(pin.allocations.length, 2);
  const ls = await p1().ipfs.rpc(`ls?arg=${root}`);
  assert.deepEqual(
    JSON.parse(ls.body)
      .Objects?.[0]?.Links?.map((l) => l.Name)
      .sort(),
    ['one.txt', 'sub'],
    `ls ${root}: ${ls.body}`,
  );
  const nested = await p1().post(`/pins/ipfs/${root}/sub/two%20words.txt?name=nested`);
  assert.equal(nested.status, 200, nested.body);

  const json = ctl(p1(), '--enc', 'json', 'add', '-r', '--cid-version', '1', '--no-pin', dir);
  assert.equal(json.code, 0, json.err);
  const outputs = json.out.trim().split('\n}\n').length;
  assert.equal(outputs, 4, `one output per file and directory:\n${json.out}`);
  const cids = ctl(p1(), 'add', '-r', '-q', '--cid-version', '1', '--no-pin', dir);
  assert.equal(cids.code, 0, cids.err);
  const cidLines = cids.out.trim().split('\n');
  assert.equal(cidLines.length, 4, `-q: one CID per file and directory:\n${cids.out}`);
  assert.equal(cidLines.at(-1), root, 'the root last');
  const buffered = ctl(p1(), '--enc', 'json', 'add', '-r', '--no-stream', '--cid-version', '1', '--no-pin', dir);
  assert.equal(buffered.code, 0, buffered.err);
  const array = JSON.parse(buffered.out);
  assert.equal(array.length, 4, '--no-stream: one JSON array');
  assert.equal(array.at(-1).cid, root);

  const localFile = path.join(runDir, 'local.txt');
  fs.writeFileSync(localFile, `local ${Date.now()}`);
  const local = ctl(p2(), 'add', '-Q', '--local', '--replication', '1', '--cid-version', '1', localFile);
  assert.equal(local.code, 0, local.err);
  const localPin = await p2().allocation(local.out.trim());
  assert.deepEqual(localPin.allocations, [p2().id], '--local: the adding peer holds it');
  const removed = ctl(p2(), 'pin', 'rm', '--wait', '--wait-timeout', '60', local.out.trim());
  assert.equal(removed.code, 0, removed.err);
  const views = removed.out.split('\n').filter((l) => l.includes(' > '));
  assert.ok(views.length >= 3, removed.out);
  assert.ok(
    views.every((l) => l.includes(': UNPINNED |')),
    `--wait: every peer reports it unpinned:\n${removed.out}`,
  );
  assert.equal(await p2().ipfs.isPinned(local.out.trim()), false, "unpinned on the adder's daemon");

  const terminal = ctlInTerminal(p1(), 'add', '-r', '--cid-version', '1', '--replication', '1', dir);
  assert.match(terminal, /adding: .* sent \(\d+%/, 'a progress line on a terminal');
  assert.match(terminal, new RegExp(`added ${root} upload`));
  const waited = ctlInTerminal(p1(), 'pin', 'add', root, '--replication', '2', '--wait', '--wait-timeout', '60');
  assert.match(waited, /waiting for .*: pinned on \d\/2 peers/);
  assert.match(waited, /: PINNED \|/);
});

test('GET /pins?cids= lists only the CIDs named, each once', async () => {
  const [a, b] = [await p1().ipfs.addContent('cids a'), await p1().ipfs.addContent('cids b')];
  for (const cid of [a, b]) assert.equal((await p1().post(`/pins/${cid}`)).status, 200);
  await waitFor('both pins on p3', async () => (await p3().allocation(a)) && (await p3().allocation(b)));
  const listed = await p3().list(`/pins?cids=${a},${b},${a}`);
  assert.deepEqual(listed.map((g) => g.cid).sort(), [a, b].sort());
  for (const info of listed) assert.equal(Object.keys(info.peer_map).length, 3);
  const local = await p3().list(`/pins?cids=${a}&local=true`);
  assert.deepEqual(Object.keys(local[0].peer_map), [p3().id]);
  const status = ctl(p3(), '--enc', 'json', 'status', a, b);
  assert.equal(status.code, 0, status.err);
  assert.equal(status.out.match(/"cid": "/g).length, 2, status.out);
  for (const cid of [a, b]) await p1().post(`/pins/${cid}`, 'DELETE');
});

test('/pins/recover and /pins/{cid}/recover re-queue pins in error, cluster-wide or locally', async () => {
  const cid = absentCid();
  const { body } = await p1().post(`/pins/${cid}?replication=1&name=unreachable`);
  const [holder] = JSON.parse(body).allocations.map((id) => peers.find((p) => p.id === id));
  await waitFor(
    `${holder.name} to give up pinning content nobody has`,
    async () => {
      const info = JSON.parse((await p1().get(`/pins/${cid}`)).body);
      return info.peer_map[holder.id]?.status === 'pin_error';
    },
    60_000,
  );
  const requeued = (status) => ['pin_queued', 'pinning'].includes(status);
  // The tracker retries on its own, so a listing may catch the pin between two tries: ask
  // until it is caught in error.
  const recovered = await waitFor(
    'POST /pins/recover to recover the pin in error',
    async () => {
      const all = await request(p1(), '/pins/recover', { method: 'POST' });
      assert.equal(all.status, 200, all.body);
      return lines(all.body).find((g) => g.cid === cid);
    },
    60_000,
  );
  assert.ok(requeued(recovered.peer_map[holder.id].status), JSON.stringify(recovered.peer_map[holder.id]));

  const local = await waitFor(
    'POST /pins/recover?local=true on the holder',
    async () => {
      const answer = lines((await request(holder, '/pins/recover?local=true', { method: 'POST' })).body);
      return answer.length > 0 && answer;
    },
    60_000,
  );
  assert.deepEqual(
    local.map((g) => g.cid),
    [cid],
  );
  assert.deepEqual(Object.keys(local[0].peer_map), [holder.id]);
  assert.ok(requeued(local[0].peer_map[holder.id].status));

  const other = peers.find((p) => p !== holder);
  const one = ctl(other, '--enc', 'json', 'recover', cid);
  assert.equal(one.code, 0, one.err);
  assert.ok(requeued(JSON.parse(one.out).peer_map[holder.id].status), one.out);

  assert.equal((await p1().post(`/pins/${cid}`, 'DELETE')).status, 200);
  const none = ctl(p1(), 'recover');
  assert.equal(none.code, 0, none.err);
});

test('pin update pins the new CID with the options and allocations of the old one', async () => {
  const [from, to, next] = [
    await p1().ipfs.addContent('update from'),
    await p1().ipfs.addContent('update to'),
    await p1().ipfs.addContent('update next'),
  ];
  const old = JSON.parse((await p1().post(`/pins/${from}?replication=1&name=old&meta-team=ops`)).body);
  const holder = peers.find((p) => p.id === old.allocations[0]);
  // pin/update applies only where the old CID is pinned already; else the daemon pins anew.
  await waitFor(`${holder.name}'s Kubo to pin the old CID`, () => holder.ipfs.isPinned(from));
  const updated = JSON.parse((await p1().post(`/pins/${to}?pin-update=${from}`)).body);
  assert.deepEqual(updated.allocations, old.allocations);
  assert.equal(updated.name, 'old');
  assert.equal(updated.metadata.team, 'ops');
  assert.equal(updated.pin_update, from);
  assert.ok(await p1().allocation(from), 'the old pin stays');
  // The allocated peer's Kubo, which pins the old CID, moves its pin with pin/update.
  await waitFor(`${holder.name}'s Kubo to pin the updated CID`, () => holder.ipfs.isPinned(to));
  assert.ok(await holder.ipfs.isPinned(from), 'pin/update keeps the old pin (unpin=false)');
  // Kubo answers pin/update before the peer logs it: wait for the line, not just the pin.
  const updateLine = new RegExp(
    `pinned with pin/update.*from=${from}.*cid=${to}|pinned with pin/update.*cid=${to}.*from=${from}`,
  );
  await waitFor(`${holder.name} to log the pin/update`, () => updateLine.test(fs.readFileSync(holder.log, 'utf8')));
  await waitFor('p2 to know the updated pin', () => p2().allocation(to));
  const viaCtl = ctl(p2(), '--enc', 'json', 'pin', 'update', to, next, '--name', 'newer');
  assert.equal(viaCtl.code, 0, viaCtl.err);
  const pin = JSON.parse(viaCtl.out);
  assert.equal(pin.name, 'newer');
  assert.deepEqual(pin.allocations, old.allocations);
  for (const cid of [from, to, next]) await p1().post(`/pins/${cid}`, 'DELETE');
});

test("POST /ipfs/gc and ctl ipfs gc collect every peer's Kubo garbage, or one peer's with local", async () => {
  const block = async (peer, label) => {
    const form = new FormData();
    form.append('file', new Blob([`${label} ${Date.now()} ${Math.random()}`]));
    const put = await peer.ipfs.rpc('block/put?cid-codec=raw', { body: form });
    assert.equal(put.status, 200, put.body);
    return JSON.parse(put.body).Key;
  };
  const present = async (peer, cid) => (await peer.ipfs.rpc(`block/stat?arg=${cid}&offline=true`)).status === 200;
  const loose = await Promise.all(peers.map((p) => block(p, 'garbage')));
  const kept = await block(p3(), 'pinned in the cluster');
  assert.equal((await p1().post(`/pins/${kept}?replication=-1`)).status, 200);
  await waitFor('the kept pin on every Kubo', async () =>
    (await Promise.all(peers.map((p) => p.ipfs.isPinned(kept)))).every(Boolean),
  );

  const res = await request(p1(), '/ipfs/gc', { method: 'POST' });
  assert.equal(res.status, 200, res.body);
  const gc = JSON.parse(res.body);
  assert.deepEqual(Object.keys(gc.peer_map).sort(), peers.map((p) => p.id).sort());
  peers.forEach((peer, n) => {
    const entry = gc.peer_map[peer.id];
    assert.equal(entry.peer, peer.id);
    assert.equal(entry.peername, peer.name);
    assert.equal(entry.error, undefined, JSON.stringify(entry));
    const keys = entry.keys.map((k) => k.key);
    assert.ok(keys.includes(loose[n]), `${peer.name} removed its loose block`);
    assert.ok(!keys.includes(kept), `${peer.name} kept the pinned block`);
  });
  for (const [n, peer] of peers.entries()) {
    assert.equal(await present(peer, loose[n]), false, `${peer.name}'s loose block is gone`);
    assert.equal(await present(peer, kept), true, `${peer.name} keeps the pinned block`);
  }

  const mine = await block(p2(), 'garbage of p2');
  const theirs = await block(p3(), 'garbage of p3');
  const local = ctl(p2(), 'ipfs', 'gc', '--local');
  assert.equal(local.code, 0, local.err);
  assert.match(local.out, new RegExp(`^${p2().name} *\n  > CIDs:\n(    - \\S+\n)*    - ${mine}\n`, 'm'));
  assert.ok(!local.out.includes(p1().name), local.out);
  assert.equal(await present(p3(), theirs), true, '--local leaves the other peers alone');
  const json = ctl(p1(), '--enc', 'json', 'ipfs', 'gc');
  assert.equal(json.code, 0, json.err);
  assert.ok(
    JSON.parse(json.out).peer_map[p3().id].keys.some((k) => k.key === theirs),
    json.out,
  );
  assertError(await request(p1(), '/ipfs/gc?local=maybe', { method: 'POST' }), 400, /local/, 'a bad local');
  await p1().post(`/pins/${kept}`, 'DELETE');
});

test("/health/graph shows every peer's links; ctl health graph writes a dot file", async () => {
  const graph = await waitFor('a full graph', async () => {
    const g = JSON.parse((await p2().get('/health/graph')).body);
    const full = peers.every((p) => (g.cluster_links[p.id] ?? []).length === 2 && g.cluster_to_ipfs[p.id]);
    const daemons = Object.values(g.cluster_to_ipfs);
    const meshed =
      daemons.length === 3 &&
      daemons.every((d) => daemons.filter((o) => o !== d).every((o) => (g.ipfs_links[d] ?? []).includes(o)));
    return full && meshed && g;
  });
  assert.equal(graph.cluster_id, p2().id);
  for (const peer of peers) {
    assert.equal(graph.id_to_peername[peer.id], peer.name);
    assert.equal(graph.cluster_trust_links[peer.id], true);
    assert.equal(graph.cluster_to_ipfs[peer.id], JSON.parse((await peer.get('/id')).body).ipfs.id);
  }
  const file = path.join(runDir, 'cluster.dot');
  const written = ctl(p2(), 'health', 'graph', '--file', file);
  assert.equal(written.code, 0, written.err);
  const dot = fs.readFileSync(file, 'utf8');
  assert.match(dot, /^digraph cluster \{/);
  for (const peer of peers) assert.ok(dot.includes(`label="${peer.name}`), `${peer.name} in the graph`);
  assert.equal((dot.match(/style=dashed/g) ?? []).length, 6, dot);
});

test("CORS: preflights and answers carry ipfs-cluster's default policy", async () => {
  const origin = 'http://localhost:5173';
  const preflight = await request(p1(), '/pins', {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'GET' },
  });
  assert.ok(preflight.status < 300, `preflight answered ${preflight.status}`);
  assert.equal(preflight.headers.get('access-control-allow-origin'), origin);
  assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true');
  assert.match(preflight.headers.get('access-control-allow-methods'), /GET/);
  const answer = await request(p1(), '/id', { headers: { origin } });
  assert.equal(answer.headers.get('access-control-allow-origin'), origin);
  assert.match(answer.headers.get('access-control-expose-headers'), /X-Stream-Output/i);
});

test("the Pinning Services API maps its pins and statuses onto the cluster's", async () => {
  const svc = async (peer, route, init = {}) => {
    const res = await fetch(`${peer.pinningApi}${route}`, { signal: AbortSignal.timeout(60_000), ...init });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const json = (body) => ({
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const cid = await p1().ipfs.addContent('pinning service');
  const added = await svc(p1(), '/pins', json({ cid, name: 'Holiday Photos', meta: { app: 'test' } }));
  assert.equal(added.status, 202, JSON.stringify(added.body));
  assert.equal(added.body.requestid, cid);
  assert.equal(added.body.status, 'queued');
  assert.deepEqual(added.body.pin, { cid, name: 'Holiday Photos', meta: { app: 'test' } });
  assert.ok(
    added.body.delegates.length > 0 && added.body.delegates.every((d) => d.startsWith('/ip')),
    JSON.stringify(added.body.delegates),
  );
  assert.equal(added.body.info.warning1, 'CID used for requestID. Conflicts possible');
  assert.ok(!Number.isNaN(Date.parse(added.body.created)));

  // Pinned on every peer first: the content is on p1's daemon, so p1 may report it pinned
  // before the others have even heard of it, and their queued statuses come after.
  await waitFor('the pin to be pinned on every peer', async () => {
    const info = JSON.parse((await p1().get(`/pins/${cid}`)).body);
    return peers.every((p) => info.peer_map[p.id]?.status === 'pinned');
  });
  const pinned = await waitFor('the pin to be pinned', async () => {
    const got = await svc(p1(), `/pins/${cid}`);
    return got.body.status === 'pinned' && got.body;
  });
  assert.equal(pinned.pin.name, 'Holiday Photos');
  const created = Date.parse(pinned.created);
  const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
  const listed = async (query) => {
    const { status, body } = await svc(p1(), `/pins${query}`);
    assert.equal(status, 200, `${query}: ${JSON.stringify(body)}`);
    return body.results.some((r) => r.requestid === cid);
  };
  assert.ok(await listed(''), 'listed with no status named');
  assert.ok(await listed(`?cid=${cid}`));
  assert.ok(await listed('?name=holiday%20photos&match=iexact'));
  assert.ok(await listed('?name=Photos&match=partial'));
  assert.ok(!(await listed('?name=Photos')), 'exact match by default');
  assert.ok(await listed(`?meta=${encodeURIComponent('{"app":"test"}')}`));
  assert.ok(!(await listed(`?meta=${encodeURIComponent('{"app":"other"}')}`)));
  assert.ok(!(await listed('?status=queued,failed')));
  assert.ok(await listed(`?after=${iso(created - 2000)}`));
  assert.ok(!(await listed(`?before=${iso(created - 2000)}`)));
  const one = await svc(p1(), '/pins?limit=1&status=pinned');
  assert.equal(one.body.results.length, 1);
  assert.ok(one.body.count >= 1);

  // Content nobody has fails on every peer (pinned everywhere, with a 4 s pin timeout).
  const absent = absentCid();
  assert.equal((await svc(p1(), '/pins', json({ cid: absent }))).status, 202);
  await waitFor(
    'the pin of absent content to fail',
    async () => (await svc(p1(), `/pins/${absent}`)).body.status === 'failed',
    60_000,
  );
  assert.ok((await svc(p1(), '/pins?status=failed')).body.results.some((r) => r.requestid === absent));
  // With no status named, every status is listed, as Go v1.1.6 lists them.
  assert.ok((await svc(p1(), '/pins?limit=1000')).body.results.some((r) => r.requestid === absent));
  assert.equal((await svc(p1(), `/pins/${absent}`, { method: 'DELETE' })).status, 202);
  // The other peers drop their failed views once the removal reaches them.
  const gone = await waitFor('the removed pin to be gone', async () => {
    const got = await svc(p1(), `/pins/${absent}`);
    return got.status === 404 && got;
  });
  assert.deepEqual(gone.body, { error: { reason: 'pin not found' } });

  const next = await p1().ipfs.addContent('pinning service replacement');
  const replaced = await svc(p1(), `/pins/${cid}`, json({ cid: next, name: 'replaced' }));
  assert.equal(replaced.status, 202, JSON.stringify(replaced.body));
  assert.equal(replaced.body.requestid, next);
  assert.equal(await p1().allocation(cid), null, 'the replaced pin is gone');
  assert.equal((await p1().allocation(next)).name, 'replaced');
  assert.equal((await svc(p1(), `/pins/${next}`, { method: 'DELETE' })).status, 202);

  for (const [route, init, status, reason] of [
    ['/pins', { method: 'POST', body: 'not json' }, 400, /error decoding request body/],
    ['/pins', json({ cid: 'nope' }), 400, /error decoding Cid "nope"/],
    ['/pins', json({ cid, name: 'x'.repeat(256) }), 400, /over 255 characters/],
    [
      '/pins',
      json({ cid, meta: { big: 'x'.repeat(100_000) } }),
      413,
      /request body too large: a pin is at most 65536 bytes/,
    ],
    ['/pins?limit=0', {}, 400, /'limit'/],
    ['/pins?status=lost', {}, 400, /'status'/],
    ['/pins/nope', {}, 400, /error decoding requestID/],
    [`/pins/${absentCid()}`, { method: 'DELETE' }, 404, /pin not found/],
  ]) {
    const answer = await svc(p1(), route, init);
    assert.equal(answer.status, status, `${route}: ${JSON.stringify(answer.body)}`);
    assert.match(answer.body.error.reason, reason, route);
  }

  // Behind credentials: a bearer token from POST /token.
  const refused = await svc(p2(), '/pins');
  assert.equal(refused.status, 401);
  assert.deepEqual(refused.body, { error: { reason: 'Unauthorized' } });
  const basic = { authorization: `Basic ${Buffer.from('pinner:pw').toString('base64')}` };
  const {
    body: { token },
  } = await svc(p2(), '/token', { method: 'POST', headers: basic });
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal((await svc(p2(), '/pins', { headers: { authorization: `Bearer ${token}` } })).status, 200);
  assert.equal((await svc(p2(), '/pins', { headers: { authorization: `Bearer ${token}x` } })).status, 401);
});

test("DELETE /peers/{id} (ctl peers rm) re-allocates a stopped peer's pins", async () => {
  const cid = await p1().ipfs.addContent('on p3 only');
  const pin = JSON.parse((await p1().post(`/pins/${cid}?replication=1&user-allocations=${p3().id}`)).body);
  assert.deepEqual(pin.allocations, [p3().id]);
  await p3().stop();
  const removed = ctl(p1(), 'peers', 'rm', p3().id);
  assert.equal(removed.code, 0, removed.err);
  assert.match(removed.out, /removed: its pins were re-allocated/);
  const moved = await p1().allocation(cid);
  assert.equal(moved.allocations.length, 1);
  assert.notEqual(moved.allocations[0], p3().id);
  assert.ok(!(await p1().list('/peers')).some((p) => p.id === p3().id), 'p3 left the peerset');
  const holder = peers.find((p) => p.id === moved.allocations[0]);
  await waitFor(`${holder.name}'s daemon to pin the moved pin`, () => holder.ipfs.isPinned(cid));
  await waitFor('p2 to see the new allocation', async () => (await p2().allocation(cid))?.allocations[0] === holder.id);
});

/** `pinfold follow --dir dir ARGS`: its exit code, standard output and error. */
function follow(dir, ...args) {
  try {
    return {
      code: 0,
      out: execFileSync(pinfoldBin, ['follow', '--dir', dir, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    };
  } catch (error) {
    return { code: error.status, out: error.stdout, err: error.stderr };
  }
}

/** `follow` as a child process this process does not wait on: `{ code, out, err }`. */
function followAsync(dir, ...args) {
  return new Promise((resolve) => {
    execFile(
      pinfoldBin,
      ['follow', '--dir', dir, ...args],
      { encoding: 'utf8', timeout: 120_000 },
      (error, out, err) => {
        resolve({ code: error ? error.code : 0, out, err });
      },
    );
  });
}

/** Starts `pinfold follow NAME run` in `dir`, pinning on `ipfs`; `stop()` ends it. */
function runFollower(dir, name, ipfs) {
  const log = fs.openSync(path.join(runDir, `follower-${name}.log`), 'a');
  const child = spawn(pinfoldBin, ['follow', '--dir', dir, name, 'run'], {
    env: {
      ...process.env,
      CLUSTER_IPFSHTTP_NODEMULTIADDRESS: ipfs.multiaddr,
      CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY: '1s',
      CLUSTER_STATELESS_RETRYBASEDELAY: '1s',
    },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

test('pinfold follow runs a follower from the template a trusted peer serves', async () => {
  const template = await p1().get('/follow/template.json');
  assert.equal(template.status, 200, template.body);
  const config = JSON.parse(template.body);
  assert.equal(config.cluster.role, 'follower');
  assert.equal(config.cluster.secret, secret);
  assert.ok(
    config.cluster.peer_addresses.some((a) => a.endsWith(`/p2p/${p1().id}`)),
    template.body,
  );
  assert.equal(config.api.pinsvcapi.http_listen_multiaddress, null);
  assert.equal((await p2().get('/follow/template.json')).status, 404, 'served only where it is turned on');

  const dir = path.join(runDir, 'follow');
  const url = `${p1().api}/follow/template.json`;
  const early = await p1().ipfs.addContent('before the follower');
  assert.equal((await p1().post(`/pins/${early}?name=early`)).status, 200);

  const init = follow(dir, 'team', 'init', url);
  assert.equal(init.code, 0, init.err);
  assert.match(init.out, /team followed from .*template\.json/);
  assert.match(follow(dir).out, /^team \| .*template\.json \| stopped$/m);
  assert.match(
    follow(dir, 'team', 'list').err,
    /the follower of team is not running: start it with `pinfold follow team run`/,
  );

  const ipfs = await new Ipfs('api-follower').start();
  const follower = runFollower(dir, 'team', ipfs);
  try {
    await waitFor('the follower to run', () => /running: yes/.test(follow(dir, 'team', 'info').out));
    await waitFor('the follower to pin the pin made before it came', () => ipfs.isPinned(early), 60_000);
    const late = await p1().ipfs.addContent('after the follower');
    assert.equal((await p1().post(`/pins/${late}?name=late`)).status, 200);
    await waitFor('the follower to pin a new pin', () => ipfs.isPinned(late), 60_000);
    const listed = await waitFor('follow list to show both pinned', () => {
      const { out } = follow(dir, 'team', 'list');
      return [early, late].every((cid) => new RegExp(`^${cid} \\| \\w+ \\| PINNED$`, 'm').test(out)) && out;
    });
    assert.match(listed, new RegExp(`^${early} \\| early \\| PINNED$`, 'm'));
    const info = follow(dir, 'team', 'info').out;
    assert.match(info, /configuration from: .*template\.json/);
    assert.match(info, /pinset: height \d+, 1 heads, synced/);
    assert.match(info, /cluster peers seen: [34]/);
    assert.match(follow(dir).out, /^team \| .* \| running \(http:\/\/127\.0\.0\.1:\d+\)$/m);
    // A follower reads; it never writes.
    const api = `http://${fs.readFileSync(path.join(dir, 'team', 'api-address'), 'utf8').trim()}`;
    const write = await fetch(`${api}/pins/${late}`, { method: 'POST' });
    assert.equal(write.status, 403);
    assert.match(await write.text(), /this peer is a follower \(cluster\.role\) and does not write to the pinset/);
  } finally {
    await follower.stop();
  }
  assert.match(follow(dir, 'team', 'info').out, /running: no/);
  assert.ok(!fs.existsSync(path.join(dir, 'team', 'api-address')), 'the address file goes with the follower');
  for (const cid of [early]) await p1().post(`/pins/${cid}`, 'DELETE');
});

test('pinfold follow reads a DNSLink name through an IPFS gateway', async () => {
  const records = new Map();
  const doh = await startDoh(records);
  try {
    const ipfs = await new Ipfs('dnslink-follower', { gateway: true, doh }).start();
    const template = (await p1().get('/follow/template.json')).body;
    const form = new FormData();
    form.append('file', new Blob([template]));
    const added = await ipfs.rpc('add?cid-version=1', { body: form });
    assert.equal(added.status, 200, added.body);
    const cid = JSON.parse(added.body.trim().split('\n').at(-1)).Hash;
    records.set('_dnslink.team.cluster.test', [`dnslink=/ipfs/${cid}`]);

    const dir = path.join(runDir, 'follow-dnslink');
    const source = `${ipfs.gateway}/ipns/team.cluster.test`;
    const init = follow(dir, 'team', 'init', 'team.cluster.test', '--gateway', ipfs.gateway);
    assert.equal(init.code, 0, init.err);
    assert.ok(follow(dir).out.split('\n').includes(`team | ${source} | stopped`), follow(dir).out);
    const follower = runFollower(dir, 'team', ipfs);
    try {
      const info = await waitFor('the follower to run and sync', () => {
        const { out } = follow(dir, 'team', 'info');
        return /running: yes/.test(out) && /, synced/.test(out) && out;
      });
      assert.ok(info.includes(`configuration from: ${source}`), info);
      const kept = JSON.parse(fs.readFileSync(path.join(dir, 'team', 'template.json'), 'utf8'));
      assert.equal(kept.cluster.secret, secret);
    } finally {
      await follower.stop();
    }

    // A name with no DNSLink record: Kubo's gateway answers 500 at once, and `run` fails
    // naming the URL and the record DNSLink needs.
    assert.equal(follow(dir, 'lost', 'init', 'lost.cluster.test', '--gateway', ipfs.gateway).code, 0);
    // Run it without blocking this process: the DoH server Kubo asks lives here.
    const lost = await followAsync(dir, 'lost', 'run');
    assert.notEqual(lost.code, 0);
    assert.match(
      lost.err,
      /ipns\/lost\.cluster\.test answered 500.*could not resolve or fetch that name.*dnslink=\/ipfs\//s,
    );
  } finally {
    await doh.close();
  }
});

test('with ssl_cert_file and ssl_key_file the REST and Pinning Services APIs speak HTTPS only', async () => {
  const dir = path.join(runDir, 'tls');
  fs.mkdirSync(dir, { recursive: true });
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const ca = fs.readFileSync(cert);
  const peer = new Peer('api-tls', {
    ca,
    env: {
      CLUSTER_ROLE: 'relay',
      CLUSTER_RESTAPI_SSLCERTFILE: cert,
      CLUSTER_RESTAPI_SSLKEYFILE: key,
      CLUSTER_PINSVCAPI_SSLCERTFILE: cert,
      CLUSTER_PINSVCAPI_SSLKEYFILE: key,
    },
  });
  await peer.init(secret);
  await peer.start(['--bootstrap', p1().address]);
  try {
    const id = await httpsGet(`${peer.api}/id`, ca);
    assert.equal(id.status, 200);
    assert.equal(JSON.parse(id.body).id, peer.id);
    await assert.rejects(
      fetch(`http://127.0.0.1:${peer.apiPort}/id`, { signal: AbortSignal.timeout(5000) }),
      'no plain HTTP',
    );
    const pins = await httpsGet(`https://127.0.0.1:${peer.pinningPort}/pins`, ca);
    assert.equal(pins.status, 200, pins.body);
    assert.equal(typeof JSON.parse(pins.body).count, 'number');
    const viaCtl = execFileSync(
      pinfoldBin,
      ['ctl', '--host', `/ip4/127.0.0.1/tcp/${peer.apiPort}`, '--https', '--no-check-certificate', 'id'],
      { encoding: 'utf8' },
    );
    assert.match(viaCtl, new RegExp(`^${peer.id} \\| api-tls`));
    try {
      execFileSync(pinfoldBin, ['ctl', '--host', `https://127.0.0.1:${peer.apiPort}`, 'id'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      assert.fail('an unknown certificate was accepted');
    } catch (error) {
      assert.match(
        error.stderr.toString(),
        /the API's TLS certificate was refused .*; for a self-signed one pass --no-check-certificate/,
      );
    }
  } finally {
    await peer.stop();
  }
});
