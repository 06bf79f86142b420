/**
 * `sigil api …`: a Workload API client on the command line, for operators and scripts.
 *   sigil api fetch x509 [--write DIR]      the SVIDs and bundles (files: svid.N.pem, svid.N.key 0600, bundle.N.pem)
 *   sigil api fetch jwt --audience A [--audience B] [--spiffe-id ID]
 *   sigil api fetch bundles                  X.509 and JWT bundles of every trust domain
 *   sigil api validate jwt --audience A --token-file F
 *   sigil api watch                          prints every X.509 update until interrupted
 * The agent is found with --socket (a path or unix:///path), else SPIFFE_ENDPOINT_SOCKET, else
 * /run/sigil/agent.sock (workload.ts).
 */
import { readFileSync } from 'node:fs';
import type { WorkloadApiClient } from '../../client/workload-api-client.js';
import type { X509Context } from '../../client/x509-context.js';
import { writeFileAtomic } from '../../agent/helper/file-writer.js';
import type { CommandIo } from '../io.js';
import { runService } from '../service.js';
import { durationMs, usageError, type ParsedArgs } from './args.js';
import { outputFormat, printJson, reportError, serialForm } from './output.js';
import { bundleView, jwtSvidView, x509SvidView } from './views.js';
import { workloadClient, workloadFailure } from './workload.js';

/** How long a fetch waits for the agent unless --timeout says otherwise. */
const DEFAULT_TIMEOUT_MS = 10_000;

function describeX509(ctx: X509Context): object {
  return {
    svids: ctx.svids.map((s) => x509SvidView({ spiffeId: s.id.toString(), serial: s.serial, expiresAt: s.notAfter, hint: s.hint })),
    bundles: ctx.bundles.list().map((b) => bundleView({ trustDomain: b.trustDomain.name, x509Pem: b.x509ToPem(), jwtKeys: [] })),
  };
}

function printX509(io: CommandIo, ctx: X509Context): void {
  for (const [i, s] of ctx.svids.entries()) {
    io.out(`SVID ${i}: ${s.id.toString()}\n  serial:    ${serialForm(s.serial)}\n  not after: ${s.notAfter.toISOString()}\n${s.hint ? `  hint:      ${s.hint}\n` : ''}`);
  }
  for (const b of ctx.bundles.list()) io.out(`bundle: ${b.trustDomain.name} (${b.x509Authorities.length} X.509 authorities)\n`);
}

function writeX509(dir: string, ctx: X509Context): string[] {
  const written: string[] = [];
  for (const [i, s] of ctx.svids.entries()) {
    const { certificates, privateKey } = s.toPem();
    writeFileAtomic(dir, `svid.${i}.key`, privateKey, 0o600);
    writeFileAtomic(dir, `svid.${i}.pem`, certificates, 0o644);
    const own = ctx.bundles.get(s.id.trustDomain);
    writeFileAtomic(dir, `bundle.${i}.pem`, own?.x509ToPem() ?? '', 0o644);
    written.push(`svid.${i}.pem`, `svid.${i}.key`, `bundle.${i}.pem`);
    let m = 0;
    for (const b of ctx.bundles.list()) {
      if (b.trustDomain.name === s.id.trustDomain.name) continue;
      const name = `federated_bundle.${i}.${m++}.pem`;
      writeFileAtomic(dir, name, b.x509ToPem(), 0o644);
      written.push(name);
    }
  }
  return written;
}

async function fetchX509(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient, signal: AbortSignal): Promise<number> {
  const ctx = await client.fetchX509Context(signal);
  const dir = args.get('write');
  const written = dir === undefined ? [] : writeX509(dir, ctx);
  if (outputFormat(args) === 'json') printJson(io, { ...describeX509(ctx), ...(dir === undefined ? {} : { written }) });
  else {
    printX509(io, ctx);
    if (dir !== undefined) io.out(`wrote ${written.join(', ')} to ${dir}\n`);
  }
  return 0;
}

async function fetchJwt(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient, signal: AbortSignal): Promise<number> {
  const audience = args.all('audience');
  const spiffeId = args.get('spiffe-id');
  const svids = await client.fetchJwtSvids({ audience, ...(spiffeId === undefined ? {} : { spiffeId }) }, signal);
  // The token is what the operator asked for: it goes to stdout, never to a log.
  if (outputFormat(args) === 'json') {
    printJson(io, { svids: svids.map((s) => jwtSvidView({ spiffeId: s.id.toString(), expiresAt: s.expiry, hint: s.hint, token: s.marshal() })) });
  } else {
    for (const s of svids) io.out(`${s.id.toString()} (expires ${s.expiry.toISOString()})\n${s.marshal()}\n`);
  }
  return 0;
}

async function fetchBundles(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient, signal: AbortSignal): Promise<number> {
  const x509 = await client.fetchX509Bundles(signal);
  const jwt = await client.fetchJwtBundles(signal);
  const tds = [...new Set([...x509.list(), ...jwt.list()].map((b) => b.trustDomain.name))].sort();
  const out = tds.map((td) => ({
    trustDomain: td,
    x509Pem: x509.get(td)?.x509ToPem() ?? '',
    jwtKeys: (JSON.parse(Buffer.from(jwt.get(td)?.jwtToJwksBytes() ?? Buffer.from('{"keys":[]}')).toString('utf8')) as { keys: Record<string, unknown>[] }).keys,
  }));
  if (outputFormat(args) === 'json') printJson(io, { bundles: out.map(bundleView) });
  else for (const b of out) io.out(`# ${b.trustDomain}\n${b.x509Pem}jwt keys: ${JSON.stringify(b.jwtKeys)}\n`);
  return 0;
}

async function validateJwt(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient, signal: AbortSignal): Promise<number> {
  const audience = args.get('audience');
  const file = args.get('token-file');
  if (args.get('svid') !== undefined) throw usageError('a JWT-SVID is a secret: put it in a file (mode 0600) and pass --token-file');
  if (audience === undefined) throw usageError('--audience is required');
  if (file === undefined) throw usageError('--token-file is required (a token is a secret: never pass it on the command line)');
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch {
    throw usageError(`cannot read token file ${file}`);
  }
  const jwt = await client.validateJwtSvid(token, audience, signal);
  if (outputFormat(args) === 'json') printJson(io, { valid: true, svid: jwtSvidView({ spiffeId: jwt.id.toString(), expiresAt: jwt.expiry }), claims: jwt.claims });
  else io.out(`valid: ${jwt.id.toString()}\nclaims: ${JSON.stringify(jwt.claims)}\n`);
  return 0;
}

async function watch(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient): Promise<number> {
  const json = outputFormat(args) === 'json';
  return runService({ name: 'sigil api watch', io }, (stop) =>
    client.watchX509Context(
      {
        onUpdate: (ctx) => {
          if (json) io.out(`${JSON.stringify({ at: new Date().toISOString(), ...describeX509(ctx) })}\n`);
          else {
            io.out(`update at ${new Date().toISOString()}\n`);
            printX509(io, ctx);
          }
        },
        onError: (err) => io.err(`sigil: watch: ${err.message} (${err.code}); retrying\n`),
      },
      stop,
    ),
  );
}

type Handler = (args: ParsedArgs, io: CommandIo, client: WorkloadApiClient, signal: AbortSignal) => Promise<number>;

const HANDLERS: Record<string, Handler> = {
  'fetch x509': fetchX509,
  'fetch jwt': fetchJwt,
  'fetch bundles': fetchBundles,
  'validate jwt': validateJwt,
  watch,
};

/** Runs `sigil api <command>` (`fetch x509`, `watch`, …). */
export async function run(command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  let client: WorkloadApiClient | undefined;
  try {
    const handler = HANDLERS[command];
    if (handler === undefined) throw new Error(`no api command ${command}`);
    if (command === 'fetch jwt' && args.all('audience').length === 0) throw usageError('--audience is required');
    const timeoutMs = durationMs(args, 'timeout', DEFAULT_TIMEOUT_MS);
    const signal = AbortSignal.timeout(timeoutMs);
    const connected = workloadClient(args);
    client = connected.client;
    try {
      return await handler(args, io, client, signal);
    } catch (err) {
      throw workloadFailure(err, connected.address, timeoutMs, command === 'watch' ? undefined : signal);
    }
  } catch (err) {
    return reportError(io, err);
  } finally {
    client?.close();
  }
}
