// pinfold's JavaScript API: a thin wrapper over the WebAssembly build of pinfold: the
// cluster codecs and the light follower.
// Works in browsers, Workers, Deno and Node >= 20; the module loads on first use.
import * as wasm from '../dist/pinfold_wasm.js';
import { ready, wasmMemoryBytes } from './load.js';

export { ready };
export {
  follow,
  Follower,
  FollowerBase,
  PinfoldError,
  WrongSecretError,
  UnreachableError,
  InvalidOptionsError,
  ClosedError,
  StorageError,
  UntrustedDataError,
} from './follower.js';
export { spawnWorker, WorkerFollower } from './spawn.js';

/** The pubsub topic that carries a cluster's CRDT heads (default cluster name: "ipfs-cluster"). */
export async function clusterTopic(clusterName) {
  await ready();
  return wasm.clusterTopic(clusterName);
}

/**
 * Validates a cluster secret, given as 64 hex characters or as a swarm.key file's text,
 * and returns it as 64 lowercase hex characters. Throws an Error saying what is wrong.
 */
export async function normalizeSecret(secret) {
  await ready();
  return wasm.normalizeClusterSecret(secret);
}

/** Decodes a CRDT state value (protobuf api.pb.Pin) into ipfs-cluster's pin JSON object. */
export async function decodePin(stateValue) {
  await ready();
  return JSON.parse(wasm.pinJsonFromStateValue(stateValue));
}

/** Decodes a `monitor.metrics` pubsub message (msgpack api.Metric) into a metric object. */
export async function decodeMetric(message) {
  await ready();
  return JSON.parse(wasm.metricJsonFromMsgpack(message));
}

/** Memory the module uses on this thread: `{ wasmBytes }`, its WebAssembly memory (where a
 * follower's replica lives), which only grows. */
export async function memoryUsage() {
  await ready();
  return { wasmBytes: wasmMemoryBytes() };
}
