// mDNS discovery on one LAN: two pinfold peers and a Go ipfs-cluster v1.1.6 peer, each on a
// host of its own (network namespaces on one bridge, tests/faults/netns.mjs), started with
// no bootstrap address and no peerstore, find each other over mDNS (Go's service,
// `_ipfs-cluster-discovery._udp`), form one cluster, and a pin written at one pinfold
// peer reaches the Go peer. Each host's link delays what it sends by 20 ms, so that peers
// that find each other dial each other at once and keep two connections: gossip must
// still flow both ways (see core/src/net/gossip.rs). Runs as root.
// Run: node --test tests/interop/ (scripts/test does), after scripts/setup and a build.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ipfs, Peer, pinfoldBin, stopAll, waitFor } from '../cluster/harness.mjs';
import { Network } from '../faults/netns.mjs';
import { GoPeer, stopGoPeers } from './go.mjs';

const network = new Network(3);

after(async () => {
  await stopGoPeers();
  await stopAll();
  for (const host of network.hosts) host.restore();
  network.down();
});

test('pinfold and Go peers on one LAN find each other over mDNS and form one cluster', async () => {
  network.up();
  const [first, second, third] = network.hosts;
  const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
  // Each with its Kubo: a Go peer sends no ping while its IPFS daemon is unreachable.
  const kubo = (name, host) => new Ipfs(name, { host }).start();
  const pf1 = new Peer('mdns-pf1', { host: first, ipfs: await kubo('mdns-pf1', first) });
  const pf2 = new Peer('mdns-pf2', { host: second, ipfs: await kubo('mdns-pf2', second) });
  const go = new GoPeer('mdns-go', { host: third, ipfs: await kubo('mdns-go', third) });
  const everyone = [pf1, pf2, go];
  for (const peer of everyone) await peer.init(secret);
  const trusted = everyone.map((p) => p.id).join(',');
  for (const peer of everyone) Object.assign(peer.extraEnv, { CLUSTER_CRDT_TRUSTEDPEERS: trusted });
  // The harness turns mDNS off; on here, as operators run it (Go: on/off only).
  for (const peer of [pf1, pf2]) peer.extraEnv.CLUSTER_MDNSINTERVAL = '2s';
  go.extraEnv.CLUSTER_MDNSINTERVAL = '10s';

  for (const host of network.hosts) await host.delayEgress(20);
  await go.start();
  await pf1.start();
  await pf2.start();

  const names = new Map(everyone.map((p) => [p.id, p.name]));
  await waitFor(
    'each peer to list the other two',
    async () => {
      const lists = await Promise.all(everyone.map((p) => p.list('/peers')));
      if (lists.every((ids) => ids.length === 3 && ids.every((id) => !id.error))) return true;
      const seen = lists.map(
        (ids, i) => `${everyone[i].name} sees ${ids.map((id) => names.get(id.id) ?? id.id).join(', ')}`,
      );
      throw new Error(seen.join('; '));
    },
    60_000,
  );
  for (const peer of [pf1, pf2]) {
    const log = peer.tail(400);
    assert.match(log, /mDNS discovery on/, `${peer.name} ran mDNS`);
  }

  const cid = await pf1.ipfs.addContent('found over mdns');
  const res = await pf1.post(`/pins/${cid}?name=mdns`);
  assert.equal(res.status, 200, res.body);
  const pin = await waitFor(`the pin at ${go.name}`, () => go.allocation(cid), 60_000);
  assert.equal(pin.name, 'mdns');
});
