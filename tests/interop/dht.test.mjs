// Go peers that join a cluster through a pinfold peer find each other through it. A Go
// peer that cannot dial a peer of the peerset asks its DHT for the peer's addresses, and a
// Go peer that joined through pinfold has only pinfold in its DHT tables. Go's DHT ignores
// loopback addresses, so the three peers run on hosts of their own (network namespaces
// with private addresses, tests/faults/netns.mjs); mDNS is off. Runs as root.
// Run: node --test tests/interop/ (scripts/test does), after scripts/setup and a build.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ipfs, Peer, pinfoldBin, stopAll, waitFor } from '../cluster/harness.mjs';
import { Network } from '../faults/netns.mjs';
import { freePort } from '../support/net.mjs';
import { GoPeer, clusterCtl, jsonValues, stopGoPeers } from './go.mjs';

const network = new Network(3);

after(async () => {
  await stopGoPeers();
  await stopAll();
  network.down();
});

/** The requests pinfold's DHT tables answered, from its Prometheus endpoint. */
async function dhtRequestsAnswered(metrics) {
  const body = await (await fetch(metrics, { signal: AbortSignal.timeout(10_000) })).text();
  return body
    .split('\n')
    .filter((line) => line.startsWith('libp2p_kad_inbound_requests_total'))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}

test('Go peers that joined through a pinfold peer find each other through its DHT tables', async () => {
  network.up();
  const [first, second, third] = network.hosts;
  const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();
  // Each with its Kubo: a Go peer sends no ping while its IPFS daemon is unreachable.
  const kubo = (name, host) => new Ipfs(name, { host }).start();
  const pf = new Peer('dht-pf', { host: first, ipfs: await kubo('dht-pf', first) });
  const go1 = new GoPeer('dht-go1', { host: second, ipfs: await kubo('dht-go1', second) });
  const go2 = new GoPeer('dht-go2', { host: third, ipfs: await kubo('dht-go2', third) });
  const everyone = [pf, go1, go2];
  for (const peer of everyone) await peer.init(secret);
  const trusted = everyone.map((p) => p.id).join(',');
  for (const peer of everyone) peer.extraEnv.CLUSTER_CRDT_TRUSTEDPEERS = trusted;
  const metricsPort = await freePort();
  Object.assign(pf.extraEnv, {
    CLUSTER_METRICS_ENABLESTATS: 'true',
    CLUSTER_METRICS_PROMETHEUSENDPOINT: `/ip4/${first.managementIp}/tcp/${metricsPort}`,
  });

  await pf.start();
  await go1.start(['--bootstrap', pf.address]);
  await go2.start(['--bootstrap', pf.address]);

  let seen = '';
  await waitFor(
    'each Go peer to reach the other',
    async () => {
      const views = await Promise.all(
        [go1, go2].map(async (peer) => jsonValues(await clusterCtl(peer.api, ['peers', 'ls'], { encoding: 'json' }))),
      );
      seen = views
        .map(
          (ids, i) =>
            `${[go1, go2][i].name} sees ${ids.map((id) => `${id.peername || id.id}${id.error ? ` (${id.error})` : ''}`).join(', ')}`,
        )
        .join('; ');
      const reaches = (ids, peer) => ids.some((id) => id.id === peer.id && !id.error);
      return reaches(views[0], go2) && reaches(views[1], go1);
    },
    60_000,
  ).catch((error) => {
    // Without pinfold's DHT tables, each sees the other with Go's "failed to find any
    // peer in table".
    throw new Error(`${error.message}: ${seen}`);
  });
  console.log(`peers ls: ${seen}`);

  // Each Go peer holds the other's address on the cluster link: it dialled it directly.
  for (const [peer, other] of [
    [go1, go2],
    [go2, go1],
  ]) {
    const [id] = jsonValues(await clusterCtl(peer.api, ['id'], { encoding: 'json' }));
    assert.ok(
      id.cluster_peers_addresses.some((a) => a.includes(other.swarmIp) && a.includes(other.id)),
      `${peer.name} knows ${other.name} at ${other.swarmIp}: ${id.cluster_peers_addresses.join(', ')}`,
    );
  }
  const answered = await dhtRequestsAnswered(`http://${first.managementIp}:${metricsPort}/metrics`);
  console.log(`pinfold's DHT tables answered ${answered} requests`);
  assert.ok(answered > 0, "the Go peers asked pinfold's DHT tables");
});
