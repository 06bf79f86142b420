/**
 * The agent's side of sigil.agent.v1.Agent: attestation over TLS trusting the bootstrap (or
 * last-synced) bundle, then mTLS with the agent SVID for everything else. The server must
 * present `spiffe://<td>/sigil/server` and the server marker only the CA's server issuance
 * adds (src/spiffe/reserved-id.ts), checked during the handshake, before any request (and so
 * any attestation evidence such as a join token) is sent. Credentials are swapped when the agent SVID
 * or the server's roots change: new calls go to a new channel, while the old one stays open
 * until its last call ends, so a long-lived SyncEntries stream keeps its connection (closing
 * the channel under it let the next keepalive tear the connection down, issue 20).
 *
 * Several servers (one PostgreSQL behind them, so each accepts every agent): the client keeps
 * one connection, to a server picked at random at start (spreading agents' load), and moves to
 * the next one in the list when a call fails for a reason another server may not have
 * (UNAVAILABLE, DEADLINE_EXCEEDED). It does not retry by itself: the caller's jittered backoff
 * paces the attempts, and the next attempt goes to the next server. A configured address whose
 * host is a DNS name stands for every address the name resolves to (a headless service, a
 * round-robin name): resolved at start and again after a failed call, at most once a second.
 */
import { credentials, Metadata, type Client, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { SigilError, isSigilError } from '../common/errors.js';
import type { Secret } from '../common/secret.js';
import { toPem } from '../common/x509.js';
import type { EntryMessage } from '../grpc/messages.js';
import { serviceClient } from '../grpc/proto.js';
import { fromServiceError } from '../grpc/status.js';
import type { NodeAttestorAgent } from '../plugin/node-attestor.js';
import { hasServerSvidMarker } from '../spiffe/reserved-id.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

const AGENT_PROTO = 'sigil/agent/v1/agent.proto';
const AGENT_SERVICE = 'sigil.agent.v1.Agent';
/** How long a unary call may take unless AgentServerClientOptions.unaryDeadlineMs says otherwise. */
export const UNARY_DEADLINE_MS = 15_000;
/** A batch of workload CSRs is bounded by the server (MAX 500 per call). */
export const MAX_CSRS_PER_CALL = 500;

/** An X.509-SVID as the server sends it. */
export interface WireX509Svid {
  spiffe_id: string;
  cert_chain: Buffer[];
  serial: string;
  expires_at: string;
}

/** A bundle as the server sends it. */
export interface WireBundle {
  trust_domain_id: string;
  document: Buffer;
  x509_authorities: Buffer[];
  sequence: string;
  refresh_hint_seconds: string;
  /** Own bundle only: subject key identifiers of tainted X.509 authorities (absent from older servers). */
  tainted_x509_subject_key_ids?: Buffer[];
  /** Own bundle only: kids of tainted JWT signing keys (absent from older servers). */
  tainted_jwt_key_ids?: string[];
}

/** A registration entry as the server sends it (64-bit fields as decimal strings). */
export type WireEntry = EntryMessage;

/** One SyncEntries page. */
export interface WireSyncPage {
  kind: 'FULL' | 'DELTA' | 'BATCH_KIND_UNSPECIFIED';
  entries: WireEntry[];
  deleted_entry_ids: string[];
  bundle: WireBundle | null;
  federated_bundles: WireBundle[];
  batch_complete: boolean;
  batch: string;
}

/** The outcome of a successful attestation. */
export interface AttestationOutcome {
  readonly svid: WireX509Svid;
  readonly bundle: WireBundle;
  readonly canReattest: boolean;
}

/** One item of BatchNewX509SVID's answer. */
export interface X509SvidItemResult {
  readonly entryId: string;
  readonly svid?: WireX509Svid;
  /** Set when this item was refused. */
  readonly error?: SigilError;
}

/** A JWT-SVID as the server returns it. */
export interface WireJwtSvid {
  token: string;
  spiffe_id: string;
  expires_at: string;
  issued_at: string;
}

/** The agent SVID the mTLS calls present. */
export interface ClientIdentity {
  readonly chainDer: readonly Buffer[];
  readonly keyPkcs8Der: Secret<Buffer>;
}

type UnaryMethod = (req: object, md: Metadata, opts: object, cb: (err: ServiceError | null, res: unknown) => void) => void;

function rootsPem(roots: readonly Buffer[]): Buffer {
  return Buffer.from(roots.map((r) => toPem(r, 'CERTIFICATE')).join(''));
}

/**
 * Why the server's leaf is not the server's own SVID, or undefined when it is: exactly the
 * server's ID, and the marker a workload SVID never carries, even one that named that ID.
 */
export function serverCertificateProblem(cert: PeerCertificate, serverId: string): string | undefined {
  const uris = uriSans(cert);
  if (uris.length !== 1 || uris[0] !== serverId) return `server presented ${uris.join(',') || 'no SPIFFE ID'}, expected ${serverId}`;
  if (!Buffer.isBuffer(cert.raw) || !hasServerSvidMarker(cert.raw)) {
    return `server certificate for ${serverId} lacks the server SVID marker: not the server's own SVID (a workload certificate?)`;
  }
  return undefined;
}

function uriSans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '')
    .split(', ')
    .filter((p) => p.startsWith('URI:'))
    .map((p) => p.slice(4));
}

/** Every address a host name resolves to: the OS resolver by default (the edge tests replace). */
export type HostLookup = (host: string) => Promise<readonly string[]>;

/** node:dns lookup with `all`: what getaddrinfo gives (/etc/hosts, DNS), IPv4 and IPv6. */
export const systemLookup: HostLookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** The least time between two resolutions after failures. */
const RESOLVE_INTERVAL_MS = 1000;

/** Splits `host:port` or `[v6]:port`. */
function splitHostPort(address: string): { host: string; port: string } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port: address.slice(i + 1) };
}

/** `host:port`, IPv6 in brackets. */
function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The configured addresses with each DNS name replaced by every address it resolves to (in the
 * resolver's order, duplicates dropped). A name that does not resolve now stays as it is: the
 * connection then resolves it itself, as with one server.
 */
export async function expandAddresses(configured: readonly string[], lookup: HostLookup): Promise<string[]> {
  const out: string[] = [];
  const add = (a: string): void => {
    if (!out.includes(a)) out.push(a);
  };
  for (const address of configured) {
    const { host, port } = splitHostPort(address);
    if (isIP(host) !== 0) {
      add(address);
      continue;
    }
    let ips: readonly string[] = [];
    try {
      ips = await lookup(host);
    } catch {
      // unresolvable now
    }
    if (ips.length === 0) add(address);
    for (const ip of ips) add(joinHostPort(ip, port));
  }
  return out;
}

/** Options of an AgentServerClient. */
export interface AgentServerClientOptions {
  /** `host:port` of every server's agent API (at least one). */
  readonly addresses: readonly string[];
  /** Told when the client moves to another server after `error`. */
  readonly onFailover?: (from: string, to: string, error: SigilError) => void;
  /** Picks the index of the first server (tests); random by default. */
  readonly firstIndex?: (count: number) => number;
  /** Resolves DNS names among `addresses` (tests); the system resolver by default. */
  readonly lookup?: HostLookup;
  /** Told when resolution changed the list of servers. */
  readonly onResolved?: (addresses: readonly string[]) => void;
  readonly trustDomain: TrustDomain;
  /** The CA certificates (DER) that must sign the server's certificate. */
  readonly roots: readonly Buffer[];
  /**
   * The deadline of each unary call (renewal, SVID batches, JWT-SVIDs, bundle), in ms from when
   * it starts; UNARY_DEADLINE_MS by default. The server sheds a batch it cannot sign by then.
   */
  readonly unaryDeadlineMs?: number;
}

/** A channel and the calls running on it; a retired channel closes when its last call ends. */
interface ChannelSlot {
  readonly client: Client;
  active: number;
  retired: boolean;
}

/** A client of the server's agent API that follows agent SVID and root changes. */
export class AgentServerClient {
  readonly #configured: readonly string[];
  #addresses: readonly string[];
  #current: number;
  readonly #pickFirst: (count: number) => number;
  readonly #lookup: HostLookup;
  readonly #onResolved: ((addresses: readonly string[]) => void) | undefined;
  #resolving: Promise<void> | undefined;
  /** When a failure last made it resolve (wall clock ms): at most once per RESOLVE_INTERVAL_MS. */
  #resolvedAt = 0;
  readonly #onFailover: ((from: string, to: string, error: SigilError) => void) | undefined;
  readonly #serverId: string;
  readonly #serverName: string;
  #roots: readonly Buffer[];
  readonly #unaryDeadlineMs: number;
  #identity: ClientIdentity | undefined;
  #mtls: ChannelSlot | undefined;
  #closed = false;

  constructor(options: AgentServerClientOptions) {
    if (options.addresses.length === 0) throw new SigilError('ERR_CONFIG_INVALID', 'no server address', { reason: 'no-server-address' });
    this.#configured = [...options.addresses];
    this.#addresses = this.#configured;
    this.#pickFirst = options.firstIndex ?? ((n: number): number => Math.floor(Math.random() * n));
    this.#current = this.#first(this.#addresses.length);
    this.#lookup = options.lookup ?? systemLookup;
    this.#onResolved = options.onResolved;
    this.#onFailover = options.onFailover;
    this.#serverId = `spiffe://${options.trustDomain.name}/sigil/server`;
    this.#serverName = options.trustDomain.name;
    this.#roots = options.roots;
    const deadline = options.unaryDeadlineMs ?? UNARY_DEADLINE_MS;
    if (!Number.isSafeInteger(deadline) || deadline <= 0) {
      throw new SigilError('ERR_CONFIG_INVALID', `unary call deadline must be a positive integer of ms, got ${String(deadline)}`, { reason: 'bad-deadline' });
    }
    this.#unaryDeadlineMs = deadline;
  }

  /** The server new calls go to. */
  get address(): string {
    return this.#addresses[this.#current] as string;
  }

  /** Every server address, DNS names resolved (as last resolved). */
  get addresses(): readonly string[] {
    return this.#addresses;
  }

  #first(count: number): number {
    return Math.min(Math.max(0, Math.trunc(this.#pickFirst(count))), count - 1);
  }

  /**
   * Resolves the configured DNS names to every address (at start, and after failures). The
   * current server stays current when it is still in the list; otherwise the next calls go to
   * one picked as at start. Never rejects: a failed lookup keeps the name.
   */
  resolveAddresses(): Promise<void> {
    this.#resolving ??= (async () => {
      const next = await expandAddresses(this.#configured, this.#lookup);
      if (this.#closed || (next.length === this.#addresses.length && next.every((a, i) => a === this.#addresses[i]))) return;
      const current = this.address;
      this.#addresses = next;
      const keep = next.indexOf(current);
      this.#current = keep >= 0 ? keep : this.#first(next.length);
      if (keep < 0) this.#resetChannel();
      this.#onResolved?.(next);
    })().finally(() => {
      this.#resolving = undefined;
    });
    return this.#resolving;
  }

  /**
   * After a failed call: when the failure is one another server may not share and the call ran
   * on the current connection (not one already left), new calls go to the next server.
   */
  #failed(err: unknown, slot: ChannelSlot | undefined): void {
    if (this.#closed) return;
    if (!isSigilError(err, 'ERR_UNAVAILABLE') && !isSigilError(err, 'ERR_DEADLINE_EXCEEDED')) return;
    if (slot !== undefined && slot !== this.#mtls) return;
    // a name may resolve to other servers now (a replaced pod); the next attempts use them
    if (this.#configured.some((a) => isIP(splitHostPort(a).host) === 0) && Date.now() - this.#resolvedAt >= RESOLVE_INTERVAL_MS) {
      this.#resolvedAt = Date.now();
      void this.resolveAddresses();
    }
    if (this.#addresses.length < 2) return;
    const from = this.address;
    this.#current = (this.#current + 1) % this.#addresses.length;
    if (slot !== undefined) this.#resetChannel();
    this.#onFailover?.(from, this.address, err);
  }

  /** Trusts `roots` for new connections (the server's bundle changed). */
  setRoots(roots: readonly Buffer[]): void {
    if (roots.length === 0) return;
    if (roots.length === this.#roots.length && roots.every((r, i) => r.equals(this.#roots[i] as Buffer))) return;
    this.#roots = [...roots];
    this.#resetChannel();
  }

  /** Presents `identity` on new mTLS calls. */
  setIdentity(identity: ClientIdentity | undefined): void {
    this.#identity = identity;
    this.#resetChannel();
  }

  /** New calls get a new channel; the current one closes once the calls on it have ended. */
  #resetChannel(): void {
    const slot = this.#mtls;
    this.#mtls = undefined;
    if (slot === undefined) return;
    slot.retired = true;
    if (slot.active === 0) slot.client.close();
  }

  /** Counts a call on `slot`; the returned function (idempotent) ends it. */
  static #enter(slot: ChannelSlot): () => void {
    slot.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      slot.active--;
      if (slot.retired && slot.active === 0) slot.client.close();
    };
  }

  #makeClient(identity: ClientIdentity | undefined): Client {
    if (this.#closed) throw new SigilError('ERR_UNAVAILABLE', 'agent server client is closed', { reason: 'closed' });
    const Ctor = serviceClient(AGENT_PROTO, AGENT_SERVICE);
    const serverId = this.#serverId;
    const creds = credentials.createSsl(
      rootsPem(this.#roots),
      identity === undefined ? null : Buffer.from(toPem(identity.keyPkcs8Der.reveal(), 'PRIVATE KEY')),
      identity === undefined ? null : Buffer.from(identity.chainDer.map((c) => toPem(c, 'CERTIFICATE')).join('')),
      {
        checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
          const problem = serverCertificateProblem(cert, serverId);
          return problem === undefined ? undefined : new Error(problem);
        },
      },
    );
    return new Ctor(this.address, creds, {
      // SNI must be a name, not the IP the address often is; the identity check above is what counts.
      'grpc.ssl_target_name_override': this.#serverName,
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
    });
  }

  #slot(): ChannelSlot {
    if (this.#identity === undefined) throw new SigilError('ERR_UNAVAILABLE', 'agent is not attested yet', { reason: 'not-attested' });
    this.#mtls ??= { client: this.#makeClient(this.#identity), active: 0, retired: false };
    return this.#mtls;
  }

  /** Runs AttestAgent with `attestor`; rejects with the server's SigilError on refusal. */
  async attest(attestor: NodeAttestorAgent, csrDer: Buffer, signal?: AbortSignal): Promise<AttestationOutcome> {
    const client = this.#makeClient(undefined);
    try {
      return await new Promise<AttestationOutcome>((resolve, reject) => {
        const call = (client as unknown as { AttestAgent(md: Metadata, opts: object): ClientDuplexStream<object, Record<string, unknown>> }).AttestAgent(
          new Metadata(),
          { deadline: new Date(Date.now() + 60_000) },
        );
        let settled = false;
        const finish = (err: unknown, value?: AttestationOutcome): void => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          if (err !== undefined) {
            call.cancel();
            reject(err);
          } else resolve(value as AttestationOutcome);
        };
        const onAbort = (): void => finish(signal?.reason ?? new SigilError('ERR_CANCELLED', 'attestation aborted', { reason: 'aborted' }));
        signal?.addEventListener('abort', onAbort, { once: true });
        call.on('data', (msg: { step?: string; challenge?: Buffer; result?: { svid: WireX509Svid | null; bundle: WireBundle | null; can_reattest: boolean } }) => {
          if (msg.step === 'challenge' && msg.challenge !== undefined) {
            attestor.respond(msg.challenge, signal).then(
              (answer) => call.write({ challenge_response: Buffer.from(answer) }),
              (err: unknown) => finish(err),
            );
          } else if (msg.step === 'result' && msg.result?.svid && msg.result.bundle) {
            finish(undefined, { svid: msg.result.svid, bundle: msg.result.bundle, canReattest: msg.result.can_reattest });
            call.end();
          }
        });
        call.on('error', (err: ServiceError) => {
          const e = fromServiceError(err);
          this.#failed(e, undefined);
          finish(e);
        });
        call.on('end', () => finish(new SigilError('ERR_UNAVAILABLE', 'attestation stream ended without a result', { reason: 'no-result' })));
        attestor.payload(signal).then(
          (payload) => call.write({ params: { attestor: attestor.name, payload: Buffer.from(payload), csr: csrDer } }),
          (err: unknown) => finish(err),
        );
      });
    } finally {
      client.close();
    }
  }

  #unary<T>(method: string, request: object, signal?: AbortSignal): Promise<T> {
    const slot = this.#slot();
    const { client } = slot;
    const fn = (client as unknown as Record<string, UnaryMethod>)[method] as UnaryMethod;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const end = AgentServerClient.#enter(slot);
      const call = fn.call(client, request, new Metadata(), { deadline: new Date(Date.now() + this.#unaryDeadlineMs) }, (err, res) => {
        end();
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          const e = fromServiceError(err);
          this.#failed(e, slot);
          reject(e);
        } else resolve(res as T);
      }) as unknown as { cancel(): void };
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** RenewAgent: a new agent SVID for the key behind `csrDer`. */
  async renew(csrDer: Buffer, signal?: AbortSignal): Promise<WireX509Svid> {
    const r = await this.#unary<{ svid: WireX509Svid | null }>('RenewAgent', { csr: csrDer }, signal);
    if (!r.svid) throw new SigilError('ERR_INTERNAL', 'renewal answer carries no SVID', { reason: 'no-svid' });
    return r.svid;
  }

  /** BatchNewX509SVID for at most MAX_CSRS_PER_CALL items; per-item refusals come back as `error`. */
  async batchNewX509Svid(items: readonly { entryId: string; csrDer: Buffer }[], signal?: AbortSignal): Promise<X509SvidItemResult[]> {
    const r = await this.#unary<{ results: { entry_id: string; svid: WireX509Svid | null; status: { code: number; message: string; sigil_code: string } | null }[] }>(
      'BatchNewX509SVID',
      { params: items.map((i) => ({ entry_id: i.entryId, csr: i.csrDer })) },
      signal,
    );
    return r.results.map((res) => {
      if (res.status !== null && res.status.code !== 0) {
        const code = res.status.sigil_code !== '' ? res.status.sigil_code : 'ERR_INTERNAL';
        return { entryId: res.entry_id, error: new SigilError(code as SigilError['code'], res.status.message || 'refused', { reason: 'svid-refused' }) };
      }
      if (res.svid === null) return { entryId: res.entry_id, error: new SigilError('ERR_INTERNAL', 'result carries no SVID', { reason: 'no-svid' }) };
      return { entryId: res.entry_id, svid: res.svid };
    });
  }

  /** NewJWTSVID for an entry and audiences. */
  async newJwtSvid(entryId: string, audience: readonly string[], signal?: AbortSignal): Promise<WireJwtSvid> {
    const r = await this.#unary<{ svid: WireJwtSvid | null }>('NewJWTSVID', { entry_id: entryId, audience: [...audience] }, signal);
    if (!r.svid) throw new SigilError('ERR_INTERNAL', 'JWT-SVID answer carries no token', { reason: 'no-svid' });
    return r.svid;
  }

  /** GetBundle: the own bundle and the federated ones. */
  async getBundle(signal?: AbortSignal): Promise<{ bundle: WireBundle | null; federated_bundles: WireBundle[] }> {
    return this.#unary('GetBundle', {}, signal);
  }

  /** Opens SyncEntries. */
  syncEntries(pageSize: number): ClientReadableStream<WireSyncPage> {
    const slot = this.#slot();
    const stream = (slot.client as unknown as { SyncEntries(req: object, md: Metadata): ClientReadableStream<WireSyncPage> }).SyncEntries({ page_size: pageSize }, new Metadata());
    // 'status' comes once at the end of every call, whether it ended, failed or was cancelled.
    const end = AgentServerClient.#enter(slot);
    stream.on('status', end);
    stream.on('error', (err: ServiceError) => {
      end();
      this.#failed(fromServiceError(err), slot);
    });
    return stream;
  }

  /** Closes the channel once its calls have ended; later calls fail with ERR_UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    this.#resetChannel();
  }
}
