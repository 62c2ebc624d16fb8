// Loopback helpers shared by the Node test suites.
//
// Ports are picked at random below Linux's ephemeral range (32768-60999), so that no
// process binding port 0 (a daemon's gateway, a follower's API) can take one between the
// moment it is handed out and the moment its daemon binds it, and never twice in a process.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

const LOW = 20000;
const HIGH = 32000;
const handedOut = new Set();

function bindable(port, bind) {
  return new Promise((resolve) => bind(port, resolve));
}

async function pick(bind) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (handedOut.has(port)) continue;
    if (await bindable(port, bind)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found between ${LOW} and ${HIGH} in 200 tries`);
}

function bindTcp(port, done) {
  const server = createServer();
  server.once('error', () => done(false));
  server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
}

function bindUdp(port, done) {
  const socket = createSocket('udp4');
  socket.once('error', () => done(false));
  socket.bind(port, '127.0.0.1', () => socket.close(() => done(true)));
}

/** A TCP port on 127.0.0.1 that was free a moment ago and is handed out once. */
export const freePort = () => pick(bindTcp);

/** A UDP port on 127.0.0.1 that was free a moment ago and is handed out once. */
export const freeUdpPort = () => pick(bindUdp);
