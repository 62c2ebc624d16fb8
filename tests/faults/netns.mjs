// Hosts in network namespaces, made and removed by the test (it runs as root). Each host
// has two links:
//   - its cluster link `c0`, 10.77.0.<n>/24, a veth whose other end is a port of a bridge
//     in a namespace of its own: the peers and Kubos talk to each other over it, and the
//     faults (a cut port, random packet loss, a delay) are made on it;
//   - its management link `m0`, 10.78.<n>.2/24, a veth to the test's own namespace
//     (10.78.<n>.1): the test reaches the REST and Kubo APIs over it, whatever the faults.
// The test's namespace does not forward (net.ipv4.ip_forward 0), and the hosts have no
// route but these two subnets, so nothing crosses between hosts except over the bridge.
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** tools/netdelay's binary: $PINFOLD_NETDELAY_BIN, else the release build in the cargo target dir. */
const netdelayBin =
  process.env.PINFOLD_NETDELAY_BIN ??
  path.join(
    process.env.CARGO_TARGET_DIR ??
      path.join(process.env.PINFOLD_CACHE ?? path.join(os.homedir(), '.cache/pinfold'), 'target'),
    'release/pinfold-netdelay',
  );

/** The short names Linux allows (15 characters) for this process's links. */
const tag = (process.pid % 100_000).toString(36);

export class Host {
  constructor(network, index) {
    this.index = index;
    this.namespace = `pf${tag}h${index}`;
    this.clusterIp = `10.77.0.${index + 1}`;
    this.managementIp = `10.78.${index}.2`;
    this.bridgePort = `pf${tag}p${index}`;
    /** The command prefix that runs a program in this host's namespace. */
    this.exec = ['ip', 'netns', 'exec', this.namespace];
    this.network = network;
  }

  /** Runs `command` in the host's namespace; its output. */
  run(command, args) {
    return execFileSync('ip', ['netns', 'exec', this.namespace, command, ...args], {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Cuts the host's cluster link (its bridge port down): it keeps its management link. */
  cut() {
    ip('-n', this.network.hub, 'link', 'set', this.bridgePort, 'down');
  }

  heal() {
    ip('-n', this.network.hub, 'link', 'set', this.bridgePort, 'up');
  }

  /** Drops `percent` of the packets the host sends on its cluster link, at random (nftables). */
  loseEgress(percent) {
    execFileSync('ip', ['netns', 'exec', this.namespace, 'nft', '-f', '-'], {
      input: [
        'table inet pinfold_faults {',
        '  chain egress {',
        '    type filter hook output priority 0; policy accept;',
        `    oifname "c0" numgen random mod 100 < ${percent} counter drop`,
        '  }',
        '}',
      ].join('\n'),
    });
  }

  /** How many packets the loss of `loseEgress` dropped so far; undefined when there is none. */
  droppedPackets() {
    try {
      const table = JSON.parse(this.run('nft', ['-j', 'list', 'table', 'inet', 'pinfold_faults']));
      return table.nftables.find((e) => e.rule)?.rule.expr.find((x) => x.counter)?.counter.packets;
    } catch {
      return undefined;
    }
  }

  /**
   * Holds every packet the host sends on its cluster link for `ms` milliseconds (one way:
   * a round trip between two delayed hosts takes twice that). The kernel has no netem, so
   * an iptables rule queues the packets to tools/netdelay, which lets each go when due.
   */
  async delayEgress(ms) {
    const delayer = spawn(this.exec[0], [...this.exec.slice(1), netdelayBin, '--queue', '0', '--delay-ms', `${ms}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let errors = '';
    delayer.stderr.on('data', (d) => (errors += d));
    await new Promise((resolve, reject) => {
      delayer.once('exit', (code) => reject(new Error(`pinfold-netdelay exited with ${code}: ${errors}`)));
      delayer.stdout.once('data', resolve);
    });
    this.delayer = delayer;
    this.run('iptables', ['-A', 'OUTPUT', '-o', 'c0', '-j', 'NFQUEUE', '--queue-num', '0']);
  }

  /** How long a TCP connection from this host to `ip`:`port` takes to open, in ms (a round trip). */
  connectTime(ip, port) {
    const script = `const s = require('node:net').connect(${port}, '${ip}'); const t = performance.now();
      s.on('connect', () => { console.log(performance.now() - t); s.destroy(); });
      s.on('error', (e) => { console.error(e.message); process.exit(1); });`;
    return Number(this.run(process.execPath, ['-e', script]).trim());
  }

  /** Removes the packet loss and the delay. */
  restore() {
    try {
      execFileSync('ip', ['netns', 'exec', this.namespace, 'nft', 'delete', 'table', 'inet', 'pinfold_faults'], {
        stdio: 'ignore',
      });
    } catch {
      // No packet loss was set.
    }
    if (this.delayer) {
      // The rule first: packets queued with nobody reading would be dropped.
      this.run('iptables', ['-D', 'OUTPUT', '-o', 'c0', '-j', 'NFQUEUE', '--queue-num', '0']);
      this.delayer.removeAllListeners('exit');
      this.delayer.kill();
      this.delayer = undefined;
    }
  }
}

/** A bridge and `count` hosts on it; `down()` removes them all. */
export class Network {
  constructor(count) {
    this.hub = `pf${tag}hub`;
    this.hosts = Array.from({ length: count }, (_, i) => new Host(this, i + 1));
  }

  up() {
    ip('netns', 'add', this.hub);
    ip('-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.hub, 'link', 'set', 'br0', 'up');
    for (const host of this.hosts) {
      const ns = host.namespace;
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      // The cluster link: c0 in the host, its other end a port of the bridge.
      ip('link', 'add', 'c0', 'netns', ns, 'type', 'veth', 'peer', 'name', host.bridgePort, 'netns', this.hub);
      ip('-n', ns, 'addr', 'add', `${host.clusterIp}/24`, 'dev', 'c0');
      ip('-n', ns, 'link', 'set', 'c0', 'up');
      ip('-n', this.hub, 'link', 'set', host.bridgePort, 'master', 'br0', 'up');
      // The management link: m0 in the host, its other end here.
      const here = `pf${tag}m${host.index}`;
      ip('link', 'add', here, 'type', 'veth', 'peer', 'name', 'm0', 'netns', ns);
      ip('addr', 'add', `10.78.${host.index}.1/24`, 'dev', here);
      ip('link', 'set', here, 'up');
      ip('-n', ns, 'addr', 'add', `${host.managementIp}/24`, 'dev', 'm0');
      ip('-n', ns, 'link', 'set', 'm0', 'up');
    }
    return this;
  }

  /** Ends the delayers and deletes the namespaces and the links made here. */
  down() {
    for (const host of this.hosts) host.delayer?.kill();
    const attempts = [
      ...this.hosts.map((h) => ['link', 'del', `pf${tag}m${h.index}`]),
      ...[this.hub, ...this.hosts.map((h) => h.namespace)].map((name) => ['netns', 'del', name]),
    ];
    for (const args of attempts) {
      try {
        ip(...args);
      } catch {
        // Not made (up() failed part way).
      }
    }
  }
}
