/**
 * `sigil oidc serve --config oidc.yaml`: the OpenID discovery provider, a small process apart
 * from the CA server, publishing the discovery document and the JWKS of the trust domain's
 * JWT-SVID keys, which it reads from the local agent (FetchJWTBundles: the process needs only
 * an entry) or from the server's admin socket. `sigil oidc export --config oidc.yaml --dir D
 * [--watch]` writes the same two documents as files for static hosting.
 */
import { WorkloadApiClient } from '../../client/workload-api-client.js';
import { systemClock } from '../../common/clock.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { loadOidcConfig, type OidcConfig } from '../../oidc/config.js';
import { exportDocuments } from '../../oidc/export-files.js';
import { OidcDocuments, startOidcServer } from '../../oidc/http-server.js';
import { feedFromAdmin, feedFromAgent, KeyFeed } from '../../oidc/key-feed.js';
import type { CommandIo } from '../io.js';
import { runService, untilAborted } from '../service.js';
import { AdminClient } from './admin-client.js';
import { usageError, type ParsedArgs } from './args.js';
import { reportError } from './output.js';

/** Starts feeding `feed` from the configured source; resolves when `signal` aborts. */
function startFeed(config: OidcConfig, feed: KeyFeed, logger: Logger, signal: AbortSignal): Promise<void> {
  const src = config.source;
  if (src.kind === 'admin') {
    const admin = new AdminClient(src.socketPath);
    signal.addEventListener('abort', () => admin.close(), { once: true });
    const get = async (): Promise<Uint8Array> => (await admin.call<{ document: Buffer }>('Bundles', 'GetBundle', {}, 10_000)).document;
    return feedFromAdmin(get, feed, config.trustDomain, systemClock, src.pollIntervalMs, signal);
  }
  const client = new WorkloadApiClient({ logger, ...(src.address === undefined ? {} : { address: src.address }) });
  signal.addEventListener('abort', () => client.close(), { once: true });
  return feedFromAgent(client, feed, config.trustDomain, systemClock, signal).catch((err: unknown) => {
    // InvalidArgument from the agent ends a watch for good: nothing to serve from then on
    feed.fail('source-unavailable', `the agent refused the key stream: ${err instanceof Error ? err.message : String(err)}`);
  });
}

async function serve(args: ParsedArgs, io: CommandIo): Promise<number> {
  const path = args.get('config');
  if (path === undefined) throw usageError('--config is required');
  const config = loadOidcConfig(path, { serve: true });
  const logger = createLogger({ level: config.logLevel, name: 'sigil-oidc' });
  return runService({ name: 'sigil oidc serve', io }, async (stop) => {
    const feed = new KeyFeed(config.trustDomain, logger);
    const docs = new OidcDocuments(config, feed);
    const feeding = startFeed(config, feed, logger, stop);
    const server = await startOidcServer(docs, feed, logger);
    const listen = config.listen as NonNullable<OidcConfig['listen']>;
    io.err(`sigil oidc serve: serving ${config.issuer} on ${listen.tls === undefined && listen.acme === undefined ? 'http' : 'https'}://${listen.host}:${server.port} (keys from the ${config.source.kind === 'agent' ? 'agent' : 'server admin socket'})\n`);
    await untilAborted(stop);
    await server.close();
    await feeding;
  });
}

async function exportFiles(args: ParsedArgs, io: CommandIo): Promise<number> {
  const path = args.get('config');
  if (path === undefined) throw usageError('--config is required');
  const dir = args.get('dir');
  if (dir === undefined) throw usageError('--dir is required');
  const watch = args.has('watch');
  const config = loadOidcConfig(path, { serve: false });
  const logger = createLogger({ level: config.logLevel, name: 'sigil-oidc' });
  return runService({ name: 'sigil oidc export', io }, async (stop) => {
    const feed = new KeyFeed(config.trustDomain, logger);
    const docs = new OidcDocuments(config, feed);
    const done = new AbortController();
    const onStop = (): void => done.abort();
    stop.addEventListener('abort', onStop, { once: true });
    let writing: Promise<void> = Promise.resolve();
    let failure: unknown;
    feed.on('keys', () => {
      writing = writing.then(async () => {
        try {
          if (await exportDocuments(docs, dir)) {
            io.err(`sigil oidc export: wrote ${config.discoveryPath} and ${config.jwksPath} below ${dir} (${feed.state().keys} keys)\n`);
            if (!watch) done.abort();
          }
        } catch (err) {
          failure = err;
          done.abort();
        }
      });
    });
    const feeding = startFeed(config, feed, logger, done.signal);
    await untilAborted(done.signal);
    await writing;
    await feeding;
    stop.removeEventListener('abort', onStop);
    if (failure !== undefined) throw failure;
  });
}

/** Runs `sigil oidc serve|export`. */
export async function run(command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    return command === 'serve' ? await serve(args, io) : await exportFiles(args, io);
  } catch (err) {
    return reportError(io, err);
  }
}
