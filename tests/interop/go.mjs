// Go ipfs-cluster v1.1.6 peers as processes beside pinfold's (tests/cluster/harness.mjs):
// `ipfs-cluster-service`, `ipfs-cluster-ctl` and `ipfs-cluster-follow` as scripts/setup
// builds them into $PINFOLD_CACHE/go/bin, each peer with its own folder, ports, Kubo and
// log. Every process started here is stopped by pid in `stopGoPeers`.
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ClusterProcess, Ipfs, Peer, waitFor } from '../cluster/harness.mjs';
import { freePort } from '../support/net.mjs';

const cache = process.env.PINFOLD_CACHE ?? path.join(os.homedir(), '.cache/pinfold');
export const goBin = (name) => path.join(cache, 'go/bin', name);
const goPeers = new Set();

/**
 * `ipfs-cluster-ctl` with `args` against the REST API at `api` (`http://<ip>:<port>`):
 * its standard output; a non-zero exit throws with its standard error.
 */
export async function clusterCtl(api, args, { encoding = 'text', timeout = 60_000 } = {}) {
  const { hostname, port } = new URL(api);
  try {
    const { stdout } = await promisify(execFile)(
      goBin('ipfs-cluster-ctl'),
      ['--host', `/ip4/${hostname}/tcp/${port}`, '--enc', encoding, ...args],
      { timeout, maxBuffer: 64 << 20 },
    );
    return stdout;
  } catch (error) {
    throw new Error(`ipfs-cluster-ctl ${args.join(' ')}: ${error.stdout ?? ''}${error.stderr ?? ''}${error.message}`);
  }
}

/**
 * The JSON values of `ipfs-cluster-ctl --enc json` output, which writes one indented value
 * after another for lists.
 */
export function jsonValues(text) {
  const values = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth++ === 0) start = i;
    } else if ((c === '}' || c === ']') && --depth === 0) {
      values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}

/**
 * A Go ipfs-cluster peer (`ipfs-cluster-service`, CRDT consensus unless told) next to its Kubo; `host`
 * (a host of tests/faults/netns.mjs) runs it in that network namespace, as `Peer` does.
 */
export class GoPeer extends ClusterProcess {
  /** `ipfs-cluster-service init --consensus crdt` (or `consensus`), as an operator runs it. */
  async init(secret, { consensus = 'crdt' } = {}) {
    this.swarmPort ??= await freePort();
    this.wsPort ??= await freePort();
    this.apiPort ??= await freePort();
    this.pinningPort ??= await freePort();
    this.proxyPort ??= await freePort();
    this.secret = secret;
    execFileSync(goBin('ipfs-cluster-service'), ['--config', this.dir, 'init', '--consensus', consensus, '--force'], {
      env: this.env(),
      stdio: 'ignore',
    });
    this.readIdentity();
    this.api = `http://${this.apiIp}:${this.apiPort}`;
    return this;
  }

  /** Go's environment overrides, the same names pinfold reads. */
  env() {
    return {
      ...process.env,
      CLUSTER_SECRET: this.secret,
      CLUSTER_PEERNAME: this.name,
      CLUSTER_LISTENMULTIADDRESS: `/ip4/${this.swarmIp}/tcp/${this.swarmPort},/ip4/${this.swarmIp}/tcp/${this.wsPort}/ws`,
      CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.apiPort}`,
      CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.pinningPort}`,
      CLUSTER_IPFSPROXY_LISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.proxyPort}`,
      CLUSTER_IPFSPROXY_NODEMULTIADDRESS: this.ipfs ? this.ipfs.multiaddr : '/ip4/127.0.0.1/tcp/1',
      CLUSTER_IPFSHTTP_NODEMULTIADDRESS: this.ipfs ? this.ipfs.multiaddr : '/ip4/127.0.0.1/tcp/1',
      CLUSTER_MONITORPINGINTERVAL: '2s',
      CLUSTER_DISK_METRICTTL: '4s',
      CLUSTER_TAGS_METRICTTL: '4s',
      CLUSTER_PINQUEUE_METRICTTL: '4s',
      CLUSTER_PEERWATCHINTERVAL: '2s',
      CLUSTER_MDNSINTERVAL: '0s',
      CLUSTER_CRDT_REBROADCASTINTERVAL: '2s',
      IPFS_CLUSTER_LOG_LEVEL: 'info',
      ...this.extraEnv,
    };
  }

  /** Starts `ipfs-cluster-service daemon` and waits for its REST API. */
  async start(args = []) {
    const out = fs.openSync(this.log, 'a');
    // `ip netns exec` enters the host's namespace and becomes the daemon: the pid is Go's.
    const command = [
      ...(this.host?.exec ?? []),
      goBin('ipfs-cluster-service'),
      '--config',
      this.dir,
      'daemon',
      ...args,
    ];
    this.child = spawn(command[0], command.slice(1), {
      env: this.env(),
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    goPeers.add(this);
    const child = this.child;
    await waitFor(
      `${this.name}'s REST API`,
      async () => {
        if (child.exitCode !== null) throw new Error(`${this.name} exited with ${child.exitCode}:\n${this.tail()}`);
        // Any answer will do: behind basic auth it is 401.
        return (await fetch(`${this.api}/id`, { signal: AbortSignal.timeout(2000) })).status > 0;
      },
      60_000,
    );
    return this;
  }

  async stop(signal = 'SIGTERM') {
    await super.stop(signal);
    goPeers.delete(this);
  }
}

/** Stops every Go peer started here. */
export async function stopGoPeers() {
  for (const peer of [...goPeers]) await peer.stop();
}

/**
 * A mixed CRDT cluster: Go peers `go1`, `go2` and pinfold peers `pf1`, `pf2`, each with its
 * own Kubo, one `secret`, the four trusted, `env` added to every peer's environment. It
 * returns once each peer reaches the other three.
 */
export async function startMixedCluster(secret, env = {}) {
  const go1 = new GoPeer('go1', { ipfs: await new Ipfs('go1').start() });
  const go2 = new GoPeer('go2', { ipfs: await new Ipfs('go2').start() });
  const pf1 = new Peer('pf1', { ipfs: await new Ipfs('pf1').start() });
  const pf2 = new Peer('pf2', { ipfs: await new Ipfs('pf2').start() });
  const everyone = () => [go1, go2, pf1, pf2];
  for (const peer of everyone()) await peer.init(secret);
  const trusted = everyone()
    .map((p) => p.id)
    .join(',');
  for (const peer of everyone()) Object.assign(peer.extraEnv, { CLUSTER_CRDT_TRUSTEDPEERS: trusted }, env);
  // Informer metrics every couple of seconds, on both sides, so that allocations see
  // every peer soon after start.
  for (const peer of [pf1, pf2]) {
    Object.assign(peer.extraEnv, {
      CLUSTER_DISK_METRICTTL: '4s',
      CLUSTER_TAGS_METRICTTL: '4s',
      CLUSTER_PINQUEUE_METRICTTL: '4s',
    });
  }
  await go1.start();
  await pf1.start(['--bootstrap', go1.address]);
  // go2 joins through pf1 (Go's Join calls Cluster.PeerAdd on it, which asks go2's
  // Cluster.ID back) and through go1: Go peers find each other through their DHT, and
  // Go's DHT ignores loopback addresses (tests/interop/dht.test.mjs finds them through
  // pinfold's DHT tables, between hosts). pf2 knows only pf1: it learns the Go peers'
  // addresses from the peers it is connected to (Cluster.ID's cluster_peers_addresses).
  await Promise.all([
    go2.start(['--bootstrap', `${pf1.address},${go1.address}`]),
    pf2.start(['--bootstrap', pf1.address]),
  ]);
  await waitFor(
    'every peer to reach the other three',
    async () => {
      const lists = await Promise.all(everyone().map((p) => p.list('/peers')));
      if (lists.every((ids) => ids.length === 4 && ids.every((id) => !id.error))) return true;
      // Thrown so that a timeout says who could not reach whom.
      const seen = lists.map(
        (ids, i) =>
          `${everyone()[i].name} sees ${ids.map((id) => `${id.peername || id.id}${id.error ? ` (${id.error})` : ''}`).join(', ')}`,
      );
      throw new Error(seen.join('; '));
    },
    90_000,
  );
  return { go1, go2, pf1, pf2 };
}
