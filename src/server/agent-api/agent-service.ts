/**
 * Handlers of sigil.agent.v1.Agent (see proto/sigil/agent/v1/agent.proto for the flow).
 * Every refusal is a SigilError mapped to a gRPC status at the edge; SVID issuance and
 * refusals are audited; no token, key or JWT reaches a log line.
 */
import type {
  sendUnaryData,
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { createHash } from 'node:crypto';
import { isSigilError, SigilError, toSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { Datastore, RegistrationEntry } from '../../datastore/datastore.js';
import { STATUS_BY_CODE, toServiceError } from '../../grpc/status.js';
import type { NodeAttestorServer, NodeAttestationResult } from '../../plugin/node-attestor.js';
import { SpiffeId, type TrustDomain } from '../../spiffe/spiffe-id.js';
import type { AuditLog, AuditRecord } from '../audit-log.js';
import { EntryAuthorizer, type AgentFacts } from '../authorized-entries.js';
import type { BundleManager } from '../bundle-manager.js';
import type { Change, ChangeHub, EntryChange, EntryInterest } from '../change-hub.js';
import type { ServerMetrics } from '../metrics.js';
import { csrPublicKeyInfo } from '../../ca/csr.js';
import type { ReservedIssuance } from '../../ca/reserved-issuance.js';
import type { ServerCa, SignedX509Svid } from '../server-ca.js';
import type { AgentConnections } from './agent-connections.js';
import { authenticateAgent, normalizeSerial, type AgentCaller, type CallAuthContext } from './caller.js';
import { BoundedMessageQueue } from './bounded-message-queue.js';
import { callerGoneReason, callLifetime, type CallLifetime } from './call-lifetime.js';
import { AgentSyncState } from './sync-state.js';
import {
  bundleToMsg,
  checkAttestationMessage,
  checkAttestorName,
  checkAudience,
  checkCsr,
  checkEntryId,
  entrySizeEstimate,
  entryToMsg,
  type AttestAgentRequestMsg,
  type BundleMsg,
  type EntryMsg,
  type StatusMsg,
  type X509SvidMsg,
} from './wire.js';

/** Everything the agent API handlers use. */
export interface AgentServiceDeps {
  readonly ds: Datastore;
  readonly ca: ServerCa;
  /** The CA's agent capability: attestation and renewal sign agent IDs with it, nothing else does. */
  readonly agentIssuance: ReservedIssuance;
  readonly bundles: BundleManager;
  readonly hub: ChangeHub;
  readonly trustDomain: TrustDomain;
  readonly attestors: ReadonlyMap<string, NodeAttestorServer>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditLog;
  readonly metrics: ServerMetrics;
  readonly agentSvidTtlMs: number;
  readonly defaultX509SvidTtlMs: number;
  readonly defaultJwtSvidTtlMs: number;
  /** The agent API's live connections, where each one's authenticated agent is remembered. */
  readonly connections: AgentConnections;
}

/** Default and maximum entries per SyncEntries page. */
export const SYNC_PAGE_SIZE = { default: 500, max: 1000 } as const;
/** Byte budget of one page of entries (the gRPC limit is 4 MiB). */
const SYNC_PAGE_BYTES = 1024 * 1024;
/** Most CSRs in one BatchNewX509SVID call. */
export const MAX_BATCH_CSRS = 500;
const MAX_ATTEST_ROUNDS = 8;
/** Most AttestAgent messages kept unread; the protocol needs one in flight per challenge. */
export const MAX_QUEUED_ATTEST_MESSAGES = 4;

function svidMsg(spiffeId: string, s: SignedX509Svid): X509SvidMsg {
  return {
    spiffe_id: spiffeId,
    cert_chain: [...s.chain],
    serial: normalizeSerial(s.serial),
    expires_at: Math.floor(s.notAfter.getTime() / 1000),
  };
}

function joinTokenUnknown(): SigilError {
  return new SigilError('ERR_ATTESTATION_FAILED', 'join token is unknown or already used', { reason: 'join-token-unknown' });
}

function okStatus(): StatusMsg {
  return { code: 0, message: '', sigil_code: '' };
}

function errStatus(err: SigilError): StatusMsg {
  return { code: STATUS_BY_CODE[err.code], message: err.message, sigil_code: err.code };
}

/** Builds the service implementation for `server.addService`. */
export function createAgentService(deps: AgentServiceDeps): UntypedServiceImplementation & { closeStreams(): void } {
  const { ds, ca, trustDomain, clock, logger, audit, metrics, connections } = deps;
  const openStreams = new Set<() => void>();
  /**
   * CSRs of X.509 batches admitted by the shedding check and not yet handed to the signing
   * threads (their entries are being read). The pool counts a batch only once its signatures are
   * queued, so without these a burst of calls arriving together was admitted whole against the
   * same backlog: sixteen batches past a check that had room for three, signing for callers that
   * gave up before their turn.
   */
  let admittedCsrs = 0;
  // Subscribed before any stream: a stream re-authenticating on an agent change must not find
  // the agent remembered from before it.
  const unsubscribeAgents = deps.hub.subscribe((change) => {
    if (change.kind === 'agents') connections.forget(change.agentId);
  }, ['agents']);

  /** The agent behind a call: remembered for its connection, else authenticated (certificate and record) and remembered. */
  const authenticate = async (call: { getPeer(): string; getAuthContext(): CallAuthContext }): Promise<AgentCaller> => {
    const peer = call.getPeer();
    const known = connections.remembered(peer);
    if (known !== undefined) return known;
    const epoch = connections.epoch;
    const caller = await authenticateAgent(call.getAuthContext(), ds, trustDomain);
    // the superseded SVID may still be remembered on the agent's older connections
    if (caller.promoted === true) connections.forget(caller.agentId);
    else connections.remember(peer, caller, epoch);
    return caller;
  };

  const fail = (err: unknown, what: string): ReturnType<typeof toServiceError> => {
    const se = toSigilError(err);
    if (se.code === 'ERR_INTERNAL') {
      // the cause stays in our log; the caller learns only that it was internal
      logger.error({ err }, `${what} failed`);
      return toServiceError(new SigilError('ERR_INTERNAL', 'internal error'));
    }
    logger.info({ code: se.code, reason: se.reason }, `${what} refused`);
    return toServiceError(se);
  };

  const unary = <Req, Res>(what: string, fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) => {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      fn(call).then(
        (res) => callback(null, res),
        (err: unknown) => callback(fail(err, what)),
      );
    };
  };

  const sign = async (kind: 'agent' | 'x509', spiffeId: string, csr: Uint8Array, ttlMs: number, dnsNames?: string[], signal?: AbortSignal): Promise<SignedX509Svid> => {
    const end = metrics.issueLatency.startTimer({ kind });
    try {
      const s = await ca.signX509SvidFromCsr({
        csr,
        spiffeId: SpiffeId.parse(spiffeId),
        ttlMs,
        ...(dnsNames && dnsNames.length > 0 ? { dnsNames } : {}),
        ...(signal === undefined ? {} : { signal }),
        // only the agent's own SVID may be an agent ID; an entry's SVID never gets the capability
        ...(kind === 'agent' ? { issuance: deps.agentIssuance } : {}),
      });
      metrics.svidsIssued.inc({ kind, result: 'ok' });
      return s;
    } catch (err) {
      metrics.svidsIssued.inc({ kind, result: 'error' });
      throw err;
    } finally {
      end();
    }
  };

  async function ownBundleMsg(): Promise<BundleMsg> {
    return bundleToMsg(await deps.bundles.ownParsed());
  }

  async function attest(call: ServerDuplexStream<AttestAgentRequestMsg, unknown>): Promise<void> {
    // The protocol has at most one message in flight per challenge; anything beyond a few
    // unread messages is a flood from a caller not yet authenticated, so it fails the stream.
    const queue = new BoundedMessageQueue<AttestAgentRequestMsg>(MAX_QUEUED_ATTEST_MESSAGES);
    let settled = false;
    call.on('data', (m: AttestAgentRequestMsg) => {
      if (queue.push(m) !== 'overflow') return;
      const err = new SigilError('ERR_INVALID_ARGUMENT', `more than ${MAX_QUEUED_ATTEST_MESSAGES} attestation messages sent ahead of the server`, {
        reason: 'attestation-flood',
      });
      queue.fail(err);
      // fail now rather than at the next read: the handler may be busy in a verification step
      refuse(err);
    });
    const onEnd = (): void => queue.end();
    call.on('end', onEnd);
    call.on('cancelled', onEnd);
    call.on('error', onEnd);
    const nextMessage = (): Promise<AttestAgentRequestMsg | undefined> => queue.next();

    let attestorName = 'unknown';
    let agentIdForAudit: string | undefined;
    // the caller's lifetime: nothing is spent or recorded for a caller that has gone
    const life = callLifetime(call);
    life.signal.addEventListener('abort', () => logger.debug({ attestor: attestorName, agentId: agentIdForAudit }, 'attestation caller gone'), { once: true });
    try {
      const first = await nextMessage();
      if (first === undefined) throw new SigilError('ERR_INVALID_ARGUMENT', 'attestation stream ended before its first message', { reason: 'no-params' });
      const params = first.params;
      if (first.step !== 'params' || params === undefined || params === null) {
        throw new SigilError('ERR_INVALID_ARGUMENT', 'first attestation message must carry params', { reason: 'no-params' });
      }
      const name = checkAttestorName(params.attestor);
      attestorName = name;
      const attestor = deps.attestors.get(name);
      if (attestor === undefined) {
        attestorName = 'unknown';
        throw new SigilError('ERR_INVALID_ARGUMENT', `node attestor ${JSON.stringify(name)} is not enabled on this server`, {
          reason: 'unknown-attestor',
        });
      }
      const csr = checkCsr(params.csr, 'attestation params');
      const session = attestor.begin(trustDomain);
      let step = await session.next(checkAttestationMessage(params.payload, 'attestation payload'));
      let rounds = 0;
      while (step.kind === 'challenge') {
        if (++rounds > MAX_ATTEST_ROUNDS) throw new SigilError('ERR_ATTESTATION_FAILED', 'too many attestation rounds', { reason: 'too-many-rounds' });
        queue.throwIfFailed();
        call.write({ challenge: Buffer.from(step.challenge) });
        const reply = await nextMessage();
        if (reply === undefined || reply.step !== 'challenge_response' || reply.challenge_response === undefined) {
          throw new SigilError('ERR_ATTESTATION_FAILED', 'expected a challenge response', { reason: 'no-challenge-response' });
        }
        step = await session.next(checkAttestationMessage(reply.challenge_response, 'challenge response'));
      }
      const result = step.result;
      // a stream already failed by a flood must not admit the node or spend its evidence
      queue.throwIfFailed();
      agentIdForAudit = result.agentId.toString();
      const svid = await admitAgent(result, attestor.name, csr, life.signal);
      const bundle = await ownBundleMsg();
      if (life.signal.aborted && !settled) {
        // admitted (the node and its committed agent.attest record stand), then the caller left:
        // this line says the answer was not delivered; its retry with the same key finishes
        settled = true;
        metrics.attestations.inc({ attestor: attestorName, result: 'refused' });
        // the committed record's line first, then what became of the answer
        await audit.committed();
        audit.record({
          who: agentIdForAudit,
          action: 'agent.attest',
          result: 'error',
          spiffeId: agentIdForAudit,
          serial: normalizeSerial(svid.serial),
          reason: callerGoneReason(life.signal),
          detail: { attestor: attestor.name },
        });
        return;
      }
      metrics.attestations.inc({ attestor: attestorName, result: 'ok' });
      // admitAgent stored the record with the node; its line is out before the SVID is
      await audit.committed();
      logger.info({ agentId: agentIdForAudit, attestor: attestor.name, serial: normalizeSerial(svid.serial) }, 'agent attested');
      if (settled) return;
      settled = true;
      call.write({ result: { svid: svidMsg(agentIdForAudit, svid), bundle, can_reattest: result.canReattest } });
      call.end();
    } catch (err) {
      refuse(err);
    } finally {
      life.release();
    }

    /** Audits and fails the stream once; a flood may fail it while the handler is still awaiting. */
    function refuse(err: unknown): void {
      if (settled) return;
      settled = true;
      const se = toSigilError(err);
      metrics.attestations.inc({ attestor: attestorName, result: 'refused' });
      audit.record({
        who: agentIdForAudit ?? 'anonymous',
        action: 'agent.attest',
        result: se.code === 'ERR_INTERNAL' ? 'error' : 'denied',
        ...(agentIdForAudit === undefined ? {} : { spiffeId: agentIdForAudit }),
        reason: se.reason ?? se.code,
        detail: { attestor: attestorName },
      });
      call.emit('error', fail(se, 'node attestation'));
    }
  }

  /**
   * Refuses banned agents and spent evidence, signs the agent SVID, then records the node and
   * spends one-time evidence in one transaction that commits only while the caller still waits:
   * a caller that gave up (cancelled, or past its deadline) spends nothing and its retry attests.
   * The answer can still be lost after the commit; then the same agent key may finish again.
   * Its `agent.attest` audit record commits in the same transaction as the node.
   */
  async function admitAgent(result: NodeAttestationResult, attestorName: string, csr: Uint8Array, signal: AbortSignal): Promise<SignedX509Svid> {
    const agentId = result.agentId.toString();
    const existing = await ds.getAttestedNode(agentId);
    if (existing?.banned === true) {
      throw new SigilError('ERR_PERMISSION_DENIED', `agent ${agentId} is banned`, { reason: 'agent-banned' });
    }
    let joinToken: { tokenHash: string; agentKey: string } | undefined;
    if (result.spends !== undefined) {
      // the key the token is spent to; the CSR's signature is verified where it is signed
      const agentKey = createHash('sha256').update(csrPublicKeyInfo(csr)).digest('hex');
      // spent by another key: refused before anything is signed for it
      if (result.spends.spentBy !== '' && result.spends.spentBy !== agentKey) throw joinTokenUnknown();
      joinToken = { tokenHash: result.spends.joinTokenHash, agentKey };
    }
    const svid = await sign('agent', agentId, csr, deps.agentSvidTtlMs, undefined, signal);
    const node = {
      spiffeId: agentId,
      attestationType: attestorName,
      certSerial: normalizeSerial(svid.serial),
      certNotAfter: svid.notAfter.getTime(),
      newCertSerial: '',
      newCertNotAfter: 0,
      selectors: [...result.selectors],
      banned: false,
      canReattest: result.canReattest,
    };
    const record = (): AuditRecord => ({
      who: agentId,
      action: 'agent.attest',
      result: 'ok',
      spiffeId: agentId,
      serial: node.certSerial,
      expiresAt: svid.notAfter.toISOString(),
      detail: { attestor: attestorName },
    });
    try {
      await ds.admitAttestedNode({ node, ...(joinToken === undefined ? {} : { joinToken }) }, signal, record);
    } catch (err) {
      if (isSigilError(err, 'ERR_NOT_FOUND') && err.reason === 'join-token-unknown') throw joinTokenUnknown();
      if (isSigilError(err, 'ERR_FAILED_PRECONDITION') && err.reason === 'agent-banned') {
        throw new SigilError('ERR_PERMISSION_DENIED', `agent ${agentId} is banned`, { reason: 'agent-banned' });
      }
      throw err;
    }
    deps.hub.notify('agents', agentId);
    return svid;
  }

  async function renew(call: ServerUnaryCall<{ csr: Buffer }, unknown>): Promise<unknown> {
    const caller = await authenticate(call);
    const csr = checkCsr(call.request.csr, 'renewal');
    const svid = await sign('agent', caller.agentId, csr, deps.agentSvidTtlMs);
    await ds.updateAttestedNode({ ...caller.node, newCertSerial: normalizeSerial(svid.serial), newCertNotAfter: svid.notAfter.getTime() }, () => ({
      who: caller.agentId,
      action: 'agent.renew',
      result: 'ok',
      spiffeId: caller.agentId,
      serial: normalizeSerial(svid.serial),
      expiresAt: svid.notAfter.toISOString(),
    }));
    // what is remembered of this agent carries the record from before the renewal
    connections.forget(caller.agentId);
    await audit.committed();
    return { svid: svidMsg(caller.agentId, svid) };
  }

  const authorizerFor = (caller: AgentCaller): EntryAuthorizer =>
    new EntryAuthorizer(ds, trustDomain, { agentId: caller.agentId, nodeSelectors: caller.node.selectors }, clock.nowMs());

  async function batchNewX509Svid(
    call: ServerUnaryCall<{ params: { entry_id: string; csr: Buffer }[] }, unknown>,
  ): Promise<unknown> {
    const caller = await authenticate(call);
    const params = call.request.params;
    if (params.length > MAX_BATCH_CSRS) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `at most ${MAX_BATCH_CSRS} CSRs per call, got ${params.length}`, { reason: 'batch-too-large' });
    }
    const life = callLifetime(call);
    try {
      return await signBatch(caller, params, life);
    } finally {
      life.release();
    }
  }

  async function signBatch(caller: AgentCaller, params: readonly { entry_id: string; csr: Buffer }[], life: CallLifetime): Promise<unknown> {
    const { signal } = life;
    // Shed what cannot finish in time: refused now, the agent retries with backoff, instead of
    // signing for a caller that will have given up.
    if (life.deadlineMs !== undefined && ca.signingBacklogMs(admittedCsrs + params.length) > life.deadlineMs - Date.now()) {
      // counted apart from failures: nothing was tried, and the agent retries
      metrics.svidsIssued.inc({ kind: 'x509', result: 'shed' }, params.length);
      logger.info({ agentId: caller.agentId, csrs: params.length }, 'X509-SVID batch shed: the signing backlog would outlast its deadline');
      throw new SigilError('ERR_UNAVAILABLE', 'the server is signing at capacity; retry later', { reason: 'signing-overloaded' });
    }
    type Signed = { readonly svid: SignedX509Svid } | { readonly err: unknown };
    type Item =
      | { readonly kind: 'invalid'; readonly err: SigilError }
      | { readonly kind: 'denied'; readonly entryId: string }
      | { readonly kind: 'sign'; readonly entry: RegistrationEntry; readonly signed: Promise<Signed> };
    const checked = params.map((p): { readonly entryId: string; readonly csr: Buffer } | { readonly err: SigilError } => {
      try {
        return { entryId: checkEntryId(p.entry_id), csr: checkCsr(p.csr, 'batch item') };
      } catch (err) {
        return { err: toSigilError(err) };
      }
    });
    const items: Item[] = [];
    admittedCsrs += params.length;
    try {
      // every entry of the batch in one datastore read, however often the batch names it
      const allowed = await authorizerFor(caller).entries(checked.flatMap((c) => ('err' in c ? [] : [c.entryId])));
      // Every signature is started before any is awaited, so the CA's signing threads get the
      // whole batch at once; outcomes are then reported in request order.
      for (const c of checked) {
        if (signal.aborted) break;
        if ('err' in c) {
          items.push({ kind: 'invalid', err: c.err });
          continue;
        }
        const entry = allowed.get(c.entryId);
        if (entry === undefined) {
          items.push({ kind: 'denied', entryId: c.entryId });
          continue;
        }
        const ttlMs = entry.x509SvidTtlSeconds > 0 ? entry.x509SvidTtlSeconds * 1000 : deps.defaultX509SvidTtlMs;
        // settled at once into a value: a rejection must not sit unhandled while later items are started
        const signed = sign('x509', entry.spiffeId, c.csr, ttlMs, [...entry.dnsNames], signal).then(
          (svid): Signed => ({ svid }),
          (err: unknown): Signed => ({ err }),
        );
        items.push({ kind: 'sign', entry, signed });
      }
    } finally {
      // queued on the signing threads (which count them from here on) or refused
      admittedCsrs -= params.length;
    }
    const results = [];
    const records: AuditRecord[] = [];
    for (const item of items) {
      if (item.kind === 'invalid') {
        // not echoed back: the ID may be anything the caller sent
        results.push({ entry_id: '', status: errStatus(item.err) });
        continue;
      }
      if (item.kind === 'denied') {
        const err = new SigilError('ERR_PERMISSION_DENIED', `agent is not authorised for entry ${JSON.stringify(item.entryId)}`, {
          reason: 'entry-not-authorized',
        });
        metrics.svidsIssued.inc({ kind: 'x509', result: 'denied' });
        records.push({ who: caller.agentId, action: 'x509svid.issue', result: 'denied', entryId: item.entryId, reason: err.reason ?? err.code });
        logger.warn({ agentId: caller.agentId, entryId: item.entryId }, 'agent asked for an entry it is not authorised for');
        results.push({ entry_id: item.entryId, status: errStatus(err) });
        continue;
      }
      const { entry } = item;
      const outcome = await item.signed;
      if ('svid' in outcome && signal.aborted) {
        // signed on a thread before the caller left: never delivered, and audited so
        const { svid } = outcome;
        const reason = callerGoneReason(signal);
        records.push({ who: caller.agentId, action: 'x509svid.issue', result: 'error', entryId: entry.id, spiffeId: entry.spiffeId, serial: normalizeSerial(svid.serial), reason });
        continue;
      }
      if ('svid' in outcome) {
        const { svid } = outcome;
        records.push({
          who: caller.agentId,
          action: 'x509svid.issue',
          result: 'ok',
          entryId: entry.id,
          spiffeId: entry.spiffeId,
          serial: normalizeSerial(svid.serial),
          expiresAt: svid.notAfter.toISOString(),
        });
        results.push({ entry_id: entry.id, svid: svidMsg(entry.spiffeId, svid), status: okStatus() });
      } else {
        // not signed because the caller had gone: nothing happened, nothing to audit
        if (signal.aborted) continue;
        const se = toSigilError(outcome.err);
        if (se.code === 'ERR_INTERNAL') logger.error({ err: outcome.err, entryId: entry.id }, 'signing an X509-SVID failed');
        records.push({ who: caller.agentId, action: 'x509svid.issue', result: 'error', entryId: entry.id, spiffeId: entry.spiffeId, reason: se.reason ?? se.code });
        results.push({ entry_id: entry.id, status: errStatus(se.code === 'ERR_INTERNAL' ? new SigilError('ERR_INTERNAL', 'internal error') : se) });
      }
    }
    if (signal.aborted) {
      // the caller left while later items were signing: nothing of this batch is delivered,
      // including the items already recorded as issued
      const reason = callerGoneReason(signal);
      audit.recordAll(records.map((r) => (r.result === 'ok' ? { ...r, result: 'error' as const, reason } : r)));
      throw toSigilError(signal.reason);
    }
    // written before any SVID leaves, in one write for the batch
    audit.recordAll(records);
    return { results };
  }

  async function newJwtSvid(call: ServerUnaryCall<{ entry_id: string; audience: string[] }, unknown>): Promise<unknown> {
    const caller = await authenticate(call);
    const entryId = checkEntryId(call.request.entry_id);
    const audience = checkAudience(call.request.audience);
    const entry = await authorizerFor(caller).entry(entryId);
    if (entry === undefined) {
      metrics.svidsIssued.inc({ kind: 'jwt', result: 'denied' });
      audit.record({ who: caller.agentId, action: 'jwtsvid.issue', result: 'denied', entryId, reason: 'entry-not-authorized' });
      throw new SigilError('ERR_PERMISSION_DENIED', `agent is not authorised for entry ${JSON.stringify(entryId)}`, { reason: 'entry-not-authorized' });
    }
    const ttlMs = entry.jwtSvidTtlSeconds > 0 ? entry.jwtSvidTtlSeconds * 1000 : deps.defaultJwtSvidTtlMs;
    const end = metrics.issueLatency.startTimer({ kind: 'jwt' });
    const jwt = await ca.mintJwtSvid({ spiffeId: SpiffeId.parse(entry.spiffeId), audience: [...audience], ttlMs }).finally(end);
    metrics.svidsIssued.inc({ kind: 'jwt', result: 'ok' });
    audit.record({
      who: caller.agentId,
      action: 'jwtsvid.issue',
      result: 'ok',
      entryId: entry.id,
      spiffeId: entry.spiffeId,
      expiresAt: jwt.expiresAt.toISOString(),
      detail: { kid: jwt.kid, jti: jwt.jti, audience: audience.join(' ') },
    });
    return {
      svid: {
        token: jwt.token,
        spiffe_id: entry.spiffeId,
        expires_at: Math.floor(jwt.expiresAt.getTime() / 1000),
        issued_at: Math.floor(clock.nowMs() / 1000),
      },
    };
  }

  async function bundlesMsg(): Promise<{ bundle: BundleMsg; federated_bundles: BundleMsg[] }> {
    const fed = await deps.bundles.federatedParsed();
    return { bundle: await ownBundleMsg(), federated_bundles: fed.map(bundleToMsg) };
  }

  async function getBundle(call: ServerUnaryCall<unknown, unknown>): Promise<unknown> {
    await authenticate(call);
    return bundlesMsg();
  }

  /** The bundles part of a sync message, read once per bundle change and shared by every stream. */
  let sharedBundles: Promise<{ bundle: BundleMsg; federated_bundles: BundleMsg[] }> | undefined;
  const bundlesForStreams = (): Promise<{ bundle: BundleMsg; federated_bundles: BundleMsg[] }> => {
    sharedBundles ??= bundlesMsg().catch((err: unknown) => {
      sharedBundles = undefined;
      throw err;
    });
    return sharedBundles;
  };
  // subscribed before any stream, so the next stream to ask reads the changed bundles
  const unsubscribeBundles = deps.hub.subscribe(() => {
    sharedBundles = undefined;
  }, ['bundles']);

  function syncEntries(call: ServerWritableStream<{ page_size: number }, unknown>): void {
    const requested = call.request.page_size;
    const pageSize = requested > 0 ? Math.min(requested, SYNC_PAGE_SIZE.max) : SYNC_PAGE_SIZE.default;
    let closed = false;
    let batch = 0;
    let state: AgentSyncState | undefined;
    // work waiting for the drain loop: changed entries (latest read wins), bundles, agent record
    let pendingEntries = new Map<string, EntryChange>();
    let pendingBundles = false;
    let pendingAgent = false;
    let expiryDue = false;
    let expiryTimer: TimerHandle | undefined;
    let expiryAt: number | undefined;
    let draining = false;
    let unsubscribe: () => void = () => undefined;
    let unsubscribeAgent: () => void = () => undefined;
    // entry changes routed to this stream (change-hub.ts); told everything until its first round ends
    const entryInterest: EntryInterest = deps.hub.subscribeEntries((change) => onChange(change));

    const close = (err?: unknown): void => {
      if (closed) return;
      closed = true;
      expiryTimer?.cancel();
      unsubscribe();
      unsubscribeAgent();
      entryInterest.close();
      openStreams.delete(forceClose);
      metrics.syncStreams.dec();
      if (err !== undefined) call.emit('error', fail(err, 'entry sync'));
      else call.end();
    };
    const forceClose = (): void => close(new SigilError('ERR_UNAVAILABLE', 'server is shutting down', { reason: 'shutdown' }));
    openStreams.add(forceClose);
    metrics.syncStreams.inc();
    call.on('cancelled', () => close());
    call.on('error', () => close());

    const write = async (msg: unknown): Promise<void> => {
      if (closed) return;
      if (!call.write(msg)) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
    };

    const sendBatch = async (kind: 'FULL' | 'DELTA', upserts: RegistrationEntry[], deleted: string[], withBundles: boolean): Promise<void> => {
      batch++;
      const pages: { entries: EntryMsg[]; deleted: string[] }[] = [];
      let cur: EntryMsg[] = [];
      let bytes = 0;
      for (const e of upserts) {
        const size = entrySizeEstimate(e);
        if (cur.length > 0 && (cur.length >= pageSize || bytes + size > SYNC_PAGE_BYTES)) {
          pages.push({ entries: cur, deleted: [] });
          cur = [];
          bytes = 0;
        }
        cur.push(entryToMsg(e));
        bytes += size;
      }
      pages.push({ entries: cur, deleted: [] });
      for (let i = 0; i < deleted.length; i += pageSize * 4) pages.push({ entries: [], deleted: deleted.slice(i, i + pageSize * 4) });
      const nonEmpty = pages.filter((p, i) => i === 0 || p.entries.length > 0 || p.deleted.length > 0);
      const bundles = withBundles ? await bundlesForStreams() : undefined;
      for (const [i, p] of nonEmpty.entries()) {
        await write({
          kind,
          entries: p.entries,
          deleted_entry_ids: p.deleted,
          ...(i === 0 && bundles !== undefined ? bundles : {}),
          batch_complete: i === nonEmpty.length - 1,
          batch,
        });
      }
    };

    const caller = async (): Promise<AgentCaller> => authenticate(call);
    const factsOf = (c: AgentCaller): AgentFacts => ({ agentId: c.agentId, nodeSelectors: c.node.selectors });

    const armExpiry = (s: AgentSyncState): void => {
      const at = s.nextExpiry();
      if (at === expiryAt) return;
      expiryTimer?.cancel();
      expiryAt = at;
      if (at === undefined) return;
      expiryTimer = clock.setTimer(() => {
        expiryAt = undefined;
        expiryDue = true;
        kick();
      }, Math.max(0, at - clock.nowMs() + 1));
    };

    /** One round: fold in what is pending, then send what changed for this agent (nothing when nothing did). */
    const round = async (): Promise<void> => {
      if (state === undefined) {
        const c = await caller();
        if (closed) return;
        // from now on told about this agent only; a change told before this is not missed:
        // the next round authenticates again
        unsubscribeAgent = deps.hub.subscribeAgent(c.agentId, onChange);
        pendingAgent = true;
        const s = new AgentSyncState({ ds, trustDomain, clock, agent: factsOf(c) });
        // changes seen while this ran are applied next round; stale reads are ignored by revision
        await s.recompute();
        state = s;
        const { upserts } = s.takeDelta();
        await sendBatch('FULL', upserts, [], true);
        armExpiry(s);
        logger.debug({ agentId: c.agentId, entries: upserts.length }, 'entry sync started');
        return;
      }
      const s = state;
      const changes = pendingEntries;
      pendingEntries = new Map();
      const withBundles = pendingBundles;
      pendingBundles = false;
      let mustRecompute = s.apply(changes.values());
      if (expiryDue) {
        expiryDue = false;
        mustRecompute = s.expire() || mustRecompute;
      }
      let c: AgentCaller | undefined;
      if (pendingAgent) {
        pendingAgent = false;
        // re-authenticating ends the stream of a banned or evicted agent
        c = await caller();
        if (s.selectorsChanged(factsOf(c))) mustRecompute = true;
      }
      if (mustRecompute) {
        c ??= await caller();
        await s.recompute(factsOf(c));
      } else {
        await s.expand();
      }
      const { upserts, deleted } = s.takeDelta();
      armExpiry(s);
      if (upserts.length === 0 && deleted.length === 0 && !withBundles) return;
      // nothing goes to an agent that has been banned or evicted meanwhile
      if (c === undefined) await caller();
      await sendBatch('DELTA', upserts, deleted, withBundles);
    };

    const hasWork = (): boolean => state === undefined || pendingEntries.size > 0 || pendingBundles || pendingAgent || expiryDue;
    const kick = (): void => {
      if (draining || closed) return;
      draining = true;
      // told every entry change while a round reads or changes the set (see EntryInterest)
      entryInterest.setEverything(true);
      (async () => {
        while (!closed && hasWork()) await round();
      })()
        .catch((err: unknown) => close(err))
        .finally(() => {
          draining = false;
          if (closed) return;
          if (hasWork()) return kick();
          // the interest of the set as it now is, registered before the rest is routed away
          if (state !== undefined) entryInterest.setInterest(state.reachedParents(), state.heldEntryIds());
          entryInterest.setEverything(false);
        });
    };

    const onChange = (change: Change): void => {
      if (closed) return;
      if (change.kind === 'entries') {
        for (const ch of change.changes) pendingEntries.set(ch.id, ch);
      } else if (change.kind === 'bundles') {
        pendingBundles = true;
      } else {
        // only this stream's agent (or every agent) reaches here: see subscribeAgent above
        pendingAgent = true;
      }
      kick();
    };
    unsubscribe = deps.hub.subscribe(onChange, ['bundles']);
    kick();
  }

  return {
    AttestAgent: (call: ServerDuplexStream<AttestAgentRequestMsg, unknown>) => void attest(call),
    RenewAgent: unary('agent renewal', renew),
    SyncEntries: syncEntries,
    BatchNewX509SVID: unary('X509-SVID batch', batchNewX509Svid),
    NewJWTSVID: unary('JWT-SVID', newJwtSvid),
    GetBundle: unary('bundle', getBundle),
    closeStreams: () => {
      unsubscribeBundles();
      unsubscribeAgents();
      for (const c of [...openStreams]) c();
    },
  };
}
