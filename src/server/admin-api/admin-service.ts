/**
 * Handlers of the sigil.admin.v1 services (entries, agents, join tokens, bundles, local
 * authority, minting, server info), served on the admin Unix socket. Every change is
 * audited: a committed one by the datastore in the change's own transaction (each handler
 * then waits for the shipper's copy before answering), a mint straight to the audit sink.
 * The join token is returned once and never stored, logged or audited.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { SigilError, toSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { AttestedNode, BundleRecord, Datastore, EntryFilter, NewRegistrationEntry, RegistrationEntry, SelectorMatch } from '../../datastore/datastore.js';
import { STATUS_BY_CODE, toServiceError } from '../../grpc/status.js';
import { makeSelector, type Selector } from '../../spiffe/selector.js';
import { SpiffeId, spiffeIdReason, TrustDomain } from '../../spiffe/spiffe-id.js';
import { generateJoinToken, joinTokenAgentId } from '../../../attestors/node/join_token/token.js';
import type { AuditLog, AuditRecord } from '../audit-log.js';
import type { JournalAudit } from '../journal-audit.js';
import type { AdminCaller } from './admin-socket.js';
import type { BundleManager, ParsedBundleRecord } from '../bundle-manager.js';
import type { ChangeHub } from '../change-hub.js';
import type { ServerCa } from '../server-ca.js';
import { normalizeSerial } from '../agent-api/caller.js';
import { bundleToMsg, checkAudience, checkCsr, entryToMsg, type EntryMsg } from '../agent-api/wire.js';
import { Bundle } from '../../spiffe/bundle.js';
import { reservedIdReason } from '../../spiffe/reserved-id.js';
import { checkDnsName } from '../../ca/leaf-template.js';
import { decodeCaJournal } from '../../ca/ca-journal.js';
import { entryRefusalReason } from '../reserved-entries.js';
import type { FederationRefresher } from '../federation/federation-refresher.js';
import { createFederationService } from './federation-service.js';
import { authorityOwner, remoteAuthorityStep } from '../remote-authority.js';
import { removeServer } from '../server-removal.js';

/** The CA operations of `sigil localauthority` (src/ca's CaManager provides them). */
export interface LocalAuthorityOps {
  status(): unknown;
  prepare(kind: 'x509' | 'jwt'): Promise<unknown>;
  activate(kind: 'x509' | 'jwt'): Promise<unknown>;
  taint(kind: 'x509' | 'jwt', id: string): Promise<unknown>;
  revoke(kind: 'x509' | 'jwt', id: string): Promise<unknown>;
}

/** Everything the admin handlers use. */
export interface AdminServiceDeps {
  readonly ds: Datastore;
  readonly ca: ServerCa;
  readonly localAuthority?: LocalAuthorityOps;
  /** Carries a local authority operation's audit record into the CA journal save it makes. */
  readonly journalAudit?: JournalAudit;
  /** This server's ID: the owner of the local authority's authorities. */
  readonly serverId?: string;
  readonly bundles: BundleManager;
  readonly hub: ChangeHub;
  readonly trustDomain: TrustDomain;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditLog;
  readonly joinTokenTtlMs: number;
  readonly defaultX509SvidTtlMs: number;
  readonly defaultJwtSvidTtlMs: number;
  readonly info: () => { agentApiAddress: string; startedAt: number; ready: boolean; version: string };
  /** The kernel's credentials of the connection behind `call.getPeer()`; without it callers are audited as plain `admin`. */
  readonly callerOf?: (peer: string) => AdminCaller | undefined;
  /** Fetches federation relationships now (`federation refresh`); absent in servers without one. */
  readonly federation?: FederationRefresher;
}

/** Who an audited admin change is by. */
interface Actor {
  readonly who: string;
  readonly caller?: { readonly uid: number; readonly gid: number; readonly pid: number };
}

/** Admin Entry message shape: the agent API's entry plus its creation time (64-bit fields arrive as strings). */
export interface AdminEntryMsg extends Omit<EntryMsg, 'expires_at' | 'revision'> {
  expires_at: number | string;
  revision: number | string;
  created_at: number | string;
  /** Output only: why the server never serves this entry ('' for an ordinary one). */
  refused_reason?: string;
}

/** A batch create or update request. */
interface EntryBatchMsg {
  entries: AdminEntryMsg[];
  /** Accept federates_with trust domains without a bundle (SPIRE refuses them too). */
  allow_missing_federated_bundle?: boolean;
}

interface EntryFilterMsg {
  spiffe_id: string;
  parent_id: string;
  selectors: { type: string; value: string }[];
  selector_match: string;
  federates_with: string;
  hint: string;
}

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 500;
const MAX_BATCH = 500;
/** Longest join token lifetime CreateJoinToken accepts: 30 days. */
export const MAX_JOIN_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
/** Most selectors, DNS names or federated trust domains on one entry: keeps a page of entries inside one message. */
const MAX_LIST_ITEMS = 64;
/** Year 9999: later expiries are typos, and would overflow ms timestamps in some clients. */
const MAX_EPOCH_SECONDS = 253_402_300_799;

function sec(ms: number): number {
  return Math.floor(ms / 1000);
}

function entryToAdminMsg(e: RegistrationEntry, trustDomain: TrustDomain): AdminEntryMsg {
  return { ...entryToMsg(e), created_at: sec(e.createdAt), refused_reason: entryRefusalReason(e, trustDomain) ?? '' };
}

function agentToMsg(n: AttestedNode): Record<string, unknown> {
  return {
    spiffe_id: n.spiffeId,
    attestation_type: n.attestationType,
    serial: n.certSerial,
    expires_at: sec(n.certNotAfter),
    selectors: n.selectors.map((s) => ({ type: s.type, value: s.value })),
    banned: n.banned,
    can_reattest: n.canReattest,
    created_at: sec(n.createdAt),
    updated_at: sec(n.updatedAt),
  };
}

function statusOf(err?: SigilError): { code: number; message: string; sigil_code: string } {
  if (err === undefined) return { code: 0, message: '', sigil_code: '' };
  return { code: STATUS_BY_CODE[err.code], message: err.message, sigil_code: err.code };
}

function pageSize(n: number): number {
  return n > 0 ? Math.min(n, MAX_PAGE) : DEFAULT_PAGE;
}

function parseKind(kind: string): 'x509' | 'jwt' {
  if (kind === 'x509' || kind === 'jwt') return kind;
  throw new SigilError('ERR_INVALID_ARGUMENT', `authority kind must be x509 or jwt, got ${JSON.stringify(kind)}`, { reason: 'authority-kind' });
}

/** Builds the implementations of every admin service, keyed by service name. */
export function createAdminServices(deps: AdminServiceDeps): Record<string, UntypedServiceImplementation> {
  const { ds, trustDomain, clock, logger, audit, hub } = deps;

  /** The error as the caller may see it: an internal one is logged here and reaches the caller only as `internal error`. */
  const safeError = (err: unknown, what: string): SigilError => {
    const se = toSigilError(err);
    if (se.code !== 'ERR_INTERNAL') return se;
    logger.error({ err }, `${what} failed`);
    return new SigilError('ERR_INTERNAL', 'internal error');
  };

  /** Who is calling, from the kernel's credentials of the connection (see admin-socket.ts). */
  const actorOf = (call: ServerUnaryCall<unknown, unknown>): Actor => {
    if (deps.callerOf === undefined) return { who: 'admin' };
    const caller = deps.callerOf(call.getPeer());
    if (caller === undefined) {
      throw new SigilError('ERR_PERMISSION_DENIED', 'admin caller has no kernel credentials on record', { reason: 'admin-caller-unknown' });
    }
    return { who: `admin:uid:${caller.uid}`, caller: { uid: caller.uid, gid: caller.gid, pid: caller.pid } };
  };

  const unary = <Req>(what: string, fn: (req: Req, actor: Actor) => Promise<unknown>) => {
    return (call: ServerUnaryCall<Req, unknown>, callback: sendUnaryData<unknown>): void => {
      Promise.resolve()
        .then(() => fn(call.request, actorOf(call)))
        .then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(safeError(err, what))),
      );
    };
  };

  const inTrustDomain = (text: string, field: string): string => {
    let id: SpiffeId;
    try {
      id = SpiffeId.parse(text);
    } catch (err) {
      throw new SigilError('ERR_INVALID_SPIFFE_ID', `invalid ${field} ${JSON.stringify(text)}: ${spiffeIdReason(err)}`, { reason: field.replace(/ /g, '-'), cause: err });
    }
    if (!id.memberOf(trustDomain)) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `${field} ${id.toString()} is not in trust domain ${trustDomain.name}`, {
        reason: 'foreign-trust-domain',
      });
    }
    return id.toString();
  };

  /** An ID a workload SVID may carry: in the trust domain and not reserved for Sigil (src/spiffe/reserved-id.ts). */
  const workloadId = (text: string, field: string): string => {
    const id = inTrustDomain(text, field);
    const reason = reservedIdReason(SpiffeId.parse(id), trustDomain);
    if (reason !== undefined) throw new SigilError('ERR_INVALID_ARGUMENT', `${field} refused: ${reason}`, { reason: 'reserved-spiffe-id' });
    return id;
  };

  /**
   * The entry a create or update asks for, refused now when it claims a reserved ID or could
   * never be signed (a DNS name or TTL the CA refuses, a federated trust domain without a
   * bundle unless `allowMissingBundle`), rather than failing later at every mint.
   */
  const entryFromMsg = async (m: AdminEntryMsg, allowMissingBundle: boolean): Promise<NewRegistrationEntry> => {
    const spiffeId = workloadId(m.spiffe_id, 'spiffe id');
    // a parent may of course name an agent or the server (node aliases)
    const parentId = inTrustDomain(m.parent_id, 'parent id');
    if (m.selectors.length === 0) throw new SigilError('ERR_INVALID_ARGUMENT', 'an entry needs at least one selector', { reason: 'no-selectors' });
    for (const [field, list] of [['selectors', m.selectors], ['dns names', m.dns_names], ['federates with', m.federates_with]] as const) {
      if (list.length > MAX_LIST_ITEMS) {
        throw new SigilError('ERR_INVALID_ARGUMENT', `an entry may have at most ${MAX_LIST_ITEMS} ${field}, got ${list.length}`, { reason: 'entry-too-large' });
      }
    }
    const expiresAt = Number(m.expires_at);
    if (!Number.isSafeInteger(expiresAt) || expiresAt < 0 || expiresAt > MAX_EPOCH_SECONDS) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `entry expiry must be seconds since the epoch (0 = never), got ${JSON.stringify(String(m.expires_at).slice(0, 32))}`, {
        reason: 'invalid-expiry',
      });
    }
    for (const [field, ttl] of [['x509 svid ttl', m.x509_svid_ttl_seconds], ['jwt svid ttl', m.jwt_svid_ttl_seconds]] as const) {
      // the CA refuses a negative TTL; 0 means its default
      if (!Number.isSafeInteger(ttl) || ttl < 0) {
        throw new SigilError('ERR_INVALID_ARGUMENT', `${field} must be 0 (the default) or a positive number of seconds, got ${String(ttl)}`, { reason: 'invalid-ttl' });
      }
    }
    // the CA's own DNS rule, so an entry it would refuse at every mint never gets in
    for (const d of m.dns_names) checkDnsName(d);
    const selectors: Selector[] = m.selectors.map((s) => makeSelector(s.type, s.value));
    const federatesWith = m.federates_with.map((f) => TrustDomain.parse(f).idString);
    if (!allowMissingBundle) {
      for (const td of federatesWith) {
        if ((await ds.getBundle(td)) !== undefined) continue;
        throw new SigilError(
          'ERR_INVALID_ARGUMENT',
          `federates with ${td}: no bundle for that trust domain (add it with sigil bundle set, or allow a missing bundle explicitly)`,
          { reason: 'federated-bundle-missing' },
        );
      }
    }
    return {
      ...(m.id === '' ? {} : { id: m.id }),
      spiffeId,
      parentId,
      selectors,
      x509SvidTtlSeconds: m.x509_svid_ttl_seconds,
      jwtSvidTtlSeconds: m.jwt_svid_ttl_seconds,
      dnsNames: [...m.dns_names],
      federatesWith,
      admin: m.admin,
      downstream: m.downstream,
      hint: m.hint,
      entryExpiresAt: expiresAt * 1000,
    };
  };

  const filterFromMsg = (f: EntryFilterMsg | null | undefined): EntryFilter => {
    if (f === null || f === undefined) return {};
    const out: { -readonly [K in keyof EntryFilter]: EntryFilter[K] } = {};
    if (f.spiffe_id !== '') out.spiffeId = SpiffeId.parse(f.spiffe_id).toString();
    if (f.parent_id !== '') out.parentId = SpiffeId.parse(f.parent_id).toString();
    if (f.selectors.length > 0) {
      const match = (f.selector_match === '' ? 'superset' : f.selector_match) as SelectorMatch;
      if (!['exact', 'subset', 'superset', 'any'].includes(match)) {
        throw new SigilError('ERR_INVALID_ARGUMENT', `selector match must be exact, subset, superset or any, got ${JSON.stringify(match)}`, {
          reason: 'selector-match',
        });
      }
      out.selectors = { selectors: f.selectors.map((s) => makeSelector(s.type, s.value)), match };
    }
    if (f.federates_with !== '') out.federatesWith = TrustDomain.parse(f.federates_with).idString;
    if (f.hint !== '') out.hint = f.hint;
    return out;
  };

  const batch = <T>(items: readonly T[]): readonly T[] => {
    if (items.length > MAX_BATCH) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `at most ${MAX_BATCH} items per call, got ${items.length}`, { reason: 'batch-too-large' });
    }
    return items;
  };

  /** Runs one batch item at a time, each with its own status, then wakes the sync streams once. */
  const perEntry = async <T>(
    items: readonly T[],
    fn: (item: T) => Promise<Record<string, unknown>>,
    onError: (item: T) => Record<string, unknown> = () => ({}),
  ): Promise<{ results: Record<string, unknown>[] }> => {
    const results: Record<string, unknown>[] = [];
    for (const item of batch(items)) {
      try {
        results.push({ status: statusOf(), ...(await fn(item)) });
      } catch (err) {
        results.push({ ...onError(item), status: statusOf(safeError(err, 'batch item')) });
      }
    }
    await audit.committed();
    hub.notify('entries');
    return { results };
  };

  const Entries: UntypedServiceImplementation = {
    BatchCreateEntry: unary('entry create', async (req: EntryBatchMsg, actor: Actor) =>
      perEntry(req.entries, async (m) => {
        const { entry, created } = await ds.createEntryIfNotExists(await entryFromMsg(m, req.allow_missing_federated_bundle === true), (e) => ({
          ...actor,
          action: 'entry.create',
          result: 'ok',
          entryId: e.id,
          spiffeId: e.spiffeId,
        }));
        if (!created) {
          const err = new SigilError('ERR_ALREADY_EXISTS', `an entry with the same SPIFFE ID, parent and selectors exists: ${entry.id}`, {
            reason: 'entry-exists',
          });
          return { status: statusOf(err), entry: entryToAdminMsg(entry, trustDomain) };
        }
        return { entry: entryToAdminMsg(entry, trustDomain) };
      }),
    ),
    BatchUpdateEntry: unary('entry update', async (req: EntryBatchMsg, actor: Actor) =>
      perEntry(req.entries, async (m) => {
        if (m.id === '') throw new SigilError('ERR_INVALID_ARGUMENT', 'entry update needs an entry id', { reason: 'no-entry-id' });
        const entry = await ds.updateEntry({ ...(await entryFromMsg(m, req.allow_missing_federated_bundle === true)), id: m.id }, (e) => ({
          ...actor,
          action: 'entry.update',
          result: 'ok',
          entryId: e.id,
          spiffeId: e.spiffeId,
        }));
        return { entry: entryToAdminMsg(entry, trustDomain) };
      }),
    ),
    BatchDeleteEntry: unary('entry delete', async (req: { ids: string[] }, actor: Actor) =>
      perEntry(
        req.ids,
        async (id) => {
          await ds.deleteEntry(id, (e) => ({ ...actor, action: 'entry.delete', result: 'ok', entryId: e.id, spiffeId: e.spiffeId }));
          return { id };
        },
        (id) => ({ id }),
      ),
    ),
    GetEntry: unary('entry show', async (req: { id: string }) => {
      const e = await ds.getEntry(req.id);
      if (e === undefined) throw new SigilError('ERR_NOT_FOUND', `no entry with id ${JSON.stringify(req.id)}`, { reason: 'entry-not-found' });
      return entryToAdminMsg(e, trustDomain);
    }),
    ListEntries: unary('entry list', async (req: { filter: EntryFilterMsg | null; page_size: number; page_token: string }) => {
      const page = await ds.listEntries(filterFromMsg(req.filter), { pageSize: pageSize(req.page_size), pageToken: req.page_token });
      return { entries: page.items.map((e) => entryToAdminMsg(e, trustDomain)), next_page_token: page.nextPageToken };
    }),
    CountEntries: unary('entry count', async (req: { filter: EntryFilterMsg | null }) => ({ count: await ds.countEntries(filterFromMsg(req.filter)) })),
  };

  const getNode = async (spiffeId: string): Promise<AttestedNode> => {
    const id = inTrustDomain(spiffeId, 'agent id');
    const n = await ds.getAttestedNode(id);
    if (n === undefined) throw new SigilError('ERR_NOT_FOUND', `no attested agent ${id}`, { reason: 'agent-not-found' });
    return n;
  };

  const Agents: UntypedServiceImplementation = {
    ListAgents: unary('agent list', async (req: { banned?: boolean; attestation_type: string; page_size: number; page_token: string; _banned?: string }) => {
      const filter = {
        ...(req._banned === 'banned' && req.banned !== undefined ? { banned: req.banned } : {}),
        ...(req.attestation_type === '' ? {} : { attestationType: req.attestation_type }),
      };
      const page = await ds.listAttestedNodes(filter, { pageSize: pageSize(req.page_size), pageToken: req.page_token });
      return { agents: page.items.map(agentToMsg), next_page_token: page.nextPageToken };
    }),
    GetAgent: unary('agent show', async (req: { spiffe_id: string }) => agentToMsg(await getNode(req.spiffe_id))),
    CountAgents: unary('agent count', async () => ({ count: await ds.countAttestedNodes() })),
    EvictAgent: unary('agent evict', async (req: { spiffe_id: string }, actor: Actor) => {
      const n = await getNode(req.spiffe_id);
      await ds.deleteAttestedNode(n.spiffeId, (d) => ({ ...actor, action: 'agent.evict', result: 'ok', spiffeId: d.spiffeId }));
      await audit.committed();
      hub.notify('agents', n.spiffeId);
      return {};
    }),
    BanAgent: unary('agent ban', async (req: { spiffe_id: string }, actor: Actor) => {
      const n = await getNode(req.spiffe_id);
      await ds.updateAttestedNode({ ...n, banned: true }, (u) => ({ ...actor, action: 'agent.ban', result: 'ok', spiffeId: u.spiffeId }));
      await audit.committed();
      hub.notify('agents', n.spiffeId);
      return {};
    }),
    UnbanAgent: unary('agent unban', async (req: { spiffe_id: string }, actor: Actor) => {
      const n = await getNode(req.spiffe_id);
      await ds.updateAttestedNode({ ...n, banned: false }, (u) => ({ ...actor, action: 'agent.unban', result: 'ok', spiffeId: u.spiffeId }));
      await audit.committed();
      return {};
    }),
  };

  const JoinTokens: UntypedServiceImplementation = {
    CreateJoinToken: unary('token generate', async (req: { ttl_seconds: string | number }, actor: Actor) => {
      // int64: a decimal string from the wire; a number from in-process callers
      const ttlSeconds = Number(req.ttl_seconds);
      // a join token is a bearer credential: a years-long one would outlive any sane enrolment window
      if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0 || ttlSeconds > MAX_JOIN_TOKEN_TTL_SECONDS) {
        throw new SigilError('ERR_INVALID_ARGUMENT', `join token ttl_seconds must be 0 (the default) to ${MAX_JOIN_TOKEN_TTL_SECONDS} (30 days), got ${ttlSeconds}`, {
          reason: 'join-token-ttl',
        });
      }
      const ttlMs = ttlSeconds > 0 ? ttlSeconds * 1000 : deps.joinTokenTtlMs;
      const t = generateJoinToken(clock.nowMs(), ttlMs);
      const agentId = joinTokenAgentId(trustDomain, t.tokenId).toString();
      await ds.createJoinToken({ tokenId: t.tokenId, tokenHash: t.tokenHash, expiresAt: t.expiresAt }, (c) => ({
        ...actor,
        action: 'jointoken.create',
        result: 'ok',
        spiffeId: agentId,
        expiresAt: new Date(c.expiresAt).toISOString(),
        detail: { tokenId: c.tokenId },
      }));
      await audit.committed();
      return { token: t.token.reveal(), token_id: t.tokenId, agent_id: agentId, expires_at: sec(t.expiresAt) };
    }),
  };

  const bundleMsg = (b: ParsedBundleRecord): Record<string, unknown> => ({ ...bundleToMsg(b), updated_at: sec(b.record.updatedAt) });
  const parsed = (record: BundleRecord): ParsedBundleRecord => ({ record, bundle: deps.bundles.parse(record) });

  const Bundles: UntypedServiceImplementation = {
    GetBundle: unary('bundle show', async () => bundleMsg(await deps.bundles.ownParsed())),
    ListFederatedBundles: unary('bundle list', async (req: { page_size: number; page_token: string }) => {
      const all = await deps.bundles.federatedParsed();
      const start = req.page_token === '' ? 0 : Number(req.page_token);
      if (!Number.isSafeInteger(start) || start < 0) throw new SigilError('ERR_INVALID_ARGUMENT', 'invalid page token', { reason: 'page-token' });
      const size = pageSize(req.page_size);
      const items = all.slice(start, start + size);
      return { bundles: items.map(bundleMsg), next_page_token: start + size < all.length ? String(start + size) : '' };
    }),
    GetFederatedBundle: unary('bundle show', async (req: { trust_domain: string }) => {
      const id = deps.bundles.federatedId(req.trust_domain);
      const b = await ds.getBundle(id);
      if (b === undefined) throw new SigilError('ERR_NOT_FOUND', `no federated bundle for ${id}`, { reason: 'bundle-not-found' });
      return bundleMsg(parsed(b));
    }),
    SetFederatedBundle: unary('bundle set', async (req: { trust_domain: string; document: Buffer; format: string; append: boolean }, actor: Actor) => {
      const id = deps.bundles.federatedId(req.trust_domain);
      const td = TrustDomain.parse(id);
      const text = req.document.toString('utf8');
      let incoming: Bundle;
      if (req.format === 'pem') {
        if (text.includes('PRIVATE KEY-----')) {
          throw new SigilError('ERR_INVALID_BUNDLE', 'the PEM bundle holds a private key; send certificates only', { reason: 'private-key-in-bundle' });
        }
        incoming = Bundle.fromX509Pem(td, text);
        if (incoming.x509Authorities.length === 0) throw new SigilError('ERR_INVALID_BUNDLE', 'no PEM certificate in the bundle', { reason: 'bundle-pem' });
      } else if (req.format === '' || req.format === 'spiffe') {
        incoming = Bundle.parseJwks(td, text, { requireKid: true });
      } else {
        throw new SigilError('ERR_INVALID_ARGUMENT', `bundle format must be spiffe or pem, got ${JSON.stringify(req.format)}`, { reason: 'bundle-format' });
      }
      const existing = await ds.getBundle(id);
      const old = existing === undefined ? undefined : deps.bundles.parse(existing);
      let next = incoming;
      if (old === undefined) {
        // a PEM file has no sequence of its own; start the count
        if (req.format === 'pem') next = incoming.with({ sequenceNumber: 1 });
      } else if (req.append) {
        // appending keeps what is there (JWT keys and hint included); a key ID sent again takes the new key
        const jwt = new Map([...old.jwtAuthorities].map(([kid, a]) => [kid, a.publicKey]));
        for (const [kid, a] of incoming.jwtAuthorities) jwt.set(kid, a.publicKey);
        next = old.with({ x509Authorities: [...old.x509Authorities, ...incoming.x509Authorities], jwtAuthorities: jwt, sequenceNumber: (old.sequenceNumber ?? 0) + 1 });
      } else if (req.format === 'pem') {
        next = incoming.with({ sequenceNumber: (old.sequenceNumber ?? 0) + 1 });
      }
      const rec = await deps.bundles.setFederated(id, next, () => ({ ...actor, action: 'bundle.set', result: 'ok', spiffeId: id }));
      await audit.committed();
      return bundleMsg(parsed(rec));
    }),
    DeleteFederatedBundle: unary('bundle delete', async (req: { trust_domain: string }, actor: Actor) => {
      const id = deps.bundles.federatedId(req.trust_domain);
      await deps.bundles.deleteFederated(id, () => ({ ...actor, action: 'bundle.delete', result: 'ok', spiffeId: id }));
      await audit.committed();
      return {};
    }),
  };

  const la = (): LocalAuthorityOps => {
    if (deps.localAuthority === undefined) throw new SigilError('ERR_UNAVAILABLE', 'local authority operations are not available', { reason: 'no-local-authority' });
    return deps.localAuthority;
  };
  /** This server's authorities (live state), then every other server's as journaled, each with its owner. */
  const laStatus = async (): Promise<unknown> => {
    const own = deps.serverId ?? '';
    const authorities = authoritiesOf(la().status()).map((a) => ({ ...a, server_id: own }));
    for (const j of await deps.ds.listCaJournals(trustDomain.idString)) {
      if (j.serverId === own) continue;
      let journal;
      try {
        journal = decodeCaJournal(j.journal);
      } catch {
        continue; // the bundle manager logs unreadable journals
      }
      authorities.push(...authoritiesOf({ x509: journal.x509, jwt: journal.jwt }).map((a) => ({ ...a, server_id: j.serverId })));
    }
    return { authorities };
  };
  /** The owner of `id` when it is not one of this server's authorities. */
  const otherOwner = async (kind: 'x509' | 'jwt', id: string): Promise<string | undefined> => {
    const mine = authoritiesOf(la().status()).some((a) => a.kind === kind && a.authority_id === id);
    return mine ? undefined : authorityOwner(ds, trustDomain, kind, id, deps.serverId ?? '');
  };
  /** One authority operation: audited, then the own bundle is brought in step before the new status is returned. */
  const laStep = (op: 'prepare' | 'activate' | 'taint' | 'revoke') =>
    unary(`localauthority ${op}`, async (req: { kind: string; authority_id?: string }, actor: Actor) => {
      const kind = parseKind(req.kind);
      const id = req.authority_id ?? '';
      const record: AuditRecord = { ...actor, action: `localauthority.${kind}.${op}`, result: 'ok', ...(op === 'taint' || op === 'revoke' ? { detail: { authorityId: id } } : {}) };
      // another server's authority: recorded in its owner's journal (remote-authority.ts)
      const owner = op === 'taint' || op === 'revoke' ? await otherOwner(kind, id) : undefined;
      if (owner !== undefined && (op === 'taint' || op === 'revoke')) {
        await remoteAuthorityStep(ds, trustDomain, owner, op, kind, id, () => ({ ...record, detail: { authorityId: id, serverId: owner } }));
        await audit.committed();
        await deps.bundles.syncOwn();
        return laStatus();
      }
      const step = (): Promise<unknown> => (op === 'prepare' || op === 'activate' ? la()[op](kind) : la()[op](kind, id));
      // written with the journal change the operation commits; directly only when it committed none
      let attached = false;
      if (deps.journalAudit === undefined) await step();
      else ({ attached } = await deps.journalAudit.run(record, step));
      if (attached) await audit.committed();
      else audit.record(record);
      await deps.bundles.syncOwn();
      return laStatus();
    });
  const LocalAuthority: UntypedServiceImplementation = {
    GetStatus: unary('localauthority show', laStatus),
    Prepare: laStep('prepare'),
    Activate: laStep('activate'),
    Taint: laStep('taint'),
    Revoke: laStep('revoke'),
  };

  const Mint: UntypedServiceImplementation = {
    MintX509Svid: unary('x509 mint', async (req: { spiffe_id: string; csr: Buffer; ttl_seconds: number; dns_names: string[] }, actor: Actor) => {
      const spiffeId = workloadId(req.spiffe_id, 'spiffe id');
      checkCsr(req.csr, 'mint request');
      const ttlMs = req.ttl_seconds > 0 ? req.ttl_seconds * 1000 : deps.defaultX509SvidTtlMs;
      const s = await deps.ca.signX509SvidFromCsr({ csr: req.csr, spiffeId: SpiffeId.parse(spiffeId), ttlMs, ...(req.dns_names.length > 0 ? { dnsNames: [...req.dns_names] } : {}) });
      const serial = normalizeSerial(s.serial);
      audit.record({ ...actor, action: 'x509svid.mint', result: 'ok', spiffeId, serial, expiresAt: s.notAfter.toISOString() });
      return { spiffe_id: spiffeId, cert_chain: [...s.chain], serial, expires_at: sec(s.notAfter.getTime()), x509_authorities: deps.bundles.x509Anchors() };
    }),
    MintJwtSvid: unary('jwt mint', async (req: { spiffe_id: string; audience: string[]; ttl_seconds: number }, actor: Actor) => {
      const spiffeId = workloadId(req.spiffe_id, 'spiffe id');
      checkAudience(req.audience);
      const ttlMs = req.ttl_seconds > 0 ? req.ttl_seconds * 1000 : deps.defaultJwtSvidTtlMs;
      const j = await deps.ca.mintJwtSvid({ spiffeId: SpiffeId.parse(spiffeId), audience: [...req.audience], ttlMs });
      audit.record({ ...actor, action: 'jwtsvid.mint', result: 'ok', spiffeId, expiresAt: j.expiresAt.toISOString(), detail: { kid: j.kid, jti: j.jti } });
      return { token: j.token, spiffe_id: spiffeId, expires_at: sec(j.expiresAt.getTime()) };
    }),
  };

  const Server: UntypedServiceImplementation = {
    GetInfo: unary('server info', async () => {
      const i = deps.info();
      return { trust_domain: trustDomain.name, version: i.version, started_at: sec(i.startedAt), agent_api_address: i.agentApiAddress, ready: i.ready };
    }),
    RemoveServer: unary('server remove', async (req: { server_id: string }, actor: Actor) => {
      const record: AuditRecord = { ...actor, action: 'server.remove', result: 'ok', detail: { serverId: req.server_id } };
      const r = await removeServer(ds, trustDomain, req.server_id, deps.serverId ?? '', clock.nowMs(), () => record);
      if (r.alreadyRemoved) audit.record({ ...record, detail: { serverId: r.serverId, alreadyRemoved: true } });
      else await audit.committed();
      await deps.bundles.syncOwn();
      return { server_id: r.serverId, removed_at: sec(r.removedAt), authorities: r.authorities, drained_at: Math.ceil(r.drainedAt / 1000), already_removed: r.alreadyRemoved };
    }),
  };

  const Federation = createFederationService({ ds, bundles: deps.bundles, audit, ...(deps.federation === undefined ? {} : { refresher: deps.federation }) }, unary);

  return { Entries, Agents, JoinTokens, Bundles, Federation, LocalAuthority, Mint, Server };
}

/** Maps whatever the CA's status() returns to Authority messages, tolerating field-name variants. */
function authoritiesOf(status: unknown): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const visit = (kind: string, list: unknown): void => {
    if (!Array.isArray(list)) return;
    for (const a of list as Record<string, unknown>[]) {
      const notAfter = a.notAfter instanceof Date ? a.notAfter.getTime() : typeof a.notAfter === 'number' ? a.notAfter : 0;
      out.push({
        kind,
        authority_id: String(a.id ?? a.authorityId ?? a.kid ?? ''),
        phase: String(a.phase ?? a.state ?? ''),
        tainted: a.tainted === true,
        not_after: sec(notAfter),
        key_type: String(a.keyType ?? ''),
      });
    }
  };
  if (status !== null && typeof status === 'object') {
    const s = status as Record<string, unknown>;
    visit('x509', s.x509);
    visit('jwt', s.jwt);
  }
  return out;
}
