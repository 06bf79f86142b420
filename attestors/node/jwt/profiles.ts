/**
 * What the jwt node attestor knows of the identity tokens of common issuers: the issuer URL,
 * which claims become selectors, which claims name the agent (one agent per CI job or per VM),
 * and whether each token carries a `jti` to refuse replays by. Claims in nested objects are
 * named by dotted paths (`google.compute_engine.instance_id`). Sources of the claim layouts:
 * GitHub's "About security hardening with OpenID Connect", GitLab's "ID token authentication",
 * Google's "Verifying the identity of instances" (format=full).
 */

export type JwtProfileName = 'github' | 'gitlab' | 'gcp' | 'custom';

export interface JwtProfile {
  /** The issuer URL, when the profile has one. */
  readonly issuer?: string;
  readonly selectorClaims: readonly string[];
  readonly agentIdClaims: readonly string[];
  /** Refuse a token without `jti` (and so every replay can be refused). */
  readonly requireJti: boolean;
}

export const JWT_PROFILES: Readonly<Record<JwtProfileName, JwtProfile>> = {
  github: {
    issuer: 'https://token.actions.githubusercontent.com',
    selectorClaims: ['sub', 'repository', 'repository_id', 'repository_owner', 'repository_owner_id', 'ref', 'ref_type', 'environment', 'workflow', 'job_workflow_ref', 'actor', 'event_name', 'runner_environment'],
    // One agent per job run: concurrent jobs of one repository are different agents.
    agentIdClaims: ['repository_id', 'run_id', 'run_attempt'],
    requireJti: true,
  },
  gitlab: {
    issuer: 'https://gitlab.com',
    selectorClaims: ['sub', 'namespace_path', 'project_path', 'project_id', 'ref', 'ref_type', 'ref_protected', 'environment', 'pipeline_source', 'user_login', 'runner_environment'],
    agentIdClaims: ['project_id', 'pipeline_id', 'job_id'],
    requireJti: true,
  },
  gcp: {
    issuer: 'https://accounts.google.com',
    selectorClaims: ['sub', 'email', 'google.compute_engine.project_id', 'google.compute_engine.zone', 'google.compute_engine.instance_id', 'google.compute_engine.instance_name'],
    // One agent per VM: a restarted agent on the same instance is the same agent.
    agentIdClaims: ['google.compute_engine.project_id', 'google.compute_engine.instance_id'],
    requireJti: false,
  },
  custom: { selectorClaims: [], agentIdClaims: ['sub'], requireJti: false },
};

/** The value at a dotted claim path, or undefined. */
export function claimAt(claims: Readonly<Record<string, unknown>>, path: string): unknown {
  if (Object.prototype.hasOwnProperty.call(claims, path)) return claims[path];
  let v: unknown = claims;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** A claim's scalar values as text: a string, number or boolean, or each of an array of them. */
export function claimValues(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (typeof v === 'number' || typeof v === 'boolean') return [String(v)];
  if (Array.isArray(v)) return v.flatMap((x) => (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean' ? [String(x)] : []));
  return [];
}
