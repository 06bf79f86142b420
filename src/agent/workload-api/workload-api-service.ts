/**
 * The SpiffeWorkloadAPI handlers. Each call is checked for the security header, its caller
 * attested from the connection's kernel facts, and answered from the identity source. Streams
 * send the full state at once and on every change, re-check the process before each send,
 * and only ever end with an error status (never OK) from this side.
 */
import { type Metadata, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { SigilError, isSigilError } from '../../common/errors.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { WORKLOAD_HEADER } from '../../grpc/proto.js';
import { toServiceError } from '../../grpc/status.js';
import type { WorkloadAttestor } from '../../plugin/workload-attestor.js';
import { MAX_JWT_SVID_LENGTH } from '../../spiffe/jwt-svid.js';
import { SpiffeId } from '../../spiffe/spiffe-id.js';
import type { ProcessReadings } from '../peer/process-readings.js';
import type { TrustDomainBundle, Unsubscribe, WorkloadIdentitySource, WorkloadUpdate } from './identity-source.js';
import { jsonToStruct, type StructMessage } from './struct.js';
import { attestCaller, checkCaller, processGoneError, type AttestedCaller, type ConnectionFacts } from './workload-caller.js';

/** X509SVID as proto-loader encodes it (field names as in workload.proto). */
interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
interface X509SvidResponse {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
interface X509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}
interface JwtBundlesResponse {
  bundles: Record<string, Buffer>;
}
interface JwtSvidRequest {
  audience?: string[];
  spiffe_id?: string;
}
interface JwtSvidResponse {
  svids: Array<{ spiffe_id: string; svid: string; hint: string }>;
}
interface ValidateJwtSvidRequest {
  audience?: string;
  svid?: string;
}
interface ValidateJwtSvidResponse {
  spiffe_id: string;
  claims: StructMessage;
}

/**
 * Bounds on what a workload may send, checked before attestation so a hostile caller costs
 * little: the audience limits are the server's (a longer list would only be refused there
 * after the work of attesting), the token limit is the JWT-SVID parser's, and the request
 * limit is the gRPC receive limit of the Workload API server.
 */
export const WORKLOAD_API_LIMITS = {
  requestBytes: 256 * 1024,
  audiences: 32,
  audienceBytes: 512,
  svidChars: MAX_JWT_SVID_LENGTH,
} as const;

function invalidArgument(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason });
}

/** Checks one audience value; `what` names it in the message. */
function checkAudienceValue(a: unknown, what: string): string {
  if (typeof a !== 'string' || a === '') throw invalidArgument('audience-required', 'audience must be specified');
  if (Buffer.byteLength(a, 'utf8') > WORKLOAD_API_LIMITS.audienceBytes) {
    throw invalidArgument('audience-too-long', `${what} is ${Buffer.byteLength(a, 'utf8')} bytes, more than ${WORKLOAD_API_LIMITS.audienceBytes}`);
  }
  return a;
}

/**
 * A request whose bytes do not decode as its protobuf message. The server's decoder returns
 * this instead of throwing (grpc-js answers a throwing decoder with INTERNAL), so the
 * handler can answer INVALID_ARGUMENT: the fault is the caller's, not the agent's.
 */
export class MalformedRequest {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

function refuseMalformed(request: unknown): void {
  if (request instanceof MalformedRequest) {
    throw invalidArgument('malformed-request', 'request is not a valid protobuf message of this method');
  }
}

/** What the handlers need from the server around them. */
export interface WorkloadApiContext {
  readonly attestors: readonly WorkloadAttestor[];
  readonly identities: WorkloadIdentitySource;
  /** /proc readings, shared among the checks of one turn. */
  readonly readings: ProcessReadings;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Longest an attestation may take before the call fails with UNAVAILABLE. */
  readonly attestTimeoutMs: number;
  /** Serve bundles and JWT validation to callers with no identity (SPIRE's allow_unauthenticated_verifiers). */
  readonly allowUnauthenticatedVerifiers: boolean;
  /** The kernel facts of the connection a call arrived on (undefined if unknown). */
  factsOf(peer: string): ConnectionFacts | undefined;
}

/** A call's view the handlers share: header, peer, cancellation. */
type AnyCall = ServerWritableStream<unknown, unknown> | ServerUnaryCall<unknown, unknown>;

function requireHeader(metadata: Metadata): void {
  const values = metadata.get(WORKLOAD_HEADER);
  if (values.length !== 1 || values[0] !== 'true') {
    throw new SigilError('ERR_INVALID_ARGUMENT', `security header missing from request: ${WORKLOAD_HEADER} must be true`, { reason: 'security-header' });
  }
}

function noIdentity(): SigilError {
  return new SigilError('ERR_NO_IDENTITY', 'no identity issued', { reason: 'no-identity' });
}

function bundleMap(update: WorkloadUpdate, pick: (b: TrustDomainBundle) => Buffer): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  out[update.bundle.trustDomainId] = pick(update.bundle);
  for (const b of update.federatedBundles) if (b.trustDomainId !== update.bundle.trustDomainId) out[b.trustDomainId] = pick(b);
  return out;
}

function sameBundleMap(a: Record<string, Buffer> | undefined, b: Record<string, Buffer>): boolean {
  if (a === undefined) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => b[k] !== undefined && (a[k] as Buffer).equals(b[k] as Buffer));
}

/** Keeps the first of several items with the same non-empty hint, as SPIRE does; reports the dropped IDs. */
function uniqueHints<T extends { hint: string; spiffeId: string }>(items: readonly T[], logger: Logger): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const item of items) {
    if (item.hint !== '') {
      if (seen.has(item.hint)) {
        logger.warn({ spiffeId: item.spiffeId, hint: item.hint }, 'ignoring identity with duplicate hint');
        continue;
      }
      seen.add(item.hint);
    }
    out.push(item);
  }
  return out;
}

/** Builds the SpiffeWorkloadAPI implementation and a function that ends every open stream (for shutdown). */
export function createWorkloadApiService(ctx: WorkloadApiContext): { implementation: UntypedServiceImplementation; closeAll(): void } {
  const open = new Set<UpdateStream<unknown>>();

  /** Maps any failure to a status; unexpected ones are logged here and sent as INTERNAL. */
  const statusOf = (err: unknown, logger: Logger): ServiceError => {
    if (err instanceof SigilError) return toServiceError(err);
    if ((err as { name?: unknown } | null)?.name === 'AbortError') {
      return toServiceError(new SigilError('ERR_CANCELLED', 'call cancelled', { reason: 'cancelled' }));
    }
    logger.error({ err }, 'workload api call failed');
    return toServiceError(err);
  };

  /** Attests the caller of `call`, bounded by the attestation timeout and the call's cancellation. */
  const attest = async (call: AnyCall, logger: Logger, cancel: AbortSignal): Promise<AttestedCaller> => {
    const facts = ctx.factsOf(call.getPeer());
    if (facts === undefined) throw new SigilError('ERR_INTERNAL', 'connection facts missing for call', { reason: 'no-connection-facts' });
    const controller = new AbortController();
    const onCancel = (): void => controller.abort(cancel.reason);
    cancel.addEventListener('abort', onCancel, { once: true });
    const timer = ctx.clock.setTimer(
      () => controller.abort(new SigilError('ERR_UNAVAILABLE', 'workload attestation timed out', { reason: 'attestation-timeout' })),
      ctx.attestTimeoutMs,
    );
    try {
      const caller = await attestCaller(facts, ctx.attestors, ctx.readings, logger, controller.signal);
      logger.debug({ peerPid: facts.pid, peerUid: facts.uid, selectors: caller.selectors.length }, 'workload attested');
      return caller;
    } catch (err) {
      if (controller.signal.aborted && isSigilError(controller.signal.reason)) throw controller.signal.reason;
      throw err;
    } finally {
      timer.cancel();
      cancel.removeEventListener('abort', onCancel);
    }
  };

  const cancelSignal = (call: AnyCall): AbortSignal => {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new SigilError('ERR_CANCELLED', 'call cancelled', { reason: 'cancelled' })));
    return controller.signal;
  };

  const startStream = <Res>(call: ServerWritableStream<unknown, Res>, method: string, render: StreamRenderer<Res>): void => {
    const stream = new UpdateStream<Res>(call, method, render, ctx, attest, statusOf, cancelSignal(call), () => open.delete(stream as UpdateStream<unknown>));
    open.add(stream as UpdateStream<unknown>);
    void stream.start();
  };

  const renderX509 = (update: WorkloadUpdate, logger: Logger): { message: X509SvidResponse; spiffeIds: string[] } => {
    const svids = uniqueHints(update.svids, logger);
    return {
      message: {
        svids: svids.map((s) => ({
          spiffe_id: s.spiffeId,
          x509_svid: s.chainDer,
          x509_svid_key: s.keyPkcs8Der.reveal(),
          bundle: update.bundle.x509AuthoritiesDer,
          hint: s.hint,
        })),
        crl: [],
        federated_bundles: Object.fromEntries(
          update.federatedBundles.filter((b) => b.trustDomainId !== update.bundle.trustDomainId).map((b) => [b.trustDomainId, b.x509AuthoritiesDer]),
        ),
      },
      spiffeIds: svids.map((s) => s.spiffeId),
    };
  };
  const x509Rendered = new WeakMap<WorkloadUpdate, { message: X509SvidResponse; spiffeIds: string[] }>();

  const implementation: UntypedServiceImplementation = {
    FetchX509SVID(call: ServerWritableStream<unknown, X509SvidResponse>): void {
      startStream(call, 'FetchX509SVID', {
        requireIdentity: true,
        render(update, logger) {
          // The cache hands every subscriber of one state the same update: one message for all.
          let rendered = x509Rendered.get(update);
          if (rendered === undefined) x509Rendered.set(update, (rendered = renderX509(update, logger)));
          return rendered;
        },
      });
    },

    FetchX509Bundles(call: ServerWritableStream<unknown, X509BundlesResponse>): void {
      let last: Record<string, Buffer> | undefined;
      startStream(call, 'FetchX509Bundles', {
        requireIdentity: !ctx.allowUnauthenticatedVerifiers,
        bundlesOnly: true,
        render(update) {
          const bundles = bundleMap(update, (b) => b.x509AuthoritiesDer);
          if (sameBundleMap(last, bundles)) return undefined;
          last = bundles;
          return { message: { crl: [], bundles }, spiffeIds: [] };
        },
      });
    },

    FetchJWTBundles(call: ServerWritableStream<unknown, JwtBundlesResponse>): void {
      let last: Record<string, Buffer> | undefined;
      startStream(call, 'FetchJWTBundles', {
        requireIdentity: !ctx.allowUnauthenticatedVerifiers,
        bundlesOnly: true,
        render(update) {
          const bundles = bundleMap(update, (b) => b.jwtKeysJwks);
          if (sameBundleMap(last, bundles)) return undefined;
          last = bundles;
          return { message: { bundles }, spiffeIds: [] };
        },
      });
    },

    FetchJWTSVID(call: ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, callback: sendUnaryData<JwtSvidResponse>): void {
      const logger = ctx.logger.child({ method: 'FetchJWTSVID' });
      const cancel = cancelSignal(call);
      void (async () => {
        refuseMalformed(call.request);
        requireHeader(call.metadata);
        const audience = call.request.audience ?? [];
        if (audience.length === 0) throw invalidArgument('audience-required', 'audience must be specified');
        if (audience.length > WORKLOAD_API_LIMITS.audiences) {
          throw invalidArgument('too-many-audiences', `at most ${WORKLOAD_API_LIMITS.audiences} audiences, got ${audience.length}`);
        }
        audience.forEach((a, i) => checkAudienceValue(a, `audience ${i}`));
        const requested = call.request.spiffe_id === undefined || call.request.spiffe_id === '' ? undefined : SpiffeId.parse(call.request.spiffe_id).toString();
        const caller = await attest(call, logger, cancel);
        const issued = await ctx.identities.fetchJwtSvids(caller.selectors, audience, requested, cancel);
        if (issued.length === 0) throw noIdentity();
        // The tokens are minted; hand them out only if the caller is still the attested process.
        const check = checkCaller(caller, ctx.readings);
        if (check === 'gone') throw processGoneError(caller.facts.pid);
        if (check === 'credentials-changed') {
          throw new SigilError('ERR_PERMISSION_DENIED', `workload process ${caller.facts.pid} changed credentials during the call`, { reason: 'credentials-changed' });
        }
        const svids = uniqueHints(issued, logger);
        logger.info({ peerPid: caller.facts.pid, peerUid: caller.facts.uid, spiffeIds: svids.map((s) => s.spiffeId), audience }, 'jwt svids sent');
        return { svids: svids.map((s) => ({ spiffe_id: s.spiffeId, svid: s.token.reveal(), hint: s.hint })) };
      })().then(
        (response) => callback(null, response),
        (err: unknown) => callback(statusOf(err, logger)),
      );
    },

    ValidateJWTSVID(call: ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>, callback: sendUnaryData<ValidateJwtSvidResponse>): void {
      const logger = ctx.logger.child({ method: 'ValidateJWTSVID' });
      const cancel = cancelSignal(call);
      void (async () => {
        refuseMalformed(call.request);
        requireHeader(call.metadata);
        const audience = call.request.audience ?? '';
        const token = call.request.svid ?? '';
        checkAudienceValue(audience, 'audience');
        if (token === '') throw invalidArgument('svid-required', 'svid must be specified');
        // refused here rather than by the parser so an oversized token costs no attestation
        if (token.length > WORKLOAD_API_LIMITS.svidChars) {
          throw invalidArgument('svid-too-large', `svid is ${token.length} characters, more than ${WORKLOAD_API_LIMITS.svidChars}`);
        }
        const caller = await attest(call, logger, cancel);
        const result = await ctx.identities.validateJwtSvid(caller.selectors, token, audience, cancel);
        logger.info({ peerPid: caller.facts.pid, peerUid: caller.facts.uid, spiffeId: result.spiffeId, audience }, 'jwt svid validated');
        return { spiffe_id: result.spiffeId, claims: jsonToStruct(result.claims) };
      })().then(
        (response) => callback(null, response),
        (err: unknown) => callback(statusOf(err, logger)),
      );
    },
  };

  return {
    implementation,
    closeAll() {
      for (const s of [...open]) s.fail(new SigilError('ERR_UNAVAILABLE', 'workload api is shutting down', { reason: 'shutdown' }));
    },
  };
}

/** How a stream turns a source update into its message; undefined means nothing new to send. */
interface StreamRenderer<Res> {
  /** When true, an update for a workload entitled to nothing ends the stream with PermissionDenied. */
  readonly requireIdentity: boolean;
  /** Bundle streams: updates without SVIDs, the stored bundle before the first sync (see SubscribeOptions). */
  readonly bundlesOnly?: boolean;
  render(update: WorkloadUpdate, logger: Logger): { message: Res; spiffeIds: string[] } | undefined;
}

/**
 * One open stream: attests, subscribes, re-checks the process before each send, re-attests
 * when the process changed credentials, and ends only with an error status.
 */
class UpdateStream<Res> {
  readonly #call: ServerWritableStream<unknown, Res>;
  readonly #method: string;
  readonly #render: StreamRenderer<Res>;
  readonly #ctx: WorkloadApiContext;
  readonly #attest: (call: AnyCall, logger: Logger, cancel: AbortSignal) => Promise<AttestedCaller>;
  readonly #statusOf: (err: unknown, logger: Logger) => ServiceError;
  readonly #cancel: AbortSignal;
  readonly #onDone: () => void;
  #logger: Logger;
  #caller: AttestedCaller | undefined;
  #unsubscribe: Unsubscribe | undefined;
  #ended = false;
  /** Bumped on every (re)subscription so a late callback of an old subscription is ignored. */
  #generation = 0;

  constructor(
    call: ServerWritableStream<unknown, Res>,
    method: string,
    render: StreamRenderer<Res>,
    ctx: WorkloadApiContext,
    attest: (call: AnyCall, logger: Logger, cancel: AbortSignal) => Promise<AttestedCaller>,
    statusOf: (err: unknown, logger: Logger) => ServiceError,
    cancel: AbortSignal,
    onDone: () => void,
  ) {
    this.#call = call;
    this.#method = method;
    this.#render = render;
    this.#ctx = ctx;
    this.#attest = attest;
    this.#statusOf = statusOf;
    this.#cancel = cancel;
    this.#onDone = onDone;
    this.#logger = ctx.logger.child({ method });
    cancel.addEventListener('abort', () => this.#finish(), { once: true });
  }

  async start(): Promise<void> {
    try {
      refuseMalformed(this.#call.request);
      requireHeader(this.#call.metadata);
      await this.#subscribeFresh();
    } catch (err) {
      this.fail(err);
    }
  }

  /** Ends the stream with an error status (the only way this side ends a stream). */
  fail(err: unknown): void {
    if (this.#ended) return;
    const status = this.#statusOf(err, this.#logger);
    if (status.code === GrpcStatus.UNAVAILABLE) this.#logger.debug({ reason: isSigilError(err) ? err.reason : undefined }, 'workload stream unavailable');
    if (status.code === GrpcStatus.PERMISSION_DENIED) {
      // Once attested, #logger already carries peerPid and peerUid: name them only before that.
      const facts = this.#caller === undefined ? this.#ctx.factsOf(this.#call.getPeer()) : undefined;
      this.#logger.info(
        { ...(facts === undefined ? {} : { peerPid: facts.pid, peerUid: facts.uid }), reason: isSigilError(err) ? err.reason : undefined },
        'workload stream denied',
      );
    }
    this.#finish();
    if (!this.#call.cancelled) this.#call.emit('error', status);
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#onDone();
  }

  async #subscribeFresh(): Promise<void> {
    const caller = await this.#attest(this.#call, this.#logger, this.#cancel);
    if (this.#ended) return;
    this.#caller = caller;
    this.#logger = this.#ctx.logger.child({ method: this.#method, peerPid: caller.facts.pid, peerUid: caller.facts.uid });
    const generation = ++this.#generation;
    const unsubscribe = this.#ctx.identities.subscribe(
      caller.selectors,
      (u) => {
        if (generation === this.#generation) this.#onUpdate(u);
      },
      {
        bundlesOnly: this.#render.bundlesOnly === true,
        // Answered now with UNAVAILABLE (clients retry) rather than left waiting for an unknown time.
        onUnavailable: (err) => {
          if (generation === this.#generation) this.fail(err);
        },
      },
    );
    // The source may deliver (and the stream may end) before subscribe returns.
    if (this.#ended) unsubscribe();
    else this.#unsubscribe = unsubscribe;
  }

  #onUpdate(update: WorkloadUpdate): void {
    if (this.#ended) return;
    const caller = this.#caller;
    if (caller === undefined) return;
    let check;
    try {
      check = checkCaller(caller, this.#ctx.readings);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (check === 'gone') {
      this.fail(processGoneError(caller.facts.pid));
      return;
    }
    if (check === 'credentials-changed') {
      void this.#reattest();
      return;
    }
    this.#send(update);
  }

  /** The process now runs with other credentials: its old selectors no longer speak for it. */
  async #reattest(): Promise<void> {
    this.#generation++;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#logger.info('workload credentials changed; attesting again');
    try {
      await this.#subscribeFresh();
    } catch (err) {
      this.fail(err);
    }
  }

  #send(update: WorkloadUpdate): void {
    if (this.#render.requireIdentity && !(update.entitled ?? update.svids.length > 0)) {
      this.fail(noIdentity());
      return;
    }
    let rendered;
    try {
      rendered = this.#render.render(update, this.#logger);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (rendered === undefined || this.#call.cancelled) return;
    this.#call.write(rendered.message);
    if (rendered.spiffeIds.length > 0) this.#logger.info({ spiffeIds: rendered.spiffeIds }, 'x509 svids sent');
    else this.#logger.debug('bundles sent');
  }
}
