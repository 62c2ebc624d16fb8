// The connection panel's logic: links, served defaults, validation, what failures say, and
// remembering only when asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMPTY_FORM,
  explain,
  fromFragment,
  fromServed,
  mixedContentProblem,
  recall,
  remember,
  toOptions,
} from '../src/connection.ts';

const SECRET = 'ab'.repeat(32);
const WS = '/ip4/127.0.0.1/tcp/9098/ws/p2p/12D3KooWA';

test('a link fragment carries the connection, repeated keys for lists', () => {
  const form = fromFragment(
    `#secret=${SECRET}&bootstrap=${encodeURIComponent(WS)}&bootstrap=%2Fdns4%2Fr.example%2Ftcp%2F443%2Ftls%2Fws&cluster=c1&trusted=a&trusted=b`,
  );
  assert.deepEqual(form, {
    secret: SECRET,
    bootstrap: `${WS}\n/dns4/r.example/tcp/443/tls/ws`,
    cluster: 'c1',
    trusted: 'a\nb',
  });
  assert.deepEqual(fromFragment(''), {});
});

test("a serving peer's defaults fill the addresses, the name and the trusted peers", () => {
  assert.deepEqual(
    fromServed({ cluster: 'c', bootstrap: [WS, '/ip4/1.2.3.4/udp/1/webrtc-direct'], trusted_peers: ['*'] }),
    { bootstrap: `${WS}\n/ip4/1.2.3.4/udp/1/webrtc-direct`, cluster: 'c', trusted: '*' },
  );
});

test('the form becomes the follower options, or an error that says what to fix', () => {
  assert.deepEqual(toOptions({ ...EMPTY_FORM, bootstrap: `${WS}, ${WS}2`, secret: ` ${SECRET} `, keep: true }), {
    bootstrap: [WS, `${WS}2`],
    secret: SECRET,
    cluster: undefined,
    trustedPeers: undefined,
    storage: 'indexeddb',
  });
  assert.deepEqual(
    toOptions({ ...EMPTY_FORM, bootstrap: WS, secret: SECRET, cluster: 'c', trusted: 'p1\np2' }).trustedPeers,
    ['p1', 'p2'],
  );
  const swarmKey = `/key/swarm/psk/1.0.0/\n/base16/\n${SECRET}`;
  assert.equal(toOptions({ ...EMPTY_FORM, bootstrap: WS, secret: swarmKey }).secret, swarmKey);
  assert.throws(() => toOptions({ ...EMPTY_FORM, secret: SECRET }), /at least one bootstrap address/);
  assert.throws(
    () => toOptions({ ...EMPTY_FORM, bootstrap: 'ws://127.0.0.1:9098', secret: SECRET }),
    /is not a multiaddr/,
  );
  assert.throws(() => toOptions({ ...EMPTY_FORM, bootstrap: WS }), /Give the cluster secret/);
  assert.throws(
    () => toOptions({ ...EMPTY_FORM, bootstrap: WS, secret: 'abc' }),
    /64 hex characters \(this is 3 characters long\)/,
  );
});

test('plain WebSocket addresses are blocked on an https page, but for loopback and secure ones', () => {
  assert.equal(mixedContentProblem('http:', ['/ip4/10.0.0.1/tcp/9098/ws']), undefined);
  assert.equal(
    mixedContentProblem('https:', [
      '/ip4/127.0.0.1/tcp/9098/ws',
      '/dns4/r.example/tcp/443/tls/ws',
      '/dns4/r.example/tcp/443/wss',
    ]),
    undefined,
  );
  assert.match(
    mixedContentProblem('https:', ['/ip4/10.0.0.1/tcp/9098/ws/p2p/x']) ?? '',
    /refuse plain WebSocket.*\/ip4\/10\.0\.0\.1/,
  );
});

test('each failure to join says what it means', () => {
  assert.match(
    explain({ name: 'WrongSecretError', code: 'WRONG_SECRET', message: 'x' }, [WS], 'http:'),
    /^Wrong cluster secret\?/,
  );
  assert.match(
    explain({ name: 'UnreachableError', code: 'UNREACHABLE', message: 'refused' }, [WS], 'http:'),
    new RegExp(`Could not reach ${WS}.*refused`),
  );
  assert.match(
    explain({ name: 'UnreachableError', code: 'UNREACHABLE', message: 'x' }, ['/ip4/10.0.0.1/tcp/1/ws'], 'https:'),
    /HTTPS/,
  );
  assert.match(explain({ name: 'StorageError', code: 'STORAGE', message: 'quota' }, [WS], 'http:'), /IndexedDB.*quota/);
  assert.equal(
    explain({ name: 'InvalidOptionsError', code: 'INVALID_OPTIONS', message: 'bad peer id' }, [WS], 'http:'),
    'bad peer id',
  );
});

test('settings are remembered only when asked, and forgotten when no longer asked', () => {
  const store = new Map<string, string>();
  const storage = {
    getItem: (k: string) => store.get(k) ?? null,
    setItem: (k: string, v: string) => void store.set(k, v),
    removeItem: (k: string) => void store.delete(k),
  };
  remember(storage, { ...EMPTY_FORM, bootstrap: WS, secret: SECRET });
  assert.deepEqual(recall(storage), {});
  remember(storage, { ...EMPTY_FORM, bootstrap: WS, secret: SECRET, remember: true });
  assert.deepEqual(recall(storage), { ...EMPTY_FORM, bootstrap: WS, secret: SECRET, remember: true });
  remember(storage, { ...EMPTY_FORM, remember: false });
  assert.deepEqual(recall(storage), {});
});
