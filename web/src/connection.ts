// The connection panel's logic: where its fields come from (the URL fragment, the peer
// that serves the dashboard, what the user chose to remember), how they become the
// follower's options, and what a failure means for the user. No DOM here.
import type { ErrorCode } from 'pinfold';
import type { ConnectOptions } from './protocol.ts';

/** The connection panel's fields, as the user sees them. */
export interface ConnectionForm {
  /** Multiaddrs, one per line (or separated by commas or spaces). */
  bootstrap: string;
  secret: string;
  cluster: string;
  /** Peer ids, one per line; empty: the peers the bootstrap addresses name. */
  trusted: string;
  /** Keep the pinset in IndexedDB, so that a reload resumes. */
  keep: boolean;
  /** Remember these fields (the secret too) in this browser's localStorage. */
  remember: boolean;
}

export const EMPTY_FORM: ConnectionForm = {
  bootstrap: '',
  secret: '',
  cluster: '',
  trusted: '',
  keep: false,
  remember: false,
};

/** What a peer serving the dashboard says at `connect.json` (never the secret). */
export interface ServedDefaults {
  cluster: string;
  bootstrap: string[];
  trusted_peers: string[];
}

const list = (text: string) => text.split(/[\s,]+/).filter(Boolean);

/** Fields from a URL fragment: `#bootstrap=...&secret=...&cluster=...&trusted=...`. A
 * fragment never reaches a server, so it is where a link may carry the secret. */
export function fromFragment(hash: string): Partial<ConnectionForm> {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const form: Partial<ConnectionForm> = {};
  const bootstrap = params.getAll('bootstrap');
  if (bootstrap.length) form.bootstrap = bootstrap.join('\n');
  for (const key of ['secret', 'cluster'] as const) {
    const value = params.get(key);
    if (value !== null) form[key] = value;
  }
  const trusted = params.getAll('trusted');
  if (trusted.length) form.trusted = trusted.join('\n');
  return form;
}

/** Fields from a serving peer's defaults. */
export function fromServed(defaults: ServedDefaults): Partial<ConnectionForm> {
  return {
    bootstrap: defaults.bootstrap.join('\n'),
    cluster: defaults.cluster,
    trusted: defaults.trusted_peers.join('\n'),
  };
}

/** The follower's options from the form; throws an Error naming what is missing or wrong. */
export function toOptions(form: ConnectionForm): ConnectOptions {
  const bootstrap = list(form.bootstrap);
  if (bootstrap.length === 0) {
    throw new Error(
      "Give at least one bootstrap address: a peer's WebSocket (/ws) or webrtc-direct multiaddr ending in /p2p/<peer id>, as its /id lists them.",
    );
  }
  const notMultiaddr = bootstrap.find((a) => !a.startsWith('/'));
  if (notMultiaddr)
    throw new Error(
      `"${notMultiaddr}" is not a multiaddr: it should look like /ip4/127.0.0.1/tcp/9098/ws/p2p/12D3KooW…`,
    );
  const secret = form.secret.trim();
  if (secret === '')
    throw new Error(
      'Give the cluster secret: 64 hex characters (cluster.secret in service.json) or the text of a swarm.key file.',
    );
  if (!secret.includes('/key/swarm/psk/') && !/^[0-9a-fA-F]{64}$/.test(secret)) {
    throw new Error(
      `The cluster secret should be 64 hex characters (this is ${secret.length} characters long), or the text of a swarm.key file.`,
    );
  }
  const trustedPeers = list(form.trusted);
  return {
    bootstrap,
    secret,
    cluster: form.cluster.trim() || undefined,
    trustedPeers: trustedPeers.length ? trustedPeers : undefined,
    storage: form.keep ? 'indexeddb' : 'memory',
  };
}

const LOOPBACK = /^\/(ip4\/127\.|ip6\/::1\/|dns[46]?\/localhost\/)/;

/** Why a page served from `pageProtocol` cannot dial some of `bootstrap`: browsers block
 * plain `ws://` from an https page (but for loopback). Undefined when nothing is blocked. */
export function mixedContentProblem(pageProtocol: string, bootstrap: string[]): string | undefined {
  if (pageProtocol !== 'https:') return undefined;
  const blocked = bootstrap.filter((a) => /\/ws(\/|$)/.test(a) && !/\/(wss|tls)(\/|$)/.test(a) && !LOOPBACK.test(a));
  if (blocked.length === 0) return undefined;
  return (
    `This page was loaded over HTTPS, and browsers refuse plain WebSocket (ws://) connections from it: ${blocked.join(', ')}. ` +
    "Use the peer's secure WebSocket address (/tls/ws or /wss), its webrtc-direct address, or open the dashboard over http."
  );
}

/** An error the follower gave: its code (the package's `ErrorCode`) and message. */
export interface JoinError {
  name?: string;
  code?: ErrorCode;
  message: string;
}

/** What a failure to join means, and what to do about it. */
export function explain(error: JoinError, bootstrap: string[], pageProtocol: string): string {
  switch (error.code) {
    case 'WRONG_SECRET':
      return (
        'Wrong cluster secret? The peer refused the private-network handshake. Use the cluster.secret of the ' +
        "peers' service.json (64 hex characters), or the text of the cluster's swarm.key."
      );
    case 'UNREACHABLE': {
      const mixed = mixedContentProblem(pageProtocol, bootstrap);
      if (mixed) return mixed;
      return (
        `Could not reach ${bootstrap.length > 1 ? 'any bootstrap peer' : bootstrap[0]}. Is the peer running, and does it ` +
        "listen on that address? Browsers need a peer's WebSocket (/ws) or webrtc-direct address, with its /p2p/ id, " +
        `as pinfold ctl id lists them. (${error.message})`
      );
    }
    case 'STORAGE':
      return `This browser's storage (IndexedDB) could not be used: ${error.message}. Turn off "keep the pinset in this browser" and connect again.`;
    case 'INVALID_OPTIONS':
    case 'INVALID_CID':
      return error.message;
    default:
      return `Could not join the cluster: ${error.message}`;
  }
}

const STORAGE_KEY = 'pinfold-dashboard-connection';

/** The remembered fields, if the user chose to remember them. */
export function recall(storage: Pick<Storage, 'getItem'>): Partial<ConnectionForm> {
  try {
    const saved = JSON.parse(storage.getItem(STORAGE_KEY) ?? 'null');
    return saved && typeof saved === 'object' ? { ...saved, remember: true } : {};
  } catch {
    return {};
  }
}

/** Remembers `form` when it asks to, and forgets what was remembered otherwise. */
export function remember(storage: Pick<Storage, 'setItem' | 'removeItem'>, form: ConnectionForm): void {
  if (!form.remember) {
    storage.removeItem(STORAGE_KEY);
    return;
  }
  const { remember: _, ...fields } = form;
  storage.setItem(STORAGE_KEY, JSON.stringify(fields));
}
