/**
 * Real workload processes for the Workload API tests: a small Node script, written to a
 * mkdtemp folder at test time, that talks gRPC to the agent socket as commanded on stdin
 * (one JSON line per command) and reports what it receives on stdout (one JSON line per
 * event). It can run as another user through setpriv: it loads grpc-js and the .proto files
 * from a world-readable copy (test/helpers/readable-copy.ts), so it works wherever the checkout is.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readableCopy } from '../../../helpers/readable-copy.js';

/** The repository root (dist/test/agent/workload-api/support → five levels up). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../..');

const SCRIPT = String.raw`
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import readline from 'node:readline';
const REPO = process.env.SIGIL_REPO;
const require = createRequire(REPO + '/package.json');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const socketPath = process.argv[2];
const def = loader.loadSync(REPO + '/proto/spiffe/workload/workload.proto', { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [REPO + '/proto'] });
const Client = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sha = (b) => createHash('sha256').update(b).digest('hex');
const md = (header) => { const m = new grpc.Metadata(); if (header !== false) m.set('workload.spiffe.io', header === undefined ? 'true' : header); return m; };
const newClient = (local) => new Client('unix://' + socketPath, grpc.credentials.createInsecure(), local ? { 'grpc.use_local_subchannel_pool': 1 } : {});
const shared = newClient(false);
const streams = new Map();
const errOut = (tag, e) => out({ tag, event: 'error', code: e.code, details: e.details, sigilCode: e.metadata?.get('sigil-error-code')[0], sigilReason: e.metadata?.get('sigil-error-reason')[0] });
const bundlesOf = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, sha(v)]));
function watch(tag, method, header, render) {
  const call = shared[method]({}, md(header));
  streams.set(tag, call);
  call.on('data', (m) => out({ tag, event: 'data', ...render(m) }));
  call.on('error', (e) => errOut(tag, e));
  call.on('status', (st) => out({ tag, event: 'status', code: st.code }));
}
const x509 = (m) => ({ svids: m.svids.map((s) => ({ spiffeId: s.spiffe_id, hint: s.hint, cert: sha(s.x509_svid), keyBytes: s.x509_svid_key.length, bundle: sha(s.bundle) })), federated: bundlesOf(m.federated_bundles) });
async function burst(tag, n) {
  const counts = {};
  await Promise.all(Array.from({ length: n }, () => new Promise((res) => {
    const c = newClient(true);
    const call = c.FetchX509SVID({}, md());
    let done = false;
    const finish = (k) => { if (done) return; done = true; counts[k] = (counts[k] ?? 0) + 1; call.cancel(); c.close(); res(); };
    call.on('data', (m) => finish(m.svids.length > 0 ? 'ok' : 'empty'));
    call.on('error', (e) => finish('code' + e.code));
  })));
  out({ tag, event: 'burst', counts });
}
// Opens a raw HTTP/2 Workload API call over a socket we hold, so the descriptor can be handed to another process.
let raw;
function rawCall(tag) {
  const sock = net.connect(socketPath);
  const session = http2.connect('http://localhost', { createConnection: () => sock });
  const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
  req.on('error', () => {});
  req.on('response', () => out({ tag, event: 'response' }));
  req.end(Buffer.from([0, 0, 0, 0, 0]));
  raw = { sock, session, req };
  out({ tag, event: 'sent' });
}
function handOff(tag) {
  const holder = spawn(process.execPath, ['-e', 'process.stdin.on("data",()=>{});process.stdin.on("end",()=>process.exit(0));setTimeout(()=>process.exit(0),20000)'], { stdio: ['pipe', 'ignore', 'ignore', raw.sock], detached: false });
  out({ tag, event: 'handed-off', holderPid: holder.pid });
  holder.stdin.end();
  process.exit(0);
}
out({ event: 'ready', pid: process.pid, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() });
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line);
  const tag = c.tag;
  switch (c.op) {
    case 'x509': return watch(tag, 'FetchX509SVID', c.header, x509);
    case 'x509bundles': return watch(tag, 'FetchX509Bundles', c.header, (m) => ({ bundles: bundlesOf(m.bundles) }));
    case 'jwtbundles': return watch(tag, 'FetchJWTBundles', c.header, (m) => ({ bundles: Object.fromEntries(Object.entries(m.bundles).map(([k, v]) => [k, JSON.parse(v.toString())])) }));
    case 'cancel': streams.get(tag)?.cancel(); return;
    case 'jwt': return shared.FetchJWTSVID({ audience: c.audience, spiffe_id: c.spiffeId ?? '' }, md(c.header), (e, r) => e ? errOut(tag, e) : out({ tag, event: 'jwt', svids: r.svids }));
    case 'validate': return shared.ValidateJWTSVID({ audience: c.audience, svid: c.svid }, md(c.header), (e, r) => e ? errOut(tag, e) : out({ tag, event: 'validated', spiffeId: r.spiffe_id, claims: r.claims }));
    case 'burst': return void burst(tag, c.n);
    case 'setid': process.setgroups(c.groups ?? []); process.setgid(c.gid); process.setuid(c.uid); return out({ tag, event: 'setid', uid: process.getuid() });
    case 'title': process.title = c.title; return out({ tag, event: 'title' });
    case 'raw': return rawCall(tag);
    case 'handoff': return handOff(tag);
    case 'exit': process.exit(0);
  }
});
process.stdin.on('end', () => process.exit(0));
`;

/** One JSON event printed by the workload. */
export type WorkloadEvent = Record<string, unknown> & { readonly event: string; readonly tag?: string };

/** Writes the workload script into a fresh folder readable by every user (so `nobody` can run it). */
export function writeWorkloadScript(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-workload-'));
  chmodSync(dir, 0o755);
  const file = join(dir, 'workload.mjs');
  writeFileSync(file, SCRIPT, { mode: 0o644 });
  return file;
}

/** Options of startWorkload. */
export interface WorkloadOptions {
  /** Run as this uid/gid (through setpriv); the test must run as root. */
  readonly uid?: number;
  readonly gid?: number;
  /** Supplementary groups when running through setpriv (none by default). */
  readonly groups?: readonly number[];
}

/** A running workload process. */
export class Workload {
  readonly child: ChildProcessWithoutNullStreams;
  readonly events: WorkloadEvent[] = [];
  readonly #waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;
  /** The last 4,000 characters the workload wrote to stderr. */
  #stderr = '';
  /** How the workload ended, once it has. */
  #ended: string | undefined;

  constructor(child: ChildProcessWithoutNullStreams) {
    this.child = child;
    this.exited = new Promise((res) => child.once('exit', (code) => res(code)));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      this.#stderr += d;
      if (this.#stderr.length > 4000) this.#stderr = this.#stderr.slice(-4000);
    });
    child.once('close', (code, signal) => {
      // No event can come any more: waiters learn now, with the child's own words.
      this.#ended = signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`;
      for (const w of [...this.#waiters]) w();
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as WorkloadEvent);
      } catch {
        return;
      }
      for (const w of [...this.#waiters]) w();
    });
  }

  #stderrText(): string {
    return this.#stderr === '' ? 'its stderr was empty' : `its stderr: ${this.#stderr}`;
  }

  /** Sends one command. */
  send(command: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** Resolves with what `pick` finds in the events so far, waiting for new events up to `timeoutMs`. */
  waitFor<T>(pick: (events: readonly WorkloadEvent[]) => T | undefined, timeoutMs = 10_000): Promise<T> {
    return new Promise((res, rej) => {
      const waiter = (): void => {
        const found = pick(this.events);
        if (found === undefined && this.#ended === undefined) return;
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        if (found !== undefined) res(found);
        else rej(new Error(`workload ${this.child.pid} ${this.#ended} before a matching event; saw ${JSON.stringify(this.events).slice(0, 2000)}; ${this.#stderrText()}`));
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        rej(new Error(`workload ${this.child.pid}: no matching event within ${timeoutMs} ms; saw ${JSON.stringify(this.events).slice(0, 2000)}; ${this.#stderrText()}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
      waiter();
    });
  }

  /** The first event that matches. */
  next(match: (e: WorkloadEvent) => boolean, timeoutMs?: number): Promise<WorkloadEvent> {
    return this.waitFor((events) => events.find(match), timeoutMs);
  }

  /** The n-th event with this tag (0-based), not counting final 'status' events. */
  tagged(tag: string, n = 0, timeoutMs?: number): Promise<WorkloadEvent> {
    return this.waitFor((events) => events.filter((e) => e.tag === tag && e.event !== 'status')[n], timeoutMs);
  }

  /** Ends the process (closing stdin makes it exit; a kill by its own pid follows if needed). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** The folder the workload loads its modules and .proto files from: a copy every user can read. */
function workloadDeps(): string {
  return readableCopy(REPO_ROOT, { packages: ['@grpc/grpc-js', '@grpc/proto-loader'], paths: ['proto'] });
}

/** Starts the workload script against `socketPath` and waits until it is ready. */
export async function startWorkload(script: string, socketPath: string, options: WorkloadOptions = {}): Promise<{ workload: Workload; ready: WorkloadEvent }> {
  const nodeArgs = [script, socketPath];
  let command = process.execPath;
  let args = nodeArgs;
  if (options.uid !== undefined) {
    command = 'setpriv';
    const groups = options.groups ?? [];
    args = [
      `--reuid=${options.uid}`,
      `--regid=${options.gid ?? options.uid}`,
      ...(groups.length === 0 ? ['--clear-groups'] : [`--groups=${groups.join(',')}`]),
      process.execPath,
      ...nodeArgs,
    ];
  }
  const child = spawn(command, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SIGIL_REPO: workloadDeps() }, stdio: ['pipe', 'pipe', 'pipe'] });
  const workload = new Workload(child);
  const ready = await workload.next((e) => e.event === 'ready');
  return { workload, ready };
}
