/**
 * Any unhandled rejection fails the run, whatever it was rejected with: a promise nobody awaited is
 * a bug in the middleware or in a test (a client's error left unobserved, a command sent after a
 * close), never noise. Importing this module installs the one hook, once per process however many
 * helpers and test files import it; no test file filters any rejection out.
 *
 *   import './helpers/unhandled.js';
 *
 * test/helpers/fixture.ts imports it, so every file that calls useRedis() has it; the files that
 * start their servers themselves (Cluster, Sentinel, faults, races) import it directly.
 */
process.on('unhandledRejection', (reason) => {
  throw reason instanceof Error ? reason : new Error(String(reason));
});

export {};
