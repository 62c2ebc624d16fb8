// The shapes the follower's calls and events give: ipfs-cluster's JSON where it has one
// (pins, statuses, metrics), pinfold's own otherwise.
import type { PinfoldError } from './errors.js';

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
  /** Pending blocks no peer gave after every attempt, asked for again at the next repair (hourly). */
  parked: number;
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
