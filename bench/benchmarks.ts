/**
 * The benchmarks of the suite, loaded lazily so that one whose subject is missing or
 * broken fails alone. Each entry also says what its rows are, for the table when it fails.
 */
import type { Benchmark } from './support/result.js';

/** One benchmark the runner knows. */
export interface BenchmarkEntry {
  readonly id: number;
  readonly title: string;
  /** Rows shown (unmeasured) when the benchmark fails: what and target. */
  readonly rows: readonly { readonly what: string; readonly target: string }[];
  /** Longest the benchmark may run, in seconds, without and with --full. */
  readonly budgetSeconds: { readonly normal: number; readonly full: number };
  load(): Promise<Benchmark>;
}

async function def(p: Promise<{ default: Benchmark }>): Promise<Benchmark> {
  return (await p).default;
}

/** Every benchmark in table order. */
export const BENCHMARKS: readonly BenchmarkEntry[] = [
  {
    id: 1,
    title: 'X.509-SVID issuance in process',
    rows: [{ what: 'X.509-SVID issuance, in process, 1 core', target: '>= 0.7' }],
    budgetSeconds: { normal: 120, full: 120 },
    load: () => def(import('./issuance.js')),
  },
  {
    id: 2,
    title: 'X.509-SVID issuance over TLS vs cfssl serve',
    rows: [
      { what: 'X.509-SVID over TLS, 1 per request, 100 in flight on 100 connections (both)', target: '>= 2 (x cfssl)' },
      { what: 'server process CPU per certificate, 1 per request (/proc utime+stime)', target: '<= 0.5 (x cfssl)' },
      { what: 'extra: BatchNewX509SVID, 50 CSRs per call, 2 calls on 2 connections (cfssl: 1 per request)', target: '(extra, no target)' },
    ],
    budgetSeconds: { normal: 180, full: 180 },
    load: () => def(import('./agent-api-issuance.js')),
  },
  {
    id: 3,
    title: 'JWT-SVID mint in process',
    rows: [{ what: 'JWT-SVID mint, in process', target: '>= 0.5' }],
    budgetSeconds: { normal: 60, full: 60 },
    load: () => def(import('./jwt-mint.js')),
  },
  {
    id: 4,
    title: 'Workload API first response',
    rows: [
      { what: 'Workload API connect -> first X509SVIDResponse, p50', target: '<= 1.5' },
      { what: 'Workload API connect -> first X509SVIDResponse, p99', target: '<= 2' },
    ],
    budgetSeconds: { normal: 120, full: 120 },
    load: () => def(import('./workload-first-response.js')),
  },
  {
    id: 5,
    title: 'bundle fan-out to 1,000 streams',
    rows: [{ what: 'bundle change (admin call) -> 1,000 FetchX509SVID streams', target: '<= 2' }],
    budgetSeconds: { normal: 180, full: 180 },
    load: () => def(import('./fan-out.js')),
  },
  {
    id: 6,
    title: 'entry create -> waiting workload',
    rows: [
      { what: 'entry create -> workload has SVID, p50', target: '(no target)' },
      { what: 'entry create -> workload has SVID, p99', target: '<= 500 ms' },
    ],
    budgetSeconds: { normal: 150, full: 150 },
    load: () => def(import('./propagation.js')),
  },
  {
    id: 7,
    title: 'agent sync at scale',
    rows: [
      { what: 'agent sync, 10k entries', target: '<= 1 s' },
      { what: 'agent sync, 100k entries', target: '<= 10 s' },
      { what: 'one agent full sync, 1M entries in SQLite', target: '<= 2 s' },
    ],
    budgetSeconds: { normal: 240, full: 1800 },
    load: () => def(import('./agent-scale.js')),
  },
  {
    id: 8,
    title: 'agent memory per cached SVID',
    rows: [
      { what: 'agent RSS per cached SVID, 10k SVIDs', target: '<= 3 KB' },
      { what: 'agent RSS per cached SVID added, 10k -> 20k SVIDs', target: '<= 3 KB' },
    ],
    budgetSeconds: { normal: 180, full: 180 },
    load: () => def(import('./agent-memory.js')),
  },
  {
    id: 9,
    title: 'cross-server propagation (two servers on one PostgreSQL)',
    rows: [
      { what: 'entry create on server A -> waiting workload on an agent of server B has SVID, p50', target: '(no target)' },
      { what: 'entry create on server A -> waiting workload on an agent of server B has SVID, p99', target: '<= 500 ms' },
    ],
    budgetSeconds: { normal: 240, full: 240 },
    load: () => def(import('./cross-server-propagation.js')),
  },
  {
    id: 10,
    title: 'many agents attach to one server',
    rows: [
      { what: 'N agents x 20 entries: start -> all synced', target: '(absolute)' },
      { what: 'N agents: failed calls while attaching; SVIDs signed, not delivered', target: '0; 0' },
      { what: 'N agents: server CPU per agent', target: '<= 1.5' },
      { what: 'entry create -> agent has SVID, all N connected, p99', target: '(absolute)' },
    ],
    budgetSeconds: { normal: 420, full: 1800 },
    load: () => def(import('./agent-fleet.js')),
  },
  {
    id: 11,
    title: 'keys in a PKCS#11 token (SoftHSM2)',
    rows: [
      { what: 'X.509-SVID issuance, CA key in SoftHSM2 (sign mode, 16 in flight) vs in memory', target: '(no target)' },
      { what: 'wrap-mode start-up: open 20 key files, data keys unwrapped by SoftHSM2 vs by a KEK file', target: '(no target)' },
    ],
    budgetSeconds: { normal: 120, full: 120 },
    load: () => def(import('./pkcs11.js')),
  },
];
