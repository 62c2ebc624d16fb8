/** A pin as ipfs-cluster's REST API writes it (GET /allocations/{cid}). */
export interface Pin {
  cid: string;
  type: 'pin' | 'meta-pin' | 'clusterdag-pin' | 'shard-pin' | 'bad-type';
  allocations: string[];
  max_depth: number;
  reference: string | null;
  /** RFC 3339; "0001-01-01T00:00:00Z" when unset. */
  timestamp: string;
  replication_factor_min: number;
  replication_factor_max: number;
  name: string;
  mode: 'recursive' | 'direct';
  shard_size: number;
  user_allocations: string[] | null;
  /** RFC 3339; "0001-01-01T00:00:00Z" when the pin never expires. */
  expire_at: string;
  metadata: Record<string, string> | null;
  pin_update: string | null;
  origins: string[];
}

/** A peer metric as ipfs-cluster's REST API writes it (GET /monitor/metrics/{name}). */
export interface Metric {
  name: string;
  peer: string;
  value: string;
  /** Unix nanoseconds. */
  expire: number;
  valid: boolean;
  weight: number;
  partitionable: boolean;
  /** Unix nanoseconds. */
  received_at: number;
}

/** Loads the WebAssembly module (once). Every other function awaits it. */
export function ready(): Promise<void>;
/** The pubsub topic that carries a cluster's CRDT heads (default cluster name: "ipfs-cluster"). */
export function clusterTopic(clusterName?: string): Promise<string>;
/** Validates a cluster secret (64 hex characters or swarm.key text); returns 64 lowercase hex characters. */
export function normalizeSecret(secret: string): Promise<string>;
/** Decodes a CRDT state value (protobuf api.pb.Pin). */
export function decodePin(stateValue: Uint8Array): Promise<Pin>;
/** Decodes a `monitor.metrics` message (msgpack api.Metric). */
export function decodeMetric(message: Uint8Array): Promise<Metric>;
