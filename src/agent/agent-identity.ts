/**
 * The agent's own identity: loaded from the data dir or obtained by node attestation, renewed
 * before half of its life, and re-obtained in process when it expired or the server no longer
 * knows the agent (evicted). x509pop evidence can attest again at any time; a join token
 * attests once, so re-attestation then waits for a new token in the token file and says so.
 */
import { Backoff } from '../common/backoff.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { SigilError, isSigilError, toSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';
import type { Secret } from '../common/secret.js';
import { ParsedCertificate } from '../spiffe/certificate.js';
import type { AgentStore } from './agent-store.js';
import type { AgentNodeAttestorConfig } from './config.js';
import { generateKeyAndCsr, type KeyAndCsr } from './csr.js';
import { prepareNodeAttestor } from './node-attestor.js';
import { rotationDelayMs } from './rotation.js';
import { chainUsesTainted } from './tainted-authorities.js';
import type { AgentServerClient, WireX509Svid } from './server-client.js';

/** The agent SVID in use. */
export interface AgentSvid {
  readonly spiffeId: string;
  readonly chainDer: readonly Buffer[];
  readonly keyPkcs8Der: Secret<Buffer>;
  readonly serial: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly receivedAtMs: number;
  readonly canReattest: boolean;
  readonly attestor: string;
}

/** Dependencies of an AgentIdentityManager. */
export interface AgentIdentityOptions {
  readonly attestorConfig: AgentNodeAttestorConfig;
  readonly store: AgentStore;
  readonly client: AgentServerClient;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random?: () => number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** Called with every new identity and with the roots the attestation returned. */
  readonly onIdentity?: (svid: AgentSvid) => void;
  /** Called with the server's X.509 authorities (DER) learned from attestation. */
  readonly onRoots?: (roots: Buffer[]) => void;
  /** How long to wait between checks while the server has banned this agent; 5 minutes by default. */
  readonly bannedRetryMs?: number;
}

/** Default wait between checks while banned: an unban is an operator's act, not something to poll for. */
export const DEFAULT_BANNED_RETRY_MS = 5 * 60_000;

/** True when the server refused this agent because an operator banned it (reason from the server). */
export function isAgentBanned(err: unknown): boolean {
  return isSigilError(err, 'ERR_PERMISSION_DENIED') && err.reason === 'agent-banned';
}

function svidFrom(wire: WireX509Svid, key: Secret<Buffer>, spkiDer: Buffer | undefined, receivedAtMs: number, canReattest: boolean, attestor: string): AgentSvid {
  const [leafDer] = wire.cert_chain;
  if (leafDer === undefined) throw new SigilError('ERR_INTERNAL', 'server sent an empty agent SVID chain', { reason: 'empty-chain' });
  const leaf = ParsedCertificate.fromDer(leafDer);
  if (spkiDer !== undefined && !Buffer.from(leaf.facts.spki).equals(spkiDer)) {
    throw new SigilError('ERR_INTERNAL', 'agent SVID does not carry the requested public key', { reason: 'key-mismatch' });
  }
  return {
    spiffeId: wire.spiffe_id,
    chainDer: wire.cert_chain,
    keyPkcs8Der: key,
    serial: wire.serial,
    notBeforeMs: leaf.facts.notBefore.getTime(),
    notAfterMs: leaf.facts.notAfter.getTime(),
    receivedAtMs,
    canReattest,
    attestor,
  };
}

/** True for refusals meaning "the server does not accept this agent SVID any more". */
export function isAgentRejected(err: unknown): boolean {
  return isSigilError(err, 'ERR_PERMISSION_DENIED') || isSigilError(err, 'ERR_UNAUTHENTICATED');
}

/** Owns the agent SVID: attestation, persistence, renewal and re-attestation. */
export class AgentIdentityManager {
  readonly #o: AgentIdentityOptions;
  readonly #backoff: Backoff;
  #current: AgentSvid | undefined;
  #timer: TimerHandle | undefined;
  #reattesting: Promise<void> | undefined;
  #spentToken = '';
  /**
   * The key of a join-token attestation that failed without an answer (unreachable, deadline,
   * cancelled): the server may have admitted it and lost the reply, and it lets only this key
   * finish that attestation, so the retry with the same token uses the same key.
   */
  #unanswered: { readonly evidence: string; readonly key: KeyAndCsr } | undefined;
  #stopped = new AbortController();

  constructor(options: AgentIdentityOptions) {
    this.#o = options;
    this.#backoff = new Backoff({ initialMs: options.retryInitialMs ?? 1000, maxMs: options.retryMaxMs ?? 30_000, ...(options.random ? { random: options.random } : {}) });
  }

  /** The SVID in use, if any. */
  get current(): AgentSvid | undefined {
    return this.#current;
  }

  /**
   * Loads a still-valid stored identity or attests, retrying while the server is unreachable;
   * rejects on a refusal (bad or spent token, wrong proof, banned) or when `signal` aborts.
   */
  async start(signal?: AbortSignal): Promise<AgentSvid> {
    const { store, clock, logger } = this.#o;
    const stored = store.loadIdentity();
    if (stored !== undefined) {
      const svid = svidFrom(
        { spiffe_id: stored.spiffeId, cert_chain: [...stored.chainDer], serial: '', expires_at: '0' },
        stored.keyPkcs8Der,
        undefined,
        clock.nowMs(),
        stored.canReattest,
        stored.attestor,
      );
      const serial = ParsedCertificate.fromDer(stored.chainDer[0] as Buffer).serial;
      if (svid.notAfterMs > clock.nowMs()) {
        logger.info({ agentId: svid.spiffeId, serial, notAfter: new Date(svid.notAfterMs).toISOString() }, 'agent SVID loaded from data dir');
        this.#install({ ...svid, serial }, false);
        return this.#current as AgentSvid;
      }
      logger.info({ agentId: svid.spiffeId, notAfter: new Date(svid.notAfterMs).toISOString() }, 'stored agent SVID expired; attesting again');
    }
    for (;;) {
      try {
        await this.#attest(signal);
        return this.#current as AgentSvid;
      } catch (err) {
        if (!isSigilError(err, 'ERR_UNAVAILABLE') && !isSigilError(err, 'ERR_DEADLINE_EXCEEDED')) throw err;
        const delay = this.#backoff.next();
        logRetry(logger, err, { retryInMs: delay }, 'server unreachable for node attestation; retrying');
        await clock.sleep(delay, signal);
      }
    }
  }

  /**
   * Obtains a new agent SVID by attesting again (after an eviction or expiry), in process.
   * Concurrent callers share one attempt; retries until it works or the manager stops.
   */
  reattest(why: string): Promise<void> {
    this.#reattesting ??= this.#reattestLoop(why).finally(() => {
      this.#reattesting = undefined;
    });
    return this.#reattesting;
  }

  async #reattestLoop(why: string): Promise<void> {
    const { logger, clock, store } = this.#o;
    const signal = this.#stopped.signal;
    while (why === 'rejected' && this.#current !== undefined && this.#current.notAfterMs > clock.nowMs()) {
      // A call made with the SVID just replaced by a renewal is refused too: only a refusal
      // of the current SVID means eviction. Re-attesting needlessly would spend a join token.
      try {
        await this.#o.client.getBundle(signal);
        logger.info({ agentId: this.#current.spiffeId }, 'agent SVID still accepted; no re-attestation needed');
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (!isAgentRejected(err)) {
          logRetry(logger, err, {}, 'cannot confirm whether the agent SVID is still accepted; will check again');
          return;
        }
        if (!isAgentBanned(err)) break;
        // Banned: attesting again is refused too (and would spend a join token). The SVID is
        // kept: once an operator unbans the agent it is accepted again, so only check, slowly.
        if (!(await this.#waitWhileBanned(err))) return;
      }
    }
    logger.warn({ agentId: this.#current?.spiffeId, why }, 'agent must attest again');
    // The stored SVID is no good any more: a restart must not try it again.
    if (why === 'rejected') store.clearIdentity();
    for (;;) {
      if (signal.aborted) return;
      try {
        await this.#attest(signal);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (isAgentBanned(err)) {
          if (!(await this.#waitWhileBanned(err))) return;
          continue;
        }
        const delay = this.#backoff.next();
        const se = toSigilError(err);
        if (se.reason === 'join-token-spent') logger.error({ code: se.code, reason: se.reason, retryInMs: delay }, se.message);
        else logRetry(logger, se, { retryInMs: delay }, 'agent re-attestation failed; retrying');
        try {
          await clock.sleep(delay, signal);
        } catch {
          return;
        }
      }
    }
  }

  /** Logs the ban once per check and waits; false when the manager stopped meanwhile. */
  async #waitWhileBanned(err: unknown): Promise<boolean> {
    const delay = this.#o.bannedRetryMs ?? DEFAULT_BANNED_RETRY_MS;
    const se = toSigilError(err);
    this.#o.logger.error(
      { agentId: this.#current?.spiffeId, code: se.code, reason: se.reason, retryInMs: delay },
      'the server has banned this agent; an operator must unban it (sigil agent unban) before it is served again',
    );
    try {
      await this.#o.clock.sleep(delay, this.#stopped.signal);
      return true;
    } catch {
      return false;
    }
  }

  async #attest(signal?: AbortSignal): Promise<void> {
    const { attestorConfig, client, clock, logger, store } = this.#o;
    const prepared = prepareNodeAttestor(attestorConfig);
    if (prepared.evidenceFingerprint !== '' && prepared.evidenceFingerprint === this.#spentToken) {
      throw new SigilError(
        'ERR_ATTESTATION_FAILED',
        `agent must attest again but its join token was already used; join tokens attest once: write a new token to ${attestorConfig.type === 'join_token' ? attestorConfig.tokenFile : 'the token file'}`,
        { reason: 'join-token-spent' },
      );
    }
    const evidence = prepared.evidenceFingerprint;
    const unanswered = this.#unanswered;
    this.#unanswered = undefined;
    const keyAndCsr = evidence !== '' && unanswered?.evidence === evidence ? unanswered.key : await generateKeyAndCsr();
    let outcome;
    try {
      outcome = await client.attest(prepared.attestor, keyAndCsr.csrDer, signal);
    } catch (err) {
      if (evidence !== '' && (isSigilError(err, 'ERR_PERMISSION_DENIED') || isSigilError(err, 'ERR_ATTESTATION_FAILED'))) {
        this.#spentToken = evidence;
      } else if (evidence !== '') {
        this.#unanswered = { evidence, key: keyAndCsr };
      }
      throw err;
    }
    if (prepared.evidenceFingerprint !== '') this.#spentToken = prepared.evidenceFingerprint;
    const svid = svidFrom(outcome.svid, keyAndCsr.keyPkcs8Der, keyAndCsr.spkiDer, clock.nowMs(), outcome.canReattest, prepared.attestor.name);
    this.#o.onRoots?.(outcome.bundle.x509_authorities);
    store.saveBundle(outcome.bundle.x509_authorities);
    logger.info({ agentId: svid.spiffeId, serial: svid.serial, notAfter: new Date(svid.notAfterMs).toISOString(), attestor: svid.attestor }, 'agent attested');
    this.#install(svid, true);
  }

  #install(svid: AgentSvid, persist: boolean): void {
    if (persist) {
      this.#o.store.saveIdentity({ spiffeId: svid.spiffeId, chainDer: svid.chainDer, keyPkcs8Der: svid.keyPkcs8Der, canReattest: svid.canReattest, attestor: svid.attestor });
    }
    this.#current = svid;
    this.#backoff.reset();
    this.#o.client.setIdentity({ chainDer: svid.chainDer, keyPkcs8Der: svid.keyPkcs8Der });
    this.#o.onIdentity?.(svid);
    this.#schedule(rotationDelayMs(svid, this.#o.clock.nowMs(), this.#o.random));
  }

  #schedule(delayMs: number): void {
    this.#timer?.cancel();
    if (this.#stopped.signal.aborted) return;
    this.#timer = this.#o.clock.setTimer(() => void this.#renew(), delayMs);
  }

  async #renew(): Promise<void> {
    const { client, clock, logger } = this.#o;
    const cur = this.#current;
    if (cur === undefined || this.#stopped.signal.aborted || this.#reattesting !== undefined) return;
    if (cur.notAfterMs <= clock.nowMs()) {
      await this.reattest('expired');
      return;
    }
    try {
      const keyAndCsr = await generateKeyAndCsr();
      const wire = await client.renew(keyAndCsr.csrDer, this.#stopped.signal);
      const svid = svidFrom(wire, keyAndCsr.keyPkcs8Der, keyAndCsr.spkiDer, clock.nowMs(), cur.canReattest, cur.attestor);
      logger.info({ agentId: svid.spiffeId, serial: svid.serial, notAfter: new Date(svid.notAfterMs).toISOString() }, 'agent SVID renewed');
      this.#install(svid, true);
    } catch (err) {
      if (this.#stopped.signal.aborted) return;
      if (isAgentRejected(err)) {
        await this.reattest('rejected');
        return;
      }
      const delay = Math.min(this.#backoff.next(), Math.max(0, cur.notAfterMs - clock.nowMs()));
      logRetry(logger, err, { retryInMs: delay }, 'agent SVID renewal failed; retrying');
      this.#schedule(delay);
    }
  }

  /**
   * Renews the agent SVID after `delayMs` when its chain involves a tainted authority (see
   * tainted-authorities.ts), so the agent keeps being accepted once the authority is revoked.
   * True when a renewal was scheduled.
   */
  renewIfTainted(tainted: ReadonlySet<string>, delayMs: number): boolean {
    const cur = this.#current;
    if (cur === undefined || this.#stopped.signal.aborted || !chainUsesTainted(cur.chainDer, tainted)) return false;
    this.#o.logger.warn({ agentId: cur.spiffeId, serial: cur.serial, inMs: delayMs }, 'agent SVID chains to a tainted authority; renewing it');
    this.#schedule(delayMs);
    return true;
  }

  /** Stops renewal and any re-attestation loop. */
  stop(): void {
    this.#stopped.abort(new SigilError('ERR_CANCELLED', 'agent stopping', { reason: 'stopping' }));
    this.#timer?.cancel();
  }
}

