/**
 * Several `sigil server run` children on one PostgreSQL schema (issue 14), each with its own data
 * dir, KEK and server ID, as on several machines; what the HA process tests share: the schema's
 * admin connection, the server homes, admin commands, the agent's current server from its log, and
 * `openssl verify` of every SVID of an X.509 context against the bundle it came with.
 */
import type { X509Context } from '../../../src/client/x509-context.js';
import { toPem } from '../../../src/common/x509.js';
import type { Daemon } from '../../agent/support/processes.js';
import { opensslVerify } from '../../helpers/openssl.js';
import { makeServerDir, writeServerConfig } from '../../helpers/server.js';
import { freePort, sigil, supervise } from './under-test.js';

import { POSTGRES_URL } from '../../helpers/postgres.js';

export { POSTGRES_URL, withPostgres as withAdmin } from '../../helpers/postgres.js';

/** One server's folder (KEK, config, data dir) and fixed agent API address; its daemon when started. */
export interface Home {
  readonly id: string;
  readonly dir: string;
  readonly config: string;
  readonly address: string;
  daemon?: Daemon;
}

/** A server folder with server ID `id` on `schema`, the CA propagation margin 1 s. */
export async function serverHomeOnPostgres(id: string, schema: string): Promise<Home> {
  const dir = await makeServerDir();
  const config = await writeServerConfig(
    dir,
    `serverId: ${id}\ndatastore:\n  type: postgres\n  connectionString: ${POSTGRES_URL}\n  schema: ${schema}\n  maxConnections: 4\nca:\n  propagationMargin: 1s\n`,
  );
  return { id, dir, config, address: `127.0.0.1:${await freePort()}` };
}

/** Starts `sigil server run` on `h` (again after a kill: same folder, same port) and waits until it serves. */
export async function startServer(h: Home): Promise<Daemon> {
  const d = supervise(['server', 'run', '--config', h.config, '--agent-address', h.address]);
  h.daemon = d;
  await d.until(`server ${h.id} to serve`, () => d.stderr.includes('sigil server: serving'), 90_000);
  return d;
}

/** `sigil args… --config <h's config>`; its stdout, or throws with the exit code and stderr. */
export async function admin(h: Home, args: readonly string[]): Promise<string> {
  const r = await sigil([...args, '--config', h.config]);
  if (r.code !== 0) throw new Error(`sigil ${args.join(' ')} on ${h.id}: ${r.code} ${r.stderr}`);
  return r.stdout;
}

/** The server the agent talks to now: its start line, then each failover. */
export function agentServer(agent: Daemon): string | undefined {
  let current: string | undefined;
  for (const line of agent.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const l = JSON.parse(line) as { msg?: string; server?: string; to?: string };
    if (l.msg === 'agent started') current = l.server;
    if (l.msg === 'server call failed; using the next server') current = l.to;
  }
  return current;
}

/** `openssl verify` of every SVID of `ctx` against the own trust domain's bundle that came with it; throws on the first failure. */
export async function verifyAll(ctx: X509Context): Promise<void> {
  const own = ctx.bundles.get('example.org');
  if (own === undefined) throw new Error('no own bundle in the X.509 context');
  const roots = own.x509Authorities.map((c) => toPem(c.der, 'CERTIFICATE'));
  for (const svid of ctx.svids) {
    const [leaf, ...rest] = svid.certificates;
    const r = await opensslVerify({ roots, leaf: toPem((leaf as { der: Uint8Array }).der, 'CERTIFICATE'), untrusted: rest.map((c) => toPem(c.der, 'CERTIFICATE')) });
    if (!r.ok) throw new Error(`openssl verify of ${svid.id.toString()} failed: ${r.output}`);
  }
}

/** The authority key identifier of a DER certificate, hex (which CA signed it). */
export function authorityKeyId(der: Uint8Array): string {
  const hex = Buffer.from(der).toString('hex');
  // id-ce-authorityKeyIdentifier 2.5.29.35 = 06 03 55 1d 23; the keyIdentifier [0] follows inside the OCTET STRING
  const at = hex.indexOf('0603551d23');
  if (at < 0) return '';
  const m = /^0603551d23(?:0101ff)?04[0-9a-f]{2}30[0-9a-f]{2}80([0-9a-f]{2})/.exec(hex.slice(at));
  if (m === null) return '';
  const len = parseInt(m[1] as string, 16);
  const start = at + m[0].length;
  return hex.slice(start, start + len * 2);
}
