// The script spawnWorker runs in browsers: the browsers' build, then the worker.
import './index.js';
import './worker.js';
