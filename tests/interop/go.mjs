// Go ipfs-cluster v1.1.6 peers as processes beside pinfold's (tests/cluster/harness.mjs):
// `ipfs-cluster-service`, `ipfs-cluster-ctl` and `ipfs-cluster-follow` as scripts/setup
// builds them into $PINFOLD_CACHE/go/bin, each peer with its own folder, ports, Kubo and
// log. Every process started here is stopped by pid in `stopGoPeers`.
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ClusterProcess, waitFor } from '../cluster/harness.mjs';
import { freePort } from '../support/net.mjs';

const cache = process.env.PINFOLD_CACHE ?? path.join(os.homedir(), '.cache/pinfold');
export const goBin = (name) => path.join(cache, 'go/bin', name);
const goPeers = new Set();

/**
 * `ipfs-cluster-ctl` with `args` against the REST API at `api` (`http://127.0.0.1:port`):
 * its standard output; a non-zero exit throws with its standard error.
 */
export async function clusterCtl(api, args, { encoding = 'text', timeout = 60_000 } = {}) {
  const { port } = new URL(api);
  try {
    const { stdout } = await promisify(execFile)(
      goBin('ipfs-cluster-ctl'),
      ['--host', `/ip4/127.0.0.1/tcp/${port}`, '--enc', encoding, ...args],
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

/** A Go ipfs-cluster peer (`ipfs-cluster-service`, CRDT consensus) next to its Kubo. */
export class GoPeer extends ClusterProcess {
  /** `ipfs-cluster-service init --consensus crdt`, as an operator runs it. */
  async init(secret) {
    this.swarmPort ??= await freePort();
    this.wsPort ??= await freePort();
    this.apiPort ??= await freePort();
    this.pinningPort ??= await freePort();
    this.proxyPort ??= await freePort();
    this.secret = secret;
    execFileSync(goBin('ipfs-cluster-service'), ['--config', this.dir, 'init', '--consensus', 'crdt', '--force'], {
      env: this.env(),
      stdio: 'ignore',
    });
    this.readIdentity();
    this.api = `http://127.0.0.1:${this.apiPort}`;
    return this;
  }

  /** Go's environment overrides, the same names pinfold reads. */
  env() {
    return {
      ...process.env,
      CLUSTER_SECRET: this.secret,
      CLUSTER_PEERNAME: this.name,
      CLUSTER_LISTENMULTIADDRESS: `/ip4/127.0.0.1/tcp/${this.swarmPort},/ip4/127.0.0.1/tcp/${this.wsPort}/ws`,
      CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS: `/ip4/127.0.0.1/tcp/${this.apiPort}`,
      CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS: `/ip4/127.0.0.1/tcp/${this.pinningPort}`,
      CLUSTER_IPFSPROXY_LISTENMULTIADDRESS: `/ip4/127.0.0.1/tcp/${this.proxyPort}`,
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
    this.child = spawn(goBin('ipfs-cluster-service'), ['--config', this.dir, 'daemon', ...args], {
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
