/**
 * A server of benchmark 9 alone in its own process: a real Sigil server (bench-server.ts) with
 * the server ID and PostgreSQL schema given on argv (`<serverId> <connectionString> <schema>`),
 * as `sigil server run` on one of several machines would run. It reports its agent API target,
 * admin socket and bundle roots, and stops when told (or when its parent goes away).
 */
import { startBenchServer, type BenchServer } from './bench-server.js';

/** Replies to the driver. */
export type PgServerReply =
  | { readonly type: 'ready'; readonly target: string; readonly adminSocket: string; readonly roots: string[] }
  | { readonly type: 'stopped' }
  | { readonly type: 'error'; readonly error: string };

const [serverId = '', connectionString = '', schema = ''] = process.argv.slice(2);
let srv: BenchServer | undefined;

process.on('message', (m) => {
  if ((m as { type?: string }).type !== 'stop') return;
  const s = srv;
  void (s === undefined ? Promise.resolve() : s.close()).finally(() => {
    process.send?.({ type: 'stopped' } satisfies PgServerReply, () => process.exit(0));
  });
});
process.on('disconnect', () => process.exit(0));

startBenchServer({
  extra: {
    serverId,
    datastore: { type: 'postgres', connectionString, schema, maxConnections: 4 },
    // the other server's new authority must be in the bundle before it signs; short for a bench
    ca: { propagationMargin: '1s' },
  },
}).then(
  (s) => {
    srv = s;
    process.send?.({ type: 'ready', target: s.agentTarget, adminSocket: s.server.adminSocketPath, roots: s.server.x509Authorities().map((d) => d.toString('base64')) } satisfies PgServerReply);
  },
  (err: unknown) => {
    process.send?.({ type: 'error', error: err instanceof Error ? err.message : String(err) } satisfies PgServerReply, () => process.exit(1));
  },
);
