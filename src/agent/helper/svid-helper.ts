/**
 * The helper's loop for programs that cannot speak the Workload API: on every X.509 update
 * it writes the chosen SVID's (the default identity, or the one config `spiffeId`/`hint`
 * select) chain, key (0600) and bundle atomically, keeps configured JWT-SVID files fresh
 * (renewed at half of their life; each for the identity its item selects, by default the
 * one of the X.509 files), then reloads the program. It takes
 * its updates from a HelperSource (the CLI wires the Workload API client in), so it never
 * touches gRPC itself. Keys and tokens are never logged: serials, IDs and expiries are.
 */
import { Backoff } from '../../common/backoff.js';
import { systemClock, type Clock, type TimerHandle } from '../../common/clock.js';
import { toSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { logRetry } from '../../common/retry-log.js';
import type { BundleSet } from '../../spiffe/bundle-set.js';
import type { JwtSvid } from '../../spiffe/jwt-svid.js';
import type { X509Svid } from '../../spiffe/x509-svid.js';
import { writeFileAtomic } from './file-writer.js';
import type { HelperConfig } from './helper-config.js';
import { reload } from './reloader.js';

/** An X.509 update as the helper needs it. */
export interface HelperX509Update {
  readonly svids: readonly X509Svid[];
  /** X.509 bundles by trust domain, own and federated. */
  readonly bundles: BundleSet;
}

/** Where the helper's identities come from (a Workload API client in practice). */
export interface HelperSource {
  /** Calls `onUpdate` with every X.509 update until `signal` aborts; resolves then. */
  watchX509(onUpdate: (update: HelperX509Update) => void, signal: AbortSignal): Promise<void>;
  /** One JWT-SVID for the audiences, of the identity `selection` picks (by SPIFFE ID and/or hint; neither: the default identity). */
  fetchJwt(audience: readonly string[], selection: JwtSelection, signal?: AbortSignal): Promise<JwtSvid>;
  /** The JWT bundles, own and federated. */
  fetchJwtBundles(signal?: AbortSignal): Promise<BundleSet>;
}

/** Which JWT-SVID a jwtSvids item is for (helper-config.ts says how the item's selection is resolved). */
export interface JwtSelection {
  readonly spiffeId?: string | undefined;
  readonly hint?: string | undefined;
}

/** Options of runHelper. */
export interface HelperOptions {
  readonly config: HelperConfig;
  readonly source: HelperSource;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Called after each complete write of the X.509 files (with the leaf serial). */
  readonly onX509Written?: (serial: string) => void;
  /** Stop after the first complete write (`sigil helper --once`). */
  readonly once?: boolean;
}

/** The SVID the config selects: by `spiffeId` and/or `hint`, else the default identity (svids[0]). */
export function selectSvid(svids: readonly X509Svid[], selection: Pick<HelperConfig, 'spiffeId' | 'hint'>): X509Svid | undefined {
  if (selection.spiffeId === undefined && selection.hint === undefined) return svids[0];
  return svids.find((s) => (selection.spiffeId === undefined || s.id.toString() === selection.spiffeId) && (selection.hint === undefined || s.hint === selection.hint));
}

/** Runs the helper until `signal` aborts (or after the first write with `once`). */
export async function runHelper(options: HelperOptions, signal: AbortSignal): Promise<void> {
  const { config, source, logger } = options;
  const clock = options.clock ?? systemClock;
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const jwtTimers = new Map<string, TimerHandle>();
  let chain: Promise<void> = Promise.resolve();
  let lastSerial = '';
  // Logged once per distinct miss: updates repeat while the helper waits for a matching SVID.
  let lastMiss = '';
  let jwtStarted = false;

  const doReload = async (): Promise<void> => {
    if (config.reload === undefined) return;
    try {
      await reload(config.reload, stop.signal);
      logger.info({ kind: config.reload.kind }, 'reload sent');
    } catch (err) {
      logger.warn({ err }, 'reload failed');
    }
  };

  const writeX509 = async (update: HelperX509Update): Promise<void> => {
    const svid = selectSvid(update.svids, config);
    if (svid === undefined) {
      const available = update.svids.map((s) => (s.hint === '' ? s.id.toString() : `${s.id.toString()} (hint ${s.hint})`));
      const miss = available.join(',');
      if (miss !== lastMiss) {
        lastMiss = miss;
        logger.error(
          { reason: 'no-matching-svid', spiffeId: config.spiffeId, hint: config.hint, available },
          'no x509 svid matches the helper selection; files left as they are, waiting for an update',
        );
      }
      return;
    }
    lastMiss = '';
    if (svid.serial === lastSerial) return;
    const own = update.bundles.get(svid.id.trustDomain);
    const pems = [own?.x509ToPem() ?? ''];
    if (config.includeFederatedBundles) {
      for (const b of update.bundles.list()) if (b.trustDomain.name !== svid.id.trustDomain.name) pems.push(b.x509ToPem());
    }
    const { certificates, privateKey } = svid.toPem();
    // Key first: a program that reloads on its own then finds a key at least as new as the cert it pairs with.
    writeFileAtomic(config.certDir, config.svidKeyFileName, privateKey, 0o600);
    writeFileAtomic(config.certDir, config.svidFileName, certificates, 0o644);
    writeFileAtomic(config.certDir, config.svidBundleFileName, pems.join(''), 0o644);
    if (config.jwtBundleFileName !== undefined) {
      try {
        const jwtBundles = await source.fetchJwtBundles(stop.signal);
        const doc = Object.fromEntries(jwtBundles.list().map((b) => [b.trustDomain.idString, JSON.parse(Buffer.from(b.jwtToJwksBytes()).toString('utf8')) as unknown]));
        writeFileAtomic(config.certDir, config.jwtBundleFileName, `${JSON.stringify(doc, null, 2)}\n`, 0o644);
      } catch (err) {
        logger.warn({ err }, 'fetching JWT bundles failed');
      }
    }
    lastSerial = svid.serial;
    logger.info({ spiffeId: svid.id.toString(), serial: svid.serial, notAfter: svid.notAfter.toISOString(), dir: config.certDir }, 'x509 svid written');
    await doReload();
    options.onX509Written?.(svid.serial);
    if (options.once === true && config.jwtSvids.length === 0) stop.abort();
  };

  const refreshJwt = async (index: number, backoff: Backoff): Promise<void> => {
    const spec = config.jwtSvids[index];
    if (spec === undefined || stop.signal.aborted) return;
    let delay: number;
    try {
      const jwt = await source.fetchJwt(spec.audience, { spiffeId: spec.spiffeId, hint: spec.hint }, stop.signal);
      writeFileAtomic(config.certDir, spec.fileName, jwt.marshal(), 0o600);
      backoff.reset();
      const now = clock.nowMs();
      const exp = jwt.expiry.getTime();
      const start = Math.max(jwt.issuedAt?.getTime() ?? now, Math.min(now, exp));
      delay = Math.max(1000, start + (exp - start) / 2 - now);
      logger.info({ spiffeId: jwt.id.toString(), jti: jwt.jti, expiresAt: jwt.expiry.toISOString(), file: spec.fileName }, 'jwt svid written');
      if (options.once === true && index === config.jwtSvids.length - 1) stop.abort();
    } catch (err) {
      if (stop.signal.aborted) return;
      delay = backoff.next();
      logRetry(logger, toSigilError(err), { retryInMs: delay, file: spec.fileName }, 'fetching JWT-SVID failed');
    }
    if (stop.signal.aborted) return;
    jwtTimers.set(spec.fileName, clock.setTimer(() => void refreshJwt(index, backoff), delay));
  };

  try {
    await source.watchX509((update) => {
      chain = chain
        .then(() => writeX509(update))
        .then(() => {
          if (!jwtStarted) {
            jwtStarted = true;
            config.jwtSvids.forEach((_, i) => void refreshJwt(i, new Backoff({ initialMs: 1000, maxMs: 30_000 })));
          }
        })
        .catch((err: unknown) => logger.error({ err }, 'writing SVID files failed'));
    }, stop.signal);
    await chain;
  } finally {
    signal.removeEventListener('abort', onAbort);
    for (const t of jwtTimers.values()) t.cancel();
  }
}
