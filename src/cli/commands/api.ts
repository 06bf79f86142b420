/**
 * `sigil api …`: a Workload API client on the command line, for operators and scripts.
 *   sigil api fetch x509 [--write DIR]      the SVIDs and bundles (files: svid.N.pem, svid.N.key 0600, bundle.N.pem)
 *   sigil api fetch jwt --audience A [--audience B] [--spiffe-id ID]
 *   sigil api fetch bundles                  X.509 and JWT bundles of every trust domain
 *   sigil api validate jwt --audience A --token-file F
 *   sigil api watch                          prints every X.509 update until interrupted
 * The agent is found with --socket (a path or unix:///path) or SPIFFE_ENDPOINT_SOCKET.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { WorkloadApiClient } from '../../client/workload-api-client.js';
import { SigilError } from '../../common/errors.js';
import type { X509Context } from '../../client/x509-context.js';
import { writeFileAtomic } from '../../agent/helper/file-writer.js';
import type { CommandIo } from '../io.js';
import { runService } from '../service.js';
import { parseArgs, usageError, type ParsedArgs } from './args.js';
import { outputFormat, printJson, reportError } from './output.js';

const USAGE = `usage: sigil api <fetch x509|fetch jwt|fetch bundles|validate jwt|watch> [flags]

flags:
  --socket PATH|URI     agent socket (default: SPIFFE_ENDPOINT_SOCKET)
  --write DIR           fetch x509: write svid.N.pem, svid.N.key (0600), bundle.N.pem, federated_bundle.N.M.pem
  --audience A          fetch jwt / validate jwt (repeatable for fetch jwt)
  --spiffe-id ID        fetch jwt: only this identity
  --token-file F        validate jwt: the token to check
  --timeout DURATION    give up after this many seconds (default 10)
  --output table|json
`;

function clientFor(args: ParsedArgs): WorkloadApiClient {
  const socket = args.get('socket');
  if (socket === undefined) return new WorkloadApiClient();
  return new WorkloadApiClient({ address: isAbsolute(socket) ? `unix://${socket}` : socket });
}

/** Aborts after --timeout with a reason that says so: the command's own timeout, not a cancellation. */
function timeoutSignal(args: ParsedArgs): AbortSignal {
  const t = args.get('timeout') ?? '10';
  if (!/^\d+$/.test(t) || Number(t) === 0) throw usageError(`--timeout must be a whole number of seconds, got ${JSON.stringify(t)}`);
  const seconds = Number(t);
  // AbortSignal.timeout's timer does not keep the process alive once the call is done.
  const timer = AbortSignal.timeout(seconds * 1000);
  const ctl = new AbortController();
  timer.addEventListener(
    'abort',
    () => ctl.abort(new SigilError('ERR_DEADLINE_EXCEEDED', `timed out: no answer from the agent within ${seconds}s (--timeout)`, { reason: 'timeout' })),
    { once: true },
  );
  return ctl.signal;
}

function describeX509(ctx: X509Context): object {
  return {
    svids: ctx.svids.map((s) => ({ spiffeId: s.id.toString(), serial: s.serial, notAfter: s.notAfter.toISOString(), hint: s.hint })),
    bundles: ctx.bundles.list().map((b) => ({ trustDomain: b.trustDomain.name, x509Authorities: b.x509Authorities.length })),
  };
}

function printX509(io: CommandIo, ctx: X509Context): void {
  for (const [i, s] of ctx.svids.entries()) {
    io.out(`SVID ${i}: ${s.id.toString()}\n  serial:    ${s.serial}\n  not after: ${s.notAfter.toISOString()}\n${s.hint ? `  hint:      ${s.hint}\n` : ''}`);
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

async function fetchX509(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient): Promise<number> {
  const ctx = await client.fetchX509Context(timeoutSignal(args));
  const dir = args.get('write');
  const written = dir === undefined ? [] : writeX509(dir, ctx);
  if (outputFormat(args) === 'json') printJson(io, { ...describeX509(ctx), ...(dir === undefined ? {} : { written }) });
  else {
    printX509(io, ctx);
    if (dir !== undefined) io.out(`wrote ${written.join(', ')} to ${dir}\n`);
  }
  return 0;
}

async function fetchJwt(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient): Promise<number> {
  const audience = args.all('audience');
  if (audience.length === 0) throw usageError('--audience is required');
  const spiffeId = args.get('spiffe-id');
  const svids = await client.fetchJwtSvids({ audience, ...(spiffeId === undefined ? {} : { spiffeId }) }, timeoutSignal(args));
  // The token is what the operator asked for: it goes to stdout, never to a log.
  if (outputFormat(args) === 'json') {
    printJson(io, svids.map((s) => ({ spiffeId: s.id.toString(), expiresAt: s.expiry.toISOString(), hint: s.hint, token: s.marshal() })));
  } else {
    for (const s of svids) io.out(`${s.id.toString()} (expires ${s.expiry.toISOString()})\n${s.marshal()}\n`);
  }
  return 0;
}

async function fetchBundles(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient): Promise<number> {
  const signal = timeoutSignal(args);
  const x509 = await client.fetchX509Bundles(signal);
  const jwt = await client.fetchJwtBundles(signal);
  const tds = [...new Set([...x509.list(), ...jwt.list()].map((b) => b.trustDomain.name))].sort();
  const out = tds.map((td) => ({
    trustDomain: td,
    x509Pem: x509.get(td)?.x509ToPem() ?? '',
    jwtKeys: JSON.parse(Buffer.from(jwt.get(td)?.jwtToJwksBytes() ?? Buffer.from('{"keys":[]}')).toString('utf8')) as unknown,
  }));
  if (outputFormat(args) === 'json') printJson(io, out);
  else for (const b of out) io.out(`# ${b.trustDomain}\n${b.x509Pem}jwt keys: ${JSON.stringify(b.jwtKeys)}\n`);
  return 0;
}

async function validateJwt(args: ParsedArgs, io: CommandIo, client: WorkloadApiClient): Promise<number> {
  const audience = args.get('audience');
  const file = args.get('token-file');
  if (audience === undefined) throw usageError('--audience is required');
  if (file === undefined) throw usageError('--token-file is required (a token is a secret: never pass it on the command line)');
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch {
    throw usageError(`cannot read token file ${file}`);
  }
  const jwt = await client.validateJwtSvid(token, audience, timeoutSignal(args));
  if (outputFormat(args) === 'json') printJson(io, { valid: true, spiffeId: jwt.id.toString(), claims: jwt.claims });
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

/** Runs `sigil api …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    io.out(USAGE);
    return verb === undefined ? 2 : 0;
  }
  let client: WorkloadApiClient | undefined;
  try {
    const needsObject = verb === 'fetch' || verb === 'validate';
    const object = needsObject ? rest[0] : undefined;
    const args = parseArgs(needsObject ? rest.slice(1) : rest, { values: ['write', 'spiffe-id', 'token-file', 'timeout'], repeatable: ['audience'] });
    if (args.has('help')) {
      io.out(USAGE);
      return 0;
    }
    const command = needsObject ? `${verb} ${object ?? ''}` : verb;
    const handlers: Record<string, (a: ParsedArgs, o: CommandIo, c: WorkloadApiClient) => Promise<number>> = {
      'fetch x509': fetchX509,
      'fetch jwt': fetchJwt,
      'fetch bundles': fetchBundles,
      'validate jwt': validateJwt,
      watch,
    };
    const handler = handlers[command];
    if (handler === undefined) throw usageError(`unknown api command ${JSON.stringify(command.trim())}; see "sigil api --help"`);
    client = clientFor(args);
    return await handler(args, io, client);
  } catch (err) {
    return reportError(io, err);
  } finally {
    client?.close();
  }
}
