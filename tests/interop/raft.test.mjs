// Moving a Go ipfs-cluster v1.1.6 Raft cluster to pinfold's Raft, which does not speak
// Go's Raft protocol: a Go peer under Raft (`ipfs-cluster-service init --consensus raft`)
// pins, stops and exports its state (`state export`); pinfold takes over its folder (Go's
// `service.json` with its `consensus.raft` section, its identity and Kubo), imports the
// state before its first start and starts a Raft cluster holding it; a pinfold peer that
// joins gets the pins from its snapshot and its Kubo pins them.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Ipfs, Peer, pinfoldBin, raftState, runDir, stopAll, waitFor } from '../cluster/harness.mjs';
import { GoPeer, clusterCtl, goBin, stopGoPeers } from './go.mjs';

const secret = execFileSync(pinfoldBin, ['secret', 'new']).toString().trim();

after(async () => {
  await stopGoPeers();
  await stopAll();
});

test("a Go Raft peer's exported state starts a pinfold Raft cluster in the Go peer's own folder, and reaches a peer that joins", async () => {
  const ipfs = await new Ipfs('raft-go').start();
  const go = await new GoPeer('raft-go', { ipfs }).init(secret, { consensus: 'raft' });
  await go.start();
  const cids = [];
  for (const label of ['one', 'two', 'three']) {
    const cid = await ipfs.addContent(`go raft ${label}`);
    await clusterCtl(go.api, ['pin', 'add', '--name', `go ${label}`, cid]);
    cids.push(cid);
  }
  for (const cid of cids) await waitFor("the Go peer's Kubo to pin", () => ipfs.isPinned(cid));
  await go.stop();
  const exported = path.join(runDir, 'go-raft-state.json');
  execFileSync(goBin('ipfs-cluster-service'), ['--config', go.dir, 'state', 'export', '-f', exported], {
    env: go.env(),
    stdio: 'pipe',
  });

  // pinfold in the Go peer's folder: same name, so the same directory, ports and Kubo.
  const takeover = new Peer('raft-go', { ipfs });
  Object.assign(takeover, {
    swarmPort: go.swarmPort,
    wsPort: go.wsPort,
    apiPort: go.apiPort,
    pinningPort: go.pinningPort,
    proxyPort: go.proxyPort,
    secret,
    api: go.api,
  });
  takeover.readIdentity();
  assert.equal(takeover.id, go.id);
  execFileSync(pinfoldBin, ['service', '--config', takeover.dir, 'state', 'import', exported], {
    env: takeover.env(),
    stdio: 'pipe',
  });
  await takeover.start();
  const state = await waitFor('pinfold to lead its one-peer Raft cluster', async () => {
    const state = await raftState(takeover);
    return state.is_leader && state;
  });
  assert.deepEqual(state.peers, [go.id]);
  const pins = await takeover.list('/allocations');
  assert.deepEqual(pins.map((p) => p.cid).sort(), [...cids].sort());
  assert.deepEqual(pins.map((p) => p.name).sort(), ['go one', 'go three', 'go two']);

  const joiner = await (
    await new Peer('raft-joiner', {
      ipfs: await new Ipfs('raft-joiner').start(),
      initArgs: ['--consensus', 'raft'],
    }).init(secret)
  ).start(['--bootstrap', takeover.address]);
  await waitFor('two Raft peers', async () => (await raftState(joiner)).peers.length === 2);
  for (const cid of cids) {
    await waitFor(`the joiner to have ${cid}`, () => joiner.allocation(cid));
    await waitFor(`the joiner's Kubo to pin ${cid}`, () => joiner.ipfs.isPinned(cid));
  }

  // Once a peer's Raft log holds the pinset, an import would bypass it: refused.
  await joiner.stop();
  let refused;
  try {
    execFileSync(pinfoldBin, ['service', '--config', joiner.dir, 'state', 'import', exported], { stdio: 'pipe' });
  } catch (error) {
    refused = error.stderr.toString();
  }
  assert.match(refused ?? 'it was accepted', /Raft log holds the pinset already/);
});
