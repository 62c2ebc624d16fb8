// Pin statuses as ipfs-cluster names them, and one status per pin for the whole cluster:
// the one that most needs attention among the peers' statuses.

/** Every status a peer can report, the ones that most need attention first. */
export const STATUSES = [
  'pin_error',
  'unpin_error',
  'cluster_error',
  'unexpectedly_unpinned',
  'pinning',
  'unpinning',
  'pin_queued',
  'unpin_queued',
  'pinned',
  'remote',
  'unpinned',
  'sharded',
  'undefined',
] as const;

export type Status = (typeof STATUSES)[number];

/** A status's code in a `Uint8Array`: its place in STATUSES plus one; 0 is "not known yet". */
export const UNKNOWN = 0;

export function statusCode(status: string): number {
  const index = (STATUSES as readonly string[]).indexOf(status);
  return index < 0 ? STATUSES.indexOf('undefined') + 1 : index + 1;
}

export function statusOf(code: number): Status | undefined {
  return code === UNKNOWN ? undefined : STATUSES[code - 1];
}

/** How a status reads in the UI ("checking" while no peer has been asked yet). */
export function statusLabel(status: string | undefined): string {
  return status === undefined ? 'checking' : status.replaceAll('_', ' ');
}

/** The kind of badge a status gets: ok, busy, error or quiet. */
export function statusTone(status: string | undefined): 'ok' | 'busy' | 'error' | 'quiet' {
  switch (status) {
    case 'pinned':
      return 'ok';
    case 'pinning':
    case 'unpinning':
    case 'pin_queued':
    case 'unpin_queued':
      return 'busy';
    case 'pin_error':
    case 'unpin_error':
    case 'cluster_error':
    case 'unexpectedly_unpinned':
      return 'error';
    default:
      return 'quiet';
  }
}

/** One peer's view, as in ipfs-cluster's `PinInfoShort`. */
export interface PeerStatus {
  status: string;
  peername?: string;
  error?: string;
  attempt_count?: number;
}

/** The cluster's status of a pin: the peers' status that most needs attention (so
 * `pinned` wins over `remote`, and any error over both), and how many peers pinned it. */
export function clusterStatus(peerMap: Record<string, PeerStatus>): { code: number; pinned: number } {
  let code = UNKNOWN;
  let pinned = 0;
  for (const info of Object.values(peerMap)) {
    const theirs = statusCode(info.status);
    if (code === UNKNOWN || theirs < code) code = theirs;
    if (info.status === 'pinned') pinned++;
  }
  return { code, pinned };
}
