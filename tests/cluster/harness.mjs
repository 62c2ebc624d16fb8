// Test harness for multi-peer runs: real Kubo daemons (scripts/start-ipfs) and pinfold
// peers as processes on loopback, each with its own folder, ports and log. Every process
// started here is stopped by pid in `stopAll`.
import { execFileSync, spawn } from 'node:child_process';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, freeUdpPort } from '../support/net.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const scripts = path.join(root, 'scripts');

/** The pinfold binary: $PINFOLD_BIN, else the debug build in the cargo target dir. */
export const pinfoldBin =
  process.env.PINFOLD_BIN ??
  path.join(
    process.env.CARGO_TARGET_DIR ??
      path.join(process.env.PINFOLD_CACHE ?? path.join(os.homedir(), '.cache/pinfold'), 'target'),
    'debug/pinfold',
  );

export const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinfold-cluster-'));
const ipfsNames = new Set();
const peers = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 250 ms until it returns a truthy value; fails after `ms`. */
export async function waitFor(what, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/**
 * Waits until each of `peers` holds `count` valid `freespace` metrics (the allocator's),
 * one of each peer that pins.
 */
export async function awaitFreespace(peers, count = peers.length) {
  for (const peer of peers) {
    await waitFor(`${peer.name} to see ${count} freespace metrics`, async () => {
      const { body } = await peer.get('/monitor/metrics/freespace');
      return JSON.parse(body).filter((m) => m.valid).length === count;
    });
  }
}

/** A Kubo daemon on loopback. */
export class Ipfs {
  /**
   * `gateway` gives the daemon an HTTP gateway on a known port (`this.gateway`); `doh`
   * (`{ url, ca }`, from tests/support/dns.mjs) is the DNS-over-HTTPS server it resolves
   * DNSLink names through; `routing` sets Kubo's Routing.Type (`none` by default). `host`
   * (a host of tests/faults/netns.mjs) runs it in that network namespace, its API on the
   * host's management address and its swarm on the host's cluster address. `filestore`
   * enables Kubo's filestore (adds by reference); files it references live under
   * `this.dir`, the repository's parent folder.
   */
  constructor(name, { gateway = false, doh, routing, host, filestore = false } = {}) {
    this.name = `${name}-${process.pid}`;
    this.dir = path.join(runDir, 'ipfs', this.name);
    this.filestore = filestore;
    this.withGateway = gateway;
    this.doh = doh;
    this.routing = routing;
    this.host = host;
    this.apiIp = host ? host.managementIp : '127.0.0.1';
  }

  async start() {
    this.apiPort ??= await freePort();
    this.swarmPort ??= await freePort();
    if (this.withGateway) this.gatewayPort ??= await freePort();
    const env = { ...process.env, PINFOLD_RUN_DIR: runDir };
    if (this.gatewayPort) env.PINFOLD_IPFS_GATEWAY_PORT = String(this.gatewayPort);
    if (this.doh) Object.assign(env, { PINFOLD_IPFS_DOH: this.doh.url, PINFOLD_IPFS_DOH_CA: this.doh.ca });
    if (this.routing) env.PINFOLD_IPFS_ROUTING = this.routing;
    if (this.filestore) env.PINFOLD_IPFS_FILESTORE = 'true';
    const command = [path.join(scripts, 'start-ipfs'), this.name, String(this.apiPort), String(this.swarmPort)];
    if (this.host) {
      Object.assign(env, { PINFOLD_IPFS_API_IP: this.apiIp, PINFOLD_IPFS_SWARM_IP: this.host.clusterIp });
      command.unshift(...this.host.exec);
    }
    execFileSync(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'inherit'], env });
    ipfsNames.add(this.name);
    this.api = `http://${this.apiIp}:${this.apiPort}/api/v0`;
    if (this.gatewayPort) this.gateway = `http://${this.apiIp}:${this.gatewayPort}`;
    this.multiaddr = `/ip4/${this.apiIp}/tcp/${this.apiPort}`;
    return this;
  }

  stop({ purge = false } = {}) {
    execFileSync(path.join(scripts, 'stop-ipfs'), purge ? [this.name, '--purge'] : [this.name], {
      stdio: 'ignore',
      env: { ...process.env, PINFOLD_RUN_DIR: runDir },
    });
    if (purge) ipfsNames.delete(this.name);
  }

  async rpc(cmd, init = {}) {
    const sep = cmd.includes('?') ? '&' : '?';
    const res = await fetch(`${this.api}/${cmd}${sep}cid-base=base32`, {
      method: 'POST',
      signal: AbortSignal.timeout(30_000),
      ...init,
    });
    return { status: res.status, body: await res.text() };
  }

  /** Adds unique content (not pinned) and returns its CIDv1. */
  async addContent(label) {
    const form = new FormData();
    form.append('file', new Blob([`${label} ${Date.now()} ${Math.random()}`]));
    const { status, body } = await this.rpc('add?pin=false&cid-version=1', { body: form });
    if (status !== 200) throw new Error(`add failed: ${status} ${body}`);
    return JSON.parse(body.trim().split('\n').at(-1)).Hash;
  }

  async isPinned(cid) {
    const { status } = await this.rpc(`pin/ls?arg=${cid}&type=recursive`);
    return status === 200;
  }
}

/**
 * A cluster peer process (pinfold's or Go's) with a REST API at `this.api` and a log at
 * `this.log`; subclasses start `this.child` and may send `this.headers`.
 */
export class ClusterProcess {
  /** A peer named `name` next to `ipfs`, with its folder and log in the run folder. */
  constructor(name, { ipfs, env = {}, host } = {}) {
    this.name = name;
    this.ipfs = ipfs;
    this.host = host;
    this.swarmIp = host ? host.clusterIp : '127.0.0.1';
    this.apiIp = host ? host.managementIp : '127.0.0.1';
    this.dir = path.join(runDir, name);
    this.log = path.join(runDir, `${name}.log`);
    this.extraEnv = env;
  }

  /** Reads the peer id from the folder's `identity.json` (Go's format, which pinfold shares). */
  readIdentity() {
    this.id = JSON.parse(fs.readFileSync(path.join(this.dir, 'identity.json'), 'utf8')).id;
    this.address = `/ip4/${this.swarmIp}/tcp/${this.swarmPort}/p2p/${this.id}`;
  }

  /** Stops the process with `signal`, and with SIGKILL if it has not exited in 15 s. */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await Promise.race([exited, sleep(15_000)]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      // Its files (the store's lock) are free once it has exited.
      await exited;
    }
  }

  tail(lines = 40) {
    try {
      return fs.readFileSync(this.log, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async get(route) {
    const res = await fetch(`${this.api}${route}`, {
      headers: this.headers ?? {},
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, body: await res.text() };
  }

  async post(route, method = 'POST') {
    const res = await fetch(`${this.api}${route}`, {
      method,
      headers: this.headers ?? {},
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, body: await res.text() };
  }

  /** GET of a streamed list: one JSON object per line (204 and no body when empty). */
  async list(route) {
    const { status, body } = await this.get(route);
    if (status !== 200 && status !== 204) throw new Error(`${route}: ${status} ${body}`);
    return body
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }

  async allocation(cid) {
    const { status, body } = await this.get(`/allocations/${cid}`);
    return status === 200 ? JSON.parse(body) : null;
  }
}

/**
 * A pinfold peer process with its own folder; `listen` names its transports (or gives
 * whole multiaddrs, such as a relay's address ending in /p2p-circuit), and
 * `credentials` ('user:password') turns on the REST API's basic auth, which the helpers
 * then send; `logLevel` is the daemon's `--log-level` (debug for pinfold's own modules); `ca` (a PEM certificate) says the REST API speaks HTTPS with that certificate
 * (the test sets the key and certificate files in `env`). `host` (a host of
 * tests/faults/netns.mjs) runs it in that network namespace, listening on the host's
 * cluster address, its APIs on the host's management address. `initArgs` are given to
 * `service init` (such as `--consensus raft`).
 */
export class Peer extends ClusterProcess {
  constructor(
    name,
    {
      ipfs,
      env = {},
      listen = ['tcp'],
      credentials,
      ca,
      logLevel = 'info,pinfold_native=debug',
      host,
      initArgs = [],
    } = {},
  ) {
    super(name, { ipfs, env, host });
    this.initArgs = initArgs;
    this.ca = ca;
    this.logLevel = logLevel;
    this.transports = listen;
    this.credentials = credentials;
    this.headers = credentials ? { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } : {};
  }

  async init(secret) {
    this.swarmPort ??= await freePort();
    this.webrtcPort ??= await freeUdpPort();
    this.wsPort ??= await freePort();
    this.apiPort ??= await freePort();
    this.pinningPort ??= await freePort();
    this.proxyPort ??= await freePort();
    this.secret = secret;
    const init = ['service', '--config', this.dir, 'init', '--peername', this.name, '--force', ...this.initArgs];
    execFileSync(pinfoldBin, init, {
      env: this.env(),
      stdio: 'ignore',
    });
    this.readIdentity();
    this.api = `${this.ca ? 'https' : 'http'}://${this.apiIp}:${this.apiPort}`;
    this.pinningApi = `http://${this.apiIp}:${this.pinningPort}`;
    this.proxy = `/ip4/${this.apiIp}/tcp/${this.proxyPort}`;
    return this;
  }

  env() {
    return {
      ...process.env,
      CLUSTER_SECRET: this.secret,
      CLUSTER_PEERNAME: this.name,
      CLUSTER_LISTENMULTIADDRESS: this.transports
        .map(
          (t) =>
            ({
              tcp: `/ip4/${this.swarmIp}/tcp/${this.swarmPort}`,
              webrtc: `/ip4/${this.swarmIp}/udp/${this.webrtcPort}/webrtc-direct`,
              ws: `/ip4/${this.swarmIp}/tcp/${this.wsPort}/ws`,
            })[t] ?? t,
        )
        .join(','),
      CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.apiPort}`,
      CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.pinningPort}`,
      CLUSTER_IPFSPROXY_LISTENMULTIADDRESS: `/ip4/${this.apiIp}/tcp/${this.proxyPort}`,
      CLUSTER_IPFSHTTP_NODEMULTIADDRESS: this.ipfs ? this.ipfs.multiaddr : '/ip4/127.0.0.1/tcp/1',
      CLUSTER_MONITORPINGINTERVAL: '1s',
      // Peers of different tests on this host must not find each other (a test turns it on).
      CLUSTER_MDNSINTERVAL: '0s',
      CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY: '1s',
      CLUSTER_STATELESS_RETRYBASEDELAY: '1s',
      CLUSTER_CRDT_REBROADCASTINTERVAL: '2s',
      ...(this.credentials ? { CLUSTER_RESTAPI_BASICAUTHCREDENTIALS: this.credentials } : {}),
      ...this.extraEnv,
    };
  }

  /** Starts the daemon and waits (at most `timeoutMs`) for its REST API. */
  async start(args = [], timeoutMs = 20_000) {
    const out = fs.openSync(this.log, 'a');
    const command = [pinfoldBin, 'service', '--config', this.dir, 'daemon', '--log-level', this.logLevel, ...args];
    // `ip netns exec` enters the namespace and becomes the daemon: the pid is pinfold's.
    if (this.host) command.unshift(...this.host.exec);
    this.child = spawn(command[0], command.slice(1), { env: this.env(), stdio: ['ignore', out, out] });
    fs.closeSync(out);
    peers.add(this);
    const child = this.child;
    try {
      await waitFor(
        `${this.name}'s REST API`,
        async () => {
          if (child.exitCode !== null) throw new Error(`${this.name} exited with ${child.exitCode}`);
          if (this.ca) return (await httpsGet(`${this.api}/version`, this.ca)).status === 200;
          return (await fetch(`${this.api}/version`, { headers: this.headers, signal: AbortSignal.timeout(2000) })).ok;
        },
        timeoutMs,
      );
    } catch (error) {
      error.message += `\n${this.name}'s log ends:\n${this.tail()}`;
      throw error;
    }
    return this;
  }

  /** Stops the daemon with `signal` and waits for it to exit. */
  async stop(signal = 'SIGTERM') {
    await super.stop(signal);
    peers.delete(this);
  }

  /** The address of a transport it listens on (`webrtc` with its certificate hash), from `/id`. */
  async addressOf(transport) {
    const id = JSON.parse((await this.get('/id')).body);
    const marker = { webrtc: '/webrtc-direct/', ws: '/ws/', tcp: '/tcp/' }[transport];
    const address = id.addresses.find((a) => a.includes(marker) && (transport !== 'tcp' || !a.includes('/ws/')));
    if (!address) throw new Error(`${this.name} has no ${transport} address: ${id.addresses}`);
    return address;
  }
}

/** A peer's `/state/raft` (Raft consensus): leader, is_leader, term, peers. */
export async function raftState(peer) {
  return JSON.parse((await peer.get('/state/raft')).body);
}

/** The peer of `group` that every peer of `group` names as its Raft leader. */
export function agreedRaftLeader(group, ms = 30_000) {
  return waitFor(
    `${group.map((p) => p.name).join(', ')} to agree on a Raft leader`,
    async () => {
      const states = await Promise.all(group.map(raftState));
      const leader = states[0].leader;
      return leader && states.every((s) => s.leader === leader) && group.find((p) => p.id === leader);
    },
    ms,
  );
}

/** GET over HTTPS, trusting only `ca`: the status and body. */
export function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer within 5 s`)));
    request.on('error', reject);
  });
}

/** Stops every peer and daemon this harness started, and removes their files. */
export async function stopAll() {
  for (const peer of [...peers]) await peer.stop();
  for (const name of ipfsNames) {
    execFileSync(path.join(scripts, 'stop-ipfs'), [name, '--purge'], {
      stdio: 'ignore',
      env: { ...process.env, PINFOLD_RUN_DIR: runDir },
    });
  }
  if (!process.env.PINFOLD_KEEP_RUN) fs.rmSync(runDir, { recursive: true, force: true });
}
