/**
 * The `nodeAttestors.jwt` part of the server config: the OpenID issuers whose identity tokens
 * may attest agents (attestors/node/jwt), each by name with a profile (`github`, `gitlab`,
 * `gcp` or `custom`) that supplies the issuer URL and the claim layout, the audience only this
 * server accepts, one key source, and the `allow` rules that keep other tenants of a public
 * issuer out.
 */
import { z } from 'zod';
import type { JwtIssuerConfig } from '../../attestors/node/jwt/server.js';
import { ISSUER_NAME } from '../../attestors/node/jwt/protocol.js';
import { JWT_PROFILES } from '../../attestors/node/jwt/profiles.js';
import { httpsUrl } from './k8s-psat-config.js';

const claimName = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'claim names use [A-Za-z0-9_.-]');

const issuerSchema = z.strictObject({
  profile: z.enum(['github', 'gitlab', 'gcp', 'custom']).default('custom'),
  /** The `iss` of the tokens; the profile's own by default (required for custom). */
  issuer: httpsUrl.optional(),
  audience: z.array(z.string().min(1)).min(1),
  jwksFile: z.string().min(1).optional(),
  /** Read the keys through the issuer's discovery document (the default when jwksFile is absent). */
  discovery: z.strictObject({ caFile: z.string().min(1).optional() }).optional(),
  allow: z.record(claimName, z.array(z.string()).min(1)),
  selectorClaims: z.array(claimName).optional(),
  agentIdClaims: z.array(claimName).min(1).max(8).optional(),
});

export const jwtNodeConfigSchema = z.strictObject({
  issuers: z.record(z.string().regex(ISSUER_NAME, 'issuer names use [A-Za-z0-9._-]'), issuerSchema).refine((r) => Object.keys(r).length > 0, 'name at least one issuer'),
});

export type JwtNodeConfig = Readonly<Record<string, JwtIssuerConfig>>;

/** Resolves the block with each profile applied; problems (naming the key) are pushed to `problems`. */
export function resolveJwtNode(raw: z.output<typeof jwtNodeConfigSchema>, abs: (p: string) => string, problems: string[]): JwtNodeConfig {
  const out: Record<string, JwtIssuerConfig> = {};
  for (const [name, c] of Object.entries(raw.issuers)) {
    const key = `nodeAttestors.jwt.issuers.${name}`;
    const profile = JWT_PROFILES[c.profile];
    const issuer = c.issuer ?? profile.issuer;
    if (issuer === undefined) {
      problems.push(`${key}.issuer: required with profile custom (the iss of the tokens)`);
      continue;
    }
    if (c.jwksFile !== undefined && c.discovery !== undefined) {
      problems.push(`${key}: set jwksFile or discovery, not both`);
      continue;
    }
    if (Object.keys(c.allow).length === 0) {
      problems.push(`${key}.allow: name at least one claim and its allowed values (e.g. repository_owner: [my-org]); without it any tenant of the issuer could attest`);
      continue;
    }
    const selectorClaims = c.selectorClaims ?? profile.selectorClaims;
    if (selectorClaims.length === 0) {
      problems.push(`${key}.selectorClaims: list the claims that become jwt: selectors (profile custom has none)`);
      continue;
    }
    out[name] = {
      issuer,
      audience: [...c.audience],
      keys: c.jwksFile !== undefined ? { kind: 'jwks-file', jwksFile: abs(c.jwksFile) } : { kind: 'discovery', ...(c.discovery?.caFile === undefined ? {} : { caFile: abs(c.discovery.caFile) }) },
      allow: c.allow,
      selectorClaims: [...selectorClaims],
      agentIdClaims: [...(c.agentIdClaims ?? profile.agentIdClaims)],
      requireJti: profile.requireJti,
    };
  }
  return out;
}
