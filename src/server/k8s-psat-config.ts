/**
 * The `nodeAttestors.k8sPsat` part of the server config: the clusters whose agents attest with
 * projected service-account tokens, each with its allow list, audience and one key source
 * (`jwksFile` with `issuer`, `discovery` with `issuer`, or `tokenReview`). Kept beside the
 * server schema so the attestor's settings read as one block.
 */
import { z } from 'zod';
import type { PsatClusterConfig } from '../../attestors/node/k8s_psat/server.js';
import { CLUSTER_NAME } from '../../attestors/node/k8s_psat/protocol.js';

/** An issuer or API server URL: https, no query or fragment. */
export const httpsUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' && u.search === '' && u.hash === '';
  } catch {
    return false;
  }
}, 'must be an https:// URL without query or fragment');

const clusterSchema = z.strictObject({
  serviceAccountAllowList: z.array(z.string().regex(/^[^:\s]+:[^:\s]+$/, 'must be namespace:serviceaccount')).min(1),
  audience: z.array(z.string().min(1)).min(1).default(['sigil-server']),
  /** The `iss` of the cluster's tokens; needed with jwksFile and discovery. */
  issuer: httpsUrl.optional(),
  jwksFile: z.string().min(1).optional(),
  discovery: z.strictObject({ caFile: z.string().min(1).optional() }).optional(),
  tokenReview: z
    .strictObject({
      apiServer: httpsUrl,
      caFile: z.string().min(1).optional(),
      tokenFile: z.string().min(1).default('/var/run/secrets/kubernetes.io/serviceaccount/token'),
      readNode: z.boolean().default(false),
    })
    .optional(),
});

/** The schema of `nodeAttestors.k8sPsat`. */
export const k8sPsatConfigSchema = z.strictObject({
  clusters: z.record(z.string().regex(CLUSTER_NAME, 'cluster names use [A-Za-z0-9._-]'), clusterSchema).refine((r) => Object.keys(r).length > 0, 'name at least one cluster'),
});

/** The resolved attestor settings: clusters by name. */
export type K8sPsatConfig = Readonly<Record<string, PsatClusterConfig>>;

/** Resolves the block; problems (naming the key) are pushed to `problems`. */
export function resolveK8sPsat(raw: z.output<typeof k8sPsatConfigSchema>, abs: (p: string) => string, problems: string[]): K8sPsatConfig {
  const out: Record<string, PsatClusterConfig> = {};
  for (const [name, c] of Object.entries(raw.clusters)) {
    const key = `nodeAttestors.k8sPsat.clusters.${name}`;
    const sources = [c.jwksFile !== undefined, c.discovery !== undefined, c.tokenReview !== undefined].filter(Boolean).length;
    if (sources !== 1) {
      problems.push(`${key}: set exactly one of jwksFile, discovery, tokenReview`);
      continue;
    }
    if (c.tokenReview === undefined && c.issuer === undefined) {
      problems.push(`${key}.issuer: required with ${c.jwksFile !== undefined ? 'jwksFile' : 'discovery'} (the iss of the cluster's tokens)`);
      continue;
    }
    const base = { serviceAccountAllowList: [...c.serviceAccountAllowList], audience: [...c.audience] };
    if (c.tokenReview !== undefined) {
      const t = c.tokenReview;
      out[name] = { ...base, keys: { kind: 'token-review', apiServer: t.apiServer, tokenFile: abs(t.tokenFile), readNode: t.readNode, ...(t.caFile === undefined ? {} : { caFile: abs(t.caFile) }) } };
    } else if (c.jwksFile !== undefined) {
      out[name] = { ...base, keys: { kind: 'jwks-file', issuer: c.issuer as string, jwksFile: abs(c.jwksFile) } };
    } else {
      const caFile = c.discovery?.caFile;
      out[name] = { ...base, keys: { kind: 'discovery', issuer: c.issuer as string, ...(caFile === undefined ? {} : { caFile: abs(caFile) }) } };
    }
  }
  return out;
}
