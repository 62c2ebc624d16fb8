// pinfold's JavaScript API, whichever build an entry loads: a thin wrapper over the
// WebAssembly build of pinfold: the cluster codecs and the light follower. The module
// loads on first use.
import type { ErrorCode } from './errors.js';
import { ready as load, wasmMemoryBytes } from './load.js';
import type { Metric, Pin } from './types.js';

/** Loads the WebAssembly module now rather than on first use. */
export async function ready(): Promise<void> {
  await load();
}
export {
  PinfoldError,
  WrongSecretError,
  UnreachableError,
  InvalidOptionsError,
  ClosedError,
  StorageError,
  UntrustedDataError,
  ERROR_CLASSES,
  type ErrorCode,
} from './errors.js';
export { follow, Follower, FollowerBase, type EventType } from './follower.js';
export { spawnWorker, WorkerFollower } from './spawn.js';
export type * from './types.js';

/** The pubsub topic that carries a cluster's CRDT heads (default cluster name: "ipfs-cluster"). */
export async function clusterTopic(clusterName?: string): Promise<string> {
  const wasm = await load();
  return wasm.clusterTopic(clusterName);
}

/**
 * Validates a cluster secret, given as 64 hex characters or as a swarm.key file's text,
 * and returns it as 64 lowercase hex characters. Throws an Error saying what is wrong.
 */
export async function normalizeSecret(secret: string): Promise<string> {
  const wasm = await load();
  return wasm.normalizeClusterSecret(secret);
}

/** Decodes a CRDT state value (protobuf api.pb.Pin) into ipfs-cluster's pin JSON object. */
export async function decodePin(stateValue: Uint8Array): Promise<Pin> {
  const wasm = await load();
  return JSON.parse(wasm.pinJsonFromStateValue(stateValue)) as Pin;
}

/** Decodes a `monitor.metrics` pubsub message (msgpack api.Metric) into a metric object. */
export async function decodeMetric(message: Uint8Array): Promise<Metric> {
  const wasm = await load();
  return JSON.parse(wasm.metricJsonFromMsgpack(message)) as Metric;
}

/** Every error code the follower gives, as the WebAssembly module lists them. */
export async function errorCodes(): Promise<ErrorCode[]> {
  const wasm = await load();
  const codes: ErrorCode[] = [];
  for (let code; (code = wasm.errorCodeAt(codes.length)) !== undefined;) codes.push(code);
  return codes;
}

/** Memory the module uses on this thread: `{ wasmBytes }`, its WebAssembly memory (where a
 * follower's replica lives), which only grows. */
export async function memoryUsage(): Promise<{ wasmBytes: number }> {
  await load();
  return { wasmBytes: wasmMemoryBytes() };
}
