// Following across implementations: `pinfold follow` runs a follower of a Go-only
// cluster from a Go `service.json` template (Go peers serve no snapshots, so it walks the
// CRDT DAG over bitswap from boxo), and Go's `ipfs-cluster-follow` follows a pinfold
// cluster from the template a pinfold peer serves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, runDir, sleep, stopAll, waitFor } from '../cluster/harness.mjs';
import { GoPeer, clusterCtl, goBin, stopGoPeers } from './go.mjs';

const secret = '5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d';
const children = [];
let server;

/** Starts `command` with `args`, its output in `log`; stopped in `after`. */
function start(command, args, env, log) {
  const out = fs.openSync(path.join(runDir, log), 'a');
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.push(child);
  return child;
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

before(async () => {
  server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const child of children) await stopChild(child);
  server.close();
  await stopGoPeers();
  await stopAll();
});

/** Serves `body` at `/name` on the test's HTTP server; its URL. */
function serve(name, body) {
  server.on('request', (req, res) => {
    if (req.url === `/${name}`) res.end(body);
  });
  return `http://127.0.0.1:${server.address().port}/${name}`;
}

test('pinfold follow follows a Go-only cluster from a Go service.json template, walking its DAG', async () => {
  const go = new GoPeer('follow-go', { ipfs: await new Ipfs('follow-go').start() });
  await go.init(secret);
  await go.start();
  const before = await go.ipfs.addContent('pinned before the follower');
  await clusterCtl(go.api, ['pin', 'add', '--no-status', '--name', 'before', before]);

  // The template an operator of a Go cluster publishes: Go's own service.json, pointed at
  // the cluster's peer, trusting it.
  const template = JSON.parse(fs.readFileSync(path.join(go.dir, 'service.json'), 'utf8'));
  template.cluster.peername = '';
  template.cluster.secret = secret;
  template.cluster.follower_mode = true;
  template.cluster.peer_addresses = [go.address];
  template.cluster.listen_multiaddress = ['/ip4/127.0.0.1/tcp/0'];
  template.consensus.crdt.trusted_peers = [go.id];
  template.api.restapi.http_listen_multiaddress = '/ip4/127.0.0.1/tcp/0';
  const url = serve('go-template.json', JSON.stringify(template));

  const dir = path.join(runDir, 'follow-go-cluster');
  execFileSync(pinfoldBin, ['follow', '--dir', dir, 'gocluster', 'init', url], { stdio: 'ignore' });
  const ipfs = await new Ipfs('follow-pinfold').start();
  const follower = start(
    pinfoldBin,
    ['follow', '--dir', dir, 'gocluster', 'run'],
    {
      CLUSTER_IPFSHTTP_NODEMULTIADDRESS: ipfs.multiaddr,
      CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY: '1s',
      CLUSTER_STATELESS_RETRYBASEDELAY: '1s',
    },
    'follow-go-cluster.log',
  );
  const list = () => execFileSync(pinfoldBin, ['follow', '--dir', dir, 'gocluster', 'list'], { encoding: 'utf8' });
  await waitFor('the follower to hold the pin made before it came', () => list().includes(before), 60_000);
  const later = await go.ipfs.addContent('pinned after the follower');
  await clusterCtl(go.api, ['pin', 'add', '--no-status', '--name', 'later', later]);
  await waitFor('the follower to hold a new pin', () => list().includes(later), 60_000);
  await waitFor(
    "the follower's Kubo to pin both",
    async () => (await ipfs.isPinned(before)) && ipfs.isPinned(later),
    90_000,
  );
  assert.match(list(), new RegExp(`^${later} \\| later \\| PINNED$`, 'm'));
  await stopChild(follower);
});

test('ipfs-cluster-follow follows a pinfold cluster from the template a pinfold peer serves', async () => {
  const ipfs = await new Ipfs('gofollow-pinfold').start();
  const peer = new Peer('served', { ipfs, env: { CLUSTER_RESTAPI_SERVEFOLLOWTEMPLATE: 'true' } });
  await peer.init(secret);
  await peer.start();
  const pinned = await ipfs.addContent('for the Go follower');
  assert.equal((await peer.post(`/pins/${pinned}?name=for-go`)).status, 200);

  const home = path.join(runDir, 'go-follow-home');
  const goIpfs = await new Ipfs('gofollow-go').start();
  const env = { IPFS_CLUSTER_PATH: home, CLUSTER_IPFSHTTP_NODEMULTIADDRESS: goIpfs.multiaddr };
  execFileSync(goBin('ipfs-cluster-follow'), ['pinfold', 'init', `${peer.api}/follow/template.json`], {
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  const follower = start(goBin('ipfs-cluster-follow'), ['pinfold', 'run'], env, 'go-follow.log');
  const list = () =>
    execFileSync(goBin('ipfs-cluster-follow'), ['pinfold', 'list'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
  await waitFor('ipfs-cluster-follow to list the pin', () => list().includes(pinned), 90_000);
  await waitFor("the Go follower's Kubo to pin it", () => goIpfs.isPinned(pinned), 90_000);
  await stopChild(follower);
});
