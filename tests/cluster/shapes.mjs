// The JSON shapes of ipfs-cluster v1.1.6's REST API (the json tags of its api package's
// types), as field name -> type, for checking that pinfold answers in them. Types:
// 'string', 'number', 'boolean', 'object', 'array', 'string|null' (a CID or time Go may
// leave out as null); a type ending in '?' is a field Go leaves out when empty (omitempty).
import assert from 'node:assert/strict';

export const shapes = {
  // api.ID
  id: {
    id: 'string',
    addresses: 'array',
    cluster_peers: 'array',
    cluster_peers_addresses: 'array',
    version: 'string',
    commit: 'string',
    rpc_protocol_version: 'string',
    error: 'string',
    ipfs: 'object',
    peername: 'string',
  },
  ipfsId: { id: 'string?', addresses: 'array', error: 'string' },
  // /peers lines
  peer: { id: 'string', peername: 'string', error: 'string' },
  // api.Pin
  pin: {
    cid: 'string',
    type: 'string',
    allocations: 'array',
    max_depth: 'number',
    reference: 'string|null',
    replication_factor_min: 'number',
    replication_factor_max: 'number',
    name: 'string',
    mode: 'string',
    shard_size: 'number',
    user_allocations: 'array|null',
    expire_at: 'string',
    metadata: 'object|null',
    pin_update: 'string|null',
    origins: 'array',
    timestamp: 'string',
  },
  // api.GlobalPinInfo
  globalPinInfo: {
    cid: 'string',
    name: 'string',
    allocations: 'array',
    origins: 'array',
    created: 'string',
    metadata: 'object|null',
    peer_map: 'object',
  },
  // api.PinInfoShort (the values of peer_map)
  pinInfoShort: {
    peername: 'string',
    status: 'string',
    timestamp: 'string',
    error: 'string',
    attempt_count: 'number',
    priority_pin: 'boolean',
  },
  // api.Metric
  metric: {
    name: 'string',
    peer: 'string',
    value: 'string',
    expire: 'number',
    valid: 'boolean',
    weight: 'number',
    partitionable: 'boolean',
    received_at: 'number',
  },
  // api.AddedOutput
  added: { name: 'string', cid: 'string', bytes: 'number?', size: 'number?', allocations: 'array?' },
  // api.ConnectGraph
  graph: {
    cluster_id: 'string',
    id_to_peername: 'object',
    ipfs_links: 'object',
    cluster_links: 'object',
    cluster_trust_links: 'object',
    cluster_to_ipfs: 'object',
  },
  // api.Version
  version: { version: 'string' },
  // api.Error
  error: { code: 'number', message: 'string' },
};

function typeOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Fails unless `value` has every field of `shape`, each of its type. */
export function assertShape(value, shape, what) {
  assert.equal(typeOf(value), 'object', `${what} is an object`);
  for (const [key, declared] of Object.entries(shape)) {
    const optional = declared.endsWith('?');
    const type = declared.replace(/\?$/, '');
    if (optional && !(key in value)) continue;
    assert.ok(key in value, `${what} has ${key}: ${JSON.stringify(value)}`);
    assert.ok(
      type.split('|').includes(typeOf(value[key])),
      `${what}.${key} is ${type}, not ${typeOf(value[key])}: ${JSON.stringify(value[key])}`,
    );
  }
}
