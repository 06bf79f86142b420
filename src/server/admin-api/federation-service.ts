/**
 * The sigil.admin.v1.Federation service: federation relationships (`sigil federation …`).
 * Each change is audited in its own transaction; a bootstrap bundle given with a create or
 * update is validated like `bundle set` and stored as the peer's bundle.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import type { AuditFor, Datastore, FederationRelationship, FederationRelationshipFields } from '../../datastore/datastore.js';
import { TrustDomain } from '../../spiffe/spiffe-id.js';
import type { AuditLog, AuditRecord } from '../audit-log.js';
import type { BundleManager } from '../bundle-manager.js';
import { readBootstrapBundle, type FederationRefresher } from '../federation/federation-refresher.js';

/** Who made an audited change (admin-service.ts's Actor). */
export interface FederationActor {
  readonly who: string;
  readonly caller?: { readonly uid: number; readonly gid: number; readonly pid: number };
}

/** The admin handler factory of admin-service.ts. */
export type UnaryFactory = <Req>(what: string, fn: (req: Req, actor: FederationActor) => Promise<unknown>) => (call: ServerUnaryCall<Req, unknown>, callback: sendUnaryData<unknown>) => void;

interface RelationshipRequest {
  trust_domain: string;
  bundle_endpoint_url: string;
  bundle_endpoint_profile: string;
  endpoint_spiffe_id: string;
  trust_domain_bundle: Buffer;
  trust_domain_bundle_format: string;
}

function sec(ms: number): number {
  return Math.floor(ms / 1000);
}

/** What the handlers need. */
export interface FederationServiceDeps {
  readonly ds: Datastore;
  readonly bundles: BundleManager;
  readonly audit: AuditLog;
  readonly refresher?: FederationRefresher;
}

/** Builds the Federation service. */
export function createFederationService(deps: FederationServiceDeps, unary: UnaryFactory): UntypedServiceImplementation {
  const { ds, bundles, audit } = deps;
  const toMsg = async (r: FederationRelationship): Promise<Record<string, unknown>> => ({
    trust_domain_id: r.trustDomainId,
    bundle_endpoint_url: r.bundleEndpointUrl,
    bundle_endpoint_profile: r.profile,
    endpoint_spiffe_id: r.endpointSpiffeId,
    created_at: sec(r.createdAt),
    updated_at: sec(r.updatedAt),
    last_attempt_at: sec(r.lastAttemptAt),
    last_success_at: sec(r.lastSuccessAt),
    last_error: r.lastError,
    last_sequence: r.lastSequence,
    consecutive_failures: r.consecutiveFailures,
    next_refresh_at: sec(r.nextRefreshAt),
    has_bundle: (await ds.getBundle(r.trustDomainId)) !== undefined,
  });
  const fieldsOf = (req: RelationshipRequest): FederationRelationshipFields => {
    const id = bundles.federatedId(req.trust_domain);
    const profile = req.bundle_endpoint_profile === '' ? 'https_spiffe' : req.bundle_endpoint_profile;
    if (profile !== 'https_web' && profile !== 'https_spiffe') {
      throw new SigilError('ERR_INVALID_ARGUMENT', `bundle endpoint profile must be https_web or https_spiffe, got ${JSON.stringify(profile)}`, { reason: 'invalid-federation-profile' });
    }
    return { trustDomainId: id, bundleEndpointUrl: req.bundle_endpoint_url, profile, endpointSpiffeId: profile === 'https_spiffe' ? req.endpoint_spiffe_id : '' };
  };
  const bootstrapOf = (req: RelationshipRequest, id: string): ReturnType<typeof readBootstrapBundle> | undefined => {
    if (req.trust_domain_bundle.length === 0) return undefined;
    const format = req.trust_domain_bundle_format === '' ? 'spiffe' : req.trust_domain_bundle_format;
    if (format !== 'spiffe' && format !== 'pem') {
      throw new SigilError('ERR_INVALID_ARGUMENT', `bundle format must be spiffe or pem, got ${JSON.stringify(format)}`, { reason: 'bundle-format' });
    }
    return readBootstrapBundle(TrustDomain.parse(id), req.trust_domain_bundle.toString('utf8'), format);
  };
  const audited =
    (actor: FederationActor, action: string): AuditFor<FederationRelationship> =>
    (r): AuditRecord => ({ ...actor, action, result: 'ok', spiffeId: r.trustDomainId, detail: { bundleEndpointUrl: r.bundleEndpointUrl, profile: r.profile, endpointSpiffeId: r.endpointSpiffeId } });
  const need = async (text: string): Promise<FederationRelationship> => {
    const id = bundles.federatedId(text);
    const r = await ds.getFederationRelationship(id);
    if (r === undefined) throw new SigilError('ERR_NOT_FOUND', `no federation relationship with ${id}`, { reason: 'federation-not-found' });
    return r;
  };

  return {
    CreateFederationRelationship: unary('federation create', async (req: RelationshipRequest, actor) => {
      const f = fieldsOf(req);
      // both checked before anything is written
      const bootstrap = bootstrapOf(req, f.trustDomainId);
      if (f.profile === 'https_spiffe' && bootstrap === undefined && (await ds.getBundle(f.trustDomainId)) === undefined) {
        throw new SigilError('ERR_INVALID_ARGUMENT', `https_spiffe needs a bundle of ${f.trustDomainId} to authenticate its endpoint: pass the bootstrap bundle`, { reason: 'federation-no-bundle' });
      }
      const created = await ds.createFederationRelationship(f, audited(actor, 'federation.create'));
      if (bootstrap !== undefined) await bundles.setFederated(f.trustDomainId, bootstrap, () => ({ ...actor, action: 'bundle.set', result: 'ok', spiffeId: f.trustDomainId }));
      await audit.committed();
      return toMsg(created);
    }),
    ListFederationRelationships: unary('federation list', async () => ({ relationships: await Promise.all((await ds.listFederationRelationships()).map(toMsg)) })),
    GetFederationRelationship: unary('federation show', async (req: { trust_domain: string }) => toMsg(await need(req.trust_domain))),
    UpdateFederationRelationship: unary('federation update', async (req: RelationshipRequest, actor) => {
      const f = fieldsOf(req);
      const bootstrap = bootstrapOf(req, f.trustDomainId);
      const updated = await ds.updateFederationRelationship(f, audited(actor, 'federation.update'));
      if (bootstrap !== undefined) await bundles.setFederated(f.trustDomainId, bootstrap, () => ({ ...actor, action: 'bundle.set', result: 'ok', spiffeId: f.trustDomainId }));
      await audit.committed();
      return toMsg(updated);
    }),
    DeleteFederationRelationship: unary('federation delete', async (req: { trust_domain: string }, actor) => {
      const id = bundles.federatedId(req.trust_domain);
      await ds.deleteFederationRelationship(id, audited(actor, 'federation.delete'));
      await audit.committed();
      return {};
    }),
    RefreshFederationRelationship: unary('federation refresh', async (req: { trust_domain: string }, actor) => {
      const r = await need(req.trust_domain);
      if (deps.refresher === undefined) throw new SigilError('ERR_UNAVAILABLE', 'the federation refresher is not running', { reason: 'no-refresher' });
      const after = await deps.refresher.refreshNow(r.trustDomainId);
      audit.record({ ...actor, action: 'federation.refresh', result: after.lastError === '' ? 'ok' : 'error', spiffeId: r.trustDomainId, detail: { sequence: after.lastSequence } });
      return toMsg(after);
    }),
  };
}
