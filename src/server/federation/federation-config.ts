/**
 * The `federation` part of the server config: the bundle endpoint this server publishes
 * (`bundleEndpoint`), the CA file that verifies https_web peers, and the federation
 * relationships declared in the file (`federatesWith`, keyed by trust domain) for GitOps setups.
 */
import { z } from 'zod';
import { hostPortSchema } from '../../common/config.js';
import { SpiffeId, TrustDomain } from '../../spiffe/spiffe-id.js';

/** The two bundle endpoint profiles of the SPIFFE Trust Domain and Bundle standard. */
export const BUNDLE_ENDPOINT_PROFILES = ['https_web', 'https_spiffe'] as const;
/** A bundle endpoint profile. */
export type BundleEndpointProfile = (typeof BUNDLE_ENDPOINT_PROFILES)[number];

const relationshipSchema = z.strictObject({
  bundleEndpointUrl: z.string().min(1),
  bundleEndpointProfile: z.enum(BUNDLE_ENDPOINT_PROFILES),
  endpointSpiffeId: z.string().min(1).optional(),
  trustDomainBundlePath: z.string().min(1).optional(),
  trustDomainBundleFormat: z.enum(['pem', 'spiffe']).default('spiffe'),
});

export const federationConfigSchema = z.strictObject({
  bundleEndpoint: z
    .strictObject({
      address: hostPortSchema('0.0.0.0:8443'),
      profile: z.enum(BUNDLE_ENDPOINT_PROFILES),
      tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
      acme: z
        .strictObject({
          directoryUrl: z.string().url(),
          domainName: z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, 'must be a lowercase DNS name'),
          email: z.string().email().optional(),
          caFile: z.string().min(1).optional(),
          challengeAddress: hostPortSchema('0.0.0.0:80').default('0.0.0.0:80'),
          tosAccepted: z.literal(true, { error: "must be true: you accept the ACME CA's terms of service" }),
        })
        .optional(),
    })
    .optional(),
  /** PEM CAs that verify https_web endpoints instead of the system CAs. */
  httpsWebCaFile: z.string().min(1).optional(),
  federatesWith: z.record(z.string(), relationshipSchema).optional(),
});

/** A relationship declared in the config, checked and with its paths resolved. */
export interface ConfiguredRelationship {
  readonly trustDomainId: string;
  readonly bundleEndpointUrl: string;
  readonly profile: BundleEndpointProfile;
  /** For https_spiffe: the SPIFFE ID the endpoint's SVID must carry; '' for https_web. */
  readonly endpointSpiffeId: string;
  readonly bootstrapBundle?: { readonly path: string; readonly format: 'pem' | 'spiffe' };
}

/** The resolved federation settings. */
export interface FederationConfig {
  readonly bundleEndpoint?: {
    readonly host: string;
    readonly port: number;
    readonly profile: BundleEndpointProfile;
    /** https_web: the WebPKI certificate chain and key files (re-read when they change). */
    readonly tls?: { readonly certFile: string; readonly keyFile: string };
    /** https_web: obtain (and renew) the certificate from an ACME CA, answering http-01. */
    readonly acme?: {
      readonly directoryUrl: string;
      readonly domainName: string;
      readonly email?: string;
      readonly caFile?: string;
      readonly challengeHost: string;
      readonly challengePort: number;
    };
  };
  readonly httpsWebCaFile?: string;
  readonly relationships: readonly ConfiguredRelationship[];
}

/** Checks a bundle endpoint URL: https, a host, no userinfo or fragment; returns the problem or undefined. */
export function bundleEndpointUrlProblem(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'must be an https:// URL';
  }
  if (u.protocol !== 'https:') return 'must be an https:// URL';
  if (u.hostname === '') return 'must name a host';
  if (u.username !== '' || u.password !== '') return 'must not carry user info';
  if (u.hash !== '') return 'must not carry a fragment';
  return undefined;
}

/** Checks the profile / endpoint SPIFFE ID pairing; returns the problem or undefined. */
export function endpointIdProblem(profile: BundleEndpointProfile, trustDomain: TrustDomain, endpointSpiffeId: string | undefined): string | undefined {
  if (profile === 'https_web') return endpointSpiffeId === undefined || endpointSpiffeId === '' ? undefined : 'only used with profile https_spiffe';
  if (endpointSpiffeId === undefined || endpointSpiffeId === '') return 'required with profile https_spiffe (the SPIFFE ID the endpoint presents)';
  try {
    const id = SpiffeId.parse(endpointSpiffeId);
    // the standard lets the endpoint live in another trust domain, but its bundle must then be known: we only hold the peer's
    if (!id.trustDomain.equals(trustDomain)) return `must be in the trust domain ${trustDomain.name}`;
  } catch {
    return 'is not a valid SPIFFE ID';
  }
  return undefined;
}

function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(text.slice(i + 1)) };
}

/** Resolves the block; problems (naming the key) are pushed to `problems`. */
export function resolveFederation(raw: z.output<typeof federationConfigSchema> | undefined, own: TrustDomain, abs: (p: string) => string, problems: string[]): FederationConfig {
  if (raw === undefined) return { relationships: [] };
  let bundleEndpoint: FederationConfig['bundleEndpoint'];
  const be = raw.bundleEndpoint;
  if (be !== undefined) {
    if (be.profile === 'https_web' && be.tls === undefined && be.acme === undefined) {
      problems.push('federation.bundleEndpoint.tls: required with profile https_web (certFile and keyFile of a WebPKI certificate), unless acme is set');
    }
    if (be.profile === 'https_web' && be.tls !== undefined && be.acme !== undefined) problems.push('federation.bundleEndpoint.acme: set tls or acme, not both');
    if (be.profile === 'https_spiffe' && be.tls !== undefined) problems.push("federation.bundleEndpoint.tls: only used with profile https_web (https_spiffe presents the server's own SVID)");
    if (be.profile === 'https_spiffe' && be.acme !== undefined) problems.push("federation.bundleEndpoint.acme: only used with profile https_web (https_spiffe presents the server's own SVID)");
    const a = be.acme;
    bundleEndpoint = {
      ...splitHostPort(be.address),
      profile: be.profile,
      ...(be.profile === 'https_web' && be.tls !== undefined ? { tls: { certFile: abs(be.tls.certFile), keyFile: abs(be.tls.keyFile) } } : {}),
      ...(be.profile === 'https_web' && a !== undefined
        ? {
            acme: {
              directoryUrl: a.directoryUrl,
              domainName: a.domainName,
              ...(a.email === undefined ? {} : { email: a.email }),
              ...(a.caFile === undefined ? {} : { caFile: abs(a.caFile) }),
              ...((({ host, port }) => ({ challengeHost: host, challengePort: port }))(splitHostPort(a.challengeAddress))),
            },
          }
        : {}),
    };
  }
  const relationships: ConfiguredRelationship[] = [];
  for (const [name, r] of Object.entries(raw.federatesWith ?? {})) {
    const key = `federation.federatesWith.${name}`;
    let td: TrustDomain;
    try {
      td = TrustDomain.parse(name);
    } catch {
      problems.push(`${key}: ${name} is not a valid trust domain`);
      continue;
    }
    if (td.equals(own)) {
      problems.push(`${key}: ${name} is the server's own trust domain`);
      continue;
    }
    const urlProblem = bundleEndpointUrlProblem(r.bundleEndpointUrl);
    if (urlProblem !== undefined) problems.push(`${key}.bundleEndpointUrl: ${urlProblem}`);
    const idProblem = endpointIdProblem(r.bundleEndpointProfile, td, r.endpointSpiffeId);
    if (idProblem !== undefined) problems.push(`${key}.endpointSpiffeId: ${idProblem}`);
    if (r.bundleEndpointProfile === 'https_spiffe' && r.trustDomainBundlePath === undefined) {
      problems.push(`${key}.trustDomainBundlePath: required with profile https_spiffe (the bundle that authenticates the endpoint the first time)`);
    }
    if (urlProblem !== undefined || idProblem !== undefined) continue;
    relationships.push({
      trustDomainId: td.idString,
      bundleEndpointUrl: r.bundleEndpointUrl,
      profile: r.bundleEndpointProfile,
      endpointSpiffeId: r.bundleEndpointProfile === 'https_spiffe' ? SpiffeId.parse(r.endpointSpiffeId as string).toString() : '',
      ...(r.trustDomainBundlePath === undefined ? {} : { bootstrapBundle: { path: abs(r.trustDomainBundlePath), format: r.trustDomainBundleFormat } }),
    });
  }
  return {
    ...(bundleEndpoint === undefined ? {} : { bundleEndpoint }),
    ...(raw.httpsWebCaFile === undefined ? {} : { httpsWebCaFile: abs(raw.httpsWebCaFile) }),
    relationships,
  };
}
