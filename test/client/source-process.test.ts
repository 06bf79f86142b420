/**
 * A process whose only work is awaiting a source stays alive (DESIGN.md, Processes): each
 * script below is a real child process that awaits a source, or a watch, before the agent's
 * socket exists. It keeps retrying with backoff, gets its first update once a Workload API
 * server appears on the socket, and with no server it fails with ERR_DEADLINE_EXCEEDED at
 * its timeout, with a non-zero status (never the 13 of an unsettled top-level await).
 * The server that appears is the real agent (with a real server behind it, an entry for the
 * test's uid), started on the socket path the waiter was given.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../e2e/support/stack.js';
import { ROOT, ServiceProcess } from './service-process.js';

/** What each kind of waiter awaits, and the line it prints once it has it. */
const SCRIPTS: Record<string, string> = {
  X509Source: `const s = await X509Source.create(options); console.log('got ' + s.svid.id); await s.close();`,
  JwtSource: `const s = await JwtSource.create(options); console.log('got ' + s.bundles.list().map((b) => b.trustDomain.name)); await s.close();`,
  BundleSource: `const s = await BundleSource.create(options); console.log('got ' + s.bundles.list().map((b) => b.trustDomain.name)); await s.close();`,
  watch: `const c = new WorkloadApiClient(options); const ctl = new AbortController();
    await c.watchX509Context({ onUpdate: (x) => { console.log('got ' + x.svids[0].id); ctl.abort(); } }, ctl.signal); c.close();`,
};

function startWaiter(kind: string, socketPath: string, timeoutMs: number): ServiceProcess {
  // The logger stands in for pino: each failed attempt prints one line, so the test counts attempts.
  const script = `import { X509Source, JwtSource, BundleSource, WorkloadApiClient } from 'sigil/client';
    const logger = { warn: (o) => console.log('retry ' + o.code), error: (o) => console.log('ended ' + o.code), info() {}, debug() {}, trace() {}, fatal() {}, child() { return logger; } };
    const options = { timeoutMs: ${timeoutMs}, logger, backoff: { initialMs: 50, maxMs: 400 } };
    ${SCRIPTS[kind]}`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT, // so 'sigil/client' resolves to this package, as in the examples
    env: { PATH: process.env.PATH ?? '', SPIFFE_ENDPOINT_SOCKET: `unix://${socketPath}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new ServiceProcess(proc);
}

function count(p: ServiceProcess, re: RegExp): number {
  return p.lines.filter((l) => re.test(l)).length;
}

for (const kind of Object.keys(SCRIPTS)) {
  test(`${kind}: a process awaiting it before the socket exists stays alive, retries, and gets it once a server appears`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-wait-'));
    const socketPath = join(dir, 'agent.sock');
    const waiter = startWaiter(kind, socketPath, 120_000);
    let stack: Stack | undefined;
    try {
      // Several failed attempts: the process outlived the first one and kept retrying.
      await waiter.waitFor(/^retry ERR_UNAVAILABLE/, 30_000);
      await waiter.waitFor(/^retry/, 30_000, waiter.lines.findIndex((l) => l.startsWith('retry')) + 1);
      t.is(waiter.proc.exitCode, null);
      stack = await startStack({ agentConfig: { socketPath } });
      await stack.entry({ spiffeId: 'spiffe://example.org/web' });
      await waiter.waitFor(/^got (spiffe:\/\/example\.org\/web|example\.org)$/, 30_000);
      t.is(await waiter.exited, 0, waiter.output);
      t.true(count(waiter, /^retry/) >= 2);
    } finally {
      await waiter.stop();
      await stack?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('X509Source: with no server the process fails with ERR_DEADLINE_EXCEEDED at its timeout, non-zero', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-wait-'));
  const waiter = startWaiter('X509Source', join(dir, 'agent.sock'), 3000);
  try {
    const code = await waiter.exited;
    t.not(code, 0);
    t.not(code, 13, 'the await was left unsettled: nothing kept the process alive');
    t.regex(waiter.output, /ERR_DEADLINE_EXCEEDED/);
    // It retried until the deadline rather than giving up at the first failure.
    t.true(count(waiter, /^retry ERR_UNAVAILABLE/) >= 2, waiter.output);
  } finally {
    await waiter.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
