/**
 * Server half of the jwt node attestor: an agent proves where it runs with an OpenID identity
 * token its platform mints (GitHub Actions, GitLab CI, a GCP VM's metadata server, any issuer
 * with a discovery document or a JWKS file). Per configured issuer the token is checked for
 * keys, issuer, audience and expiry, then against the issuer's `allow` rules (every listed
 * claim must have one of the listed values — without them, any repository or project of a
 * public issuer could mint a token for our audience), and a token with a `jti` attests once.
 *
 * The agent becomes `spiffe://<td>/sigil/agent/jwt/<issuer>/<v1>/<v2>…`, one segment per
 * agent-ID claim (values that are not path-safe appear as `sha256.<hex>`). Selectors:
 * `jwt:issuer:<name>` and `jwt:<claim>:<value>` for each selector claim the token has.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../../../src/common/clock.js';
import type { NodeAttestationSession, NodeAttestationStep, NodeAttestorServer } from '../../../src/plugin/node-attestor.js';
import { makeSelector, type Selector } from '../../../src/spiffe/selector.js';
import type { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { IssuerTokenVerifier, type IssuerKeySource } from '../common/jwt-key-set.js';
import { JWT_ATTESTOR, decodePayload, jwtRefused } from './protocol.js';
import { claimAt, claimValues } from './profiles.js';

/** One issuer whose tokens may attest agents (resolved from config with its profile applied). */
export interface JwtIssuerConfig {
  readonly issuer: string;
  readonly audience: readonly string[];
  readonly keys: IssuerKeySource;
  /** Claim → allowed values; every listed claim must match. At least one. */
  readonly allow: Readonly<Record<string, readonly string[]>>;
  readonly selectorClaims: readonly string[];
  readonly agentIdClaims: readonly string[];
  readonly requireJti: boolean;
}

export interface JwtServerOptions {
  readonly issuers: Readonly<Record<string, JwtIssuerConfig>>;
  readonly clock: Clock;
}

const SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;
const MAX_SEEN = 100_000;

function segmentOf(value: string): string {
  if (SEGMENT.test(value) && !value.startsWith('sha256.') && value !== '.' && value !== '..') return value;
  return `sha256.${createHash('sha256').update(value).digest('hex')}`;
}

function selectorOrUndefined(value: string): Selector | undefined {
  try {
    return makeSelector(JWT_ATTESTOR, value);
  } catch {
    return undefined;
  }
}

/** The `jti`s seen, until their tokens expire: a token attests once per server. */
class SeenTokens {
  readonly #until = new Map<string, number>();

  /** False when `key` was seen and has not expired. */
  claim(key: string, expMs: number, nowMs: number): boolean {
    const known = this.#until.get(key);
    if (known !== undefined && known > nowMs) return false;
    if (this.#until.size >= MAX_SEEN) for (const [k, until] of this.#until) if (until <= nowMs) this.#until.delete(k);
    if (this.#until.size >= MAX_SEEN) return false;
    this.#until.set(key, expMs);
    return true;
  }
}

export class JwtServerAttestor implements NodeAttestorServer {
  readonly name = JWT_ATTESTOR;
  readonly #issuers: Map<string, { config: JwtIssuerConfig; verifier: IssuerTokenVerifier }>;
  readonly #clock: Clock;
  readonly #seen = new SeenTokens();

  constructor(options: JwtServerOptions) {
    this.#clock = options.clock;
    this.#issuers = new Map(
      Object.entries(options.issuers).map(([name, config]) => [
        name,
        { config, verifier: new IssuerTokenVerifier({ issuer: config.issuer, source: config.keys, clock: options.clock, reasonPrefix: 'jwt' }) },
      ]),
    );
  }

  begin(trustDomain: TrustDomain): NodeAttestationSession {
    let done = false;
    return {
      next: async (message: Uint8Array, signal?: AbortSignal): Promise<NodeAttestationStep> => {
        if (done) throw jwtRefused('unexpected-message', 'jwt attestation is already complete');
        done = true;
        const payload = decodePayload(message);
        const issuer = this.#issuers.get(payload.issuer);
        if (issuer === undefined) throw jwtRefused('unknown-issuer', `issuer ${payload.issuer} is not configured for jwt node attestation`);
        const claims = await issuer.verifier.verify(payload.token, issuer.config.audience, signal);
        const { config } = issuer;
        for (const [claim, allowed] of Object.entries(config.allow)) {
          const values = claimValues(claimAt(claims, claim));
          if (!values.some((v) => allowed.includes(v))) throw jwtRefused('not-allowed', `the token's ${claim} is not allowed for issuer ${payload.issuer}`);
        }
        const idValues = config.agentIdClaims.map((c) => claimValues(claimAt(claims, c)));
        const missing = config.agentIdClaims.filter((_, i) => idValues[i]?.length !== 1);
        if (missing.length > 0) throw jwtRefused('claims', `the token has no single value for ${missing.join(', ')}, which name the agent`);
        if (typeof claims.jti === 'string' && claims.jti !== '') {
          if (!this.#seen.claim(`${payload.issuer}\u0000${claims.jti}`, (claims.exp ?? 0) * 1000, this.#clock.nowMs())) {
            throw jwtRefused('replayed', 'this token has already attested an agent');
          }
        } else if (config.requireJti) {
          throw jwtRefused('claims', 'the token has no jti, which this issuer always sets');
        }
        const selectors: Selector[] = [makeSelector(JWT_ATTESTOR, `issuer:${payload.issuer}`)];
        for (const c of config.selectorClaims) {
          for (const v of claimValues(claimAt(claims, c))) {
            // A value no selector can hold (control characters, over the size limit) is left out.
            const sel = selectorOrUndefined(`${c}:${v}`);
            if (sel !== undefined) selectors.push(sel);
          }
        }
        const segments = idValues.map((v) => segmentOf(v[0] as string));
        return { kind: 'done', result: { agentId: trustDomain.id('sigil', 'agent', JWT_ATTESTOR, payload.issuer, ...segments), selectors, canReattest: true } };
      },
    };
  }
}
