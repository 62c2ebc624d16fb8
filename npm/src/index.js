// pinfold's JavaScript API: a thin wrapper over the WebAssembly build of pinfold-core.
// Works in browsers, Workers, Deno and Node >= 20; the module loads on first use.
import init, * as wasm from '../dist/pinfold_wasm.js';

const wasmUrl = new URL('../dist/pinfold_wasm_bg.wasm', import.meta.url);
let loading;

/** Loads the WebAssembly module (once). Every other function awaits it. */
export function ready() {
  loading ??= (async () => {
    if (globalThis.process?.versions?.node) {
      // Node's fetch cannot read file: URLs.
      const { readFile } = await import('node:fs/promises');
      await init({ module_or_path: await readFile(wasmUrl) });
    } else {
      await init({ module_or_path: wasmUrl });
    }
  })();
  return loading;
}

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
