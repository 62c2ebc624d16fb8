// The script spawnWorker runs in Node, Deno and Bun: the server build, then the worker.
import './server.js';
import './worker.js';
