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
/** Memory the module uses on this thread: its WebAssembly memory (where a follower's replica lives). */
export function memoryUsage(): Promise<{ wasmBytes: number }>;
/** Decodes a `monitor.metrics` message (msgpack api.Metric). */
export function decodeMetric(message: Uint8Array): Promise<Metric>;

/** Options of `follow`. */
export interface FollowOptions {
  /** Multiaddrs of cluster peers' WebSocket listeners, e.g. "/ip4/127.0.0.1/tcp/9098/ws/p2p/12D3Koo…". */
  bootstrap: string | string[];
  /** The cluster secret: 64 hex characters or a swarm.key file's text. */
  secret?: string;
  /** The cluster name (`crdt.cluster_name`); default "ipfs-cluster". */
  cluster?: string;
  /** Peers whose pinset is followed, or ["*"]; default: the peers the bootstrap addresses name with /p2p/. */
  trustedPeers?: string[];
  /** Time the first connection may take; default 15000. */
  connectTimeoutMs?: number;
  /** Where the replica is kept: "memory" (the default), or "indexeddb" to resume after a reload (browsers). */
  storage?: 'memory' | 'indexeddb';
  /** The IndexedDB database; default "pinfold-<cluster>". One follower at a time per database. */
  storageName?: string;
  signal?: AbortSignal;
}

/** Every call takes an optional AbortSignal. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** One peer's view of a pin (ipfs-cluster's PinInfoShort). */
export interface PinInfoShort {
  peername: string;
  /** Left out when unknown. */
  ipfs_peer_id?: string;
  ipfs_peer_addresses?: string[];
  status:
    | 'pinned'
    | 'pinning'
    | 'pin_queued'
    | 'pin_error'
    | 'unpinning'
    | 'unpin_queued'
    | 'unpin_error'
    | 'remote'
    | 'unexpectedly_unpinned'
    | 'cluster_error'
    | 'unpinned'
    | 'undefined';
  timestamp: string;
  error: string;
  attempt_count: number;
  priority_pin: boolean;
}

/** A pin's status on the peers (ipfs-cluster's GlobalPinInfo). */
export interface GlobalPinInfo {
  cid: string;
  name: string;
  allocations: string[];
  origins: string[];
  created: string;
  metadata: Record<string, string> | null;
  /** By peer id. */
  peer_map: Record<string, PinInfoShort>;
}

/** One connected peer's statuses of the whole pinset, counted; `error` when it gave none. */
export interface PeerSummary {
  peer: string;
  peername: string;
  /** Pins in the peer's pinset (absent with `error`). */
  pins?: number;
  /** How many of them stand in each status (statuses with no pin are left out). */
  statuses?: Partial<Record<PinInfoShort['status'] | 'sharded', number>>;
  error?: string;
}

/** A cluster peer as the follower sees it through its `ping` metrics. */
export interface PeerView {
  id: string;
  name: string;
  /** Its swarm addresses. */
  addresses: string[];
  ipfs_id: string;
  /** Whether its latest ping is still valid. */
  alive: boolean;
  connected: boolean;
  /** Whether its head broadcasts are followed. */
  trusted: boolean;
  /** "full", "relay" or "follower", as its ping says; "" for Go ipfs-cluster peers. */
  role: 'full' | 'relay' | 'follower' | '';
  /** When its latest ping arrived (Unix milliseconds). */
  last_seen: number;
}

/** Where the follower's sync stands. */
export interface SyncState {
  heads: { cid: string; height: number }[];
  height: number;
  /** Delta blocks known and not yet merged. */
  pending: number;
  /** Delta blocks requested and not yet received. */
  in_flight: number;
  /** Deltas merged since the follower started. */
  merged: number;
  pins: number;
  /** Whether it has heads and nothing left to fetch. */
  synced: boolean;
  connected_peers: number;
  /** The snapshot the pinset was loaded from, if any. */
  snapshot: { root: string; height: number; keys: number } | null;
}

export interface FollowerEvents {
  pin: Pin;
  unpin: { cid: string };
  peer: { id: string; joined: boolean };
  sync: SyncState;
  /** UntrustedDataError, StorageError, WrongSecretError, or a PinfoldError with code "SNAPSHOT". */
  error: PinfoldError;
}

/** What every follower offers, on this thread (`Follower`) or in a Worker (`WorkerFollower`). */
export abstract class FollowerBase {
  /** Its libp2p peer id. */
  readonly peerId: string;
  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof FollowerEvents>(type: K, listener: (value: FollowerEvents[K]) => void): () => void;
  /** Every pin, in state order, `pageSize` (default 1000) at a time. */
  pins(options?: CallOptions & { pageSize?: number }): AsyncIterableIterator<Pin>;
  /** Up to `limit` pins in state order, after the pin of `after`. */
  pinsPage(after: string | undefined, limit: number, options?: CallOptions): Promise<Pin[]>;
  /** The pin of `cid`, or null. */
  get(cid: string, options?: CallOptions): Promise<Pin | null>;
  /** The statuses of `cid` on the cluster peers the follower is connected to; NO_STATUS when none reported one. */
  status(cid: string, options?: CallOptions): Promise<GlobalPinInfo>;
  /** The statuses of up to 1000 `cids` (one request per connected peer), in the order asked; a CID no peer reported on is left out. */
  statuses(cids: string[], options?: CallOptions): Promise<GlobalPinInfo[]>;
  /** Each connected cluster peer's statuses of the whole pinset, counted (one request per peer). */
  summaries(options?: CallOptions): Promise<PeerSummary[]>;
  peers(options?: CallOptions): Promise<PeerView[]>;
  /** The latest live metric called `name` of each peer. */
  metrics(name: string, options?: CallOptions): Promise<Metric[]>;
  /** The names of the metrics received from the peers ("ping", "freespace", "tag:group", ...). */
  metricNames(options?: CallOptions): Promise<string[]>;
  syncState(options?: CallOptions): Promise<SyncState>;
  /** Leaves the swarm; later calls throw ClosedError. */
  close(): Promise<void>;
}

/** A follower running on this thread. */
export class Follower extends FollowerBase {
  private constructor();
}

/** A follower running in a Worker, seen through a proxy with the same API. */
export class WorkerFollower extends FollowerBase {
  private constructor();
}

/** Joins a cluster as a light follower; resolves once a bootstrap peer is connected. */
export function follow(options: FollowOptions): Promise<Follower>;

/**
 * Runs `follow` in a Worker (a module Web Worker in browsers and Deno, a worker thread in
 * Node), so that the sync never blocks the page; resolves with a proxy of the same API.
 */
export function spawnWorker(options: FollowOptions): Promise<WorkerFollower>;

/** Every error the follower throws; `code` says which kind. */
export class PinfoldError extends Error {
  readonly code:
    | 'WRONG_SECRET'
    | 'UNREACHABLE'
    | 'INVALID_OPTIONS'
    | 'INVALID_CID'
    | 'CLOSED'
    | 'NO_STATUS'
    | 'STORAGE'
    | 'SNAPSHOT'
    | 'UNTRUSTED_DATA'
    | string;
}
/** The bootstrap peer refused the private-network handshake: the secret differs. */
export class WrongSecretError extends PinfoldError {}
/** No bootstrap peer could be reached, or none answered in time. */
export class UnreachableError extends PinfoldError {}
/** An option is missing or malformed; the message names it. */
export class InvalidOptionsError extends PinfoldError {}
/** The follower was closed. */
export class ClosedError extends PinfoldError {}
/** IndexedDB could not be opened, read or written. */
export class StorageError extends PinfoldError {}
/** Pinset data came from a peer that is not trusted and was ignored (an `error` event). */
export class UntrustedDataError extends PinfoldError {}
