/**
 * The jwt node attestor's evidence on the wire: the agent sends `{ "issuer": <name>, "token":
 * <JWT> }`, where `name` is one of the issuers the server's `nodeAttestors.jwt.issuers` names
 * and the token is an OpenID identity token that issuer minted for the machine the agent runs
 * on (a CI job, a cloud VM), for an audience only Sigil accepts.
 */
import { z } from 'zod';
import { tokenRefused } from '../common/jwt-key-set.js';
import type { SigilError } from '../../../src/common/errors.js';

/** The attestor's name on the AttestAgent stream, in agent IDs and as the selector type. */
export const JWT_ATTESTOR = 'jwt';

/** Issuer names become an agent-ID path segment. */
export const ISSUER_NAME = /^[A-Za-z0-9._-]{1,128}$/;

const MAX_PAYLOAD_BYTES = 64 * 1024;

/** What the agent sends. */
export interface JwtPayload {
  readonly issuer: string;
  readonly token: string;
}

/** A refusal with a `jwt-…` reason; never the token in the message. */
export function jwtRefused(what: string, message: string, cause?: unknown): SigilError {
  return tokenRefused('jwt', what, message, cause);
}

export function encodePayload(p: JwtPayload): Uint8Array {
  return Buffer.from(JSON.stringify({ issuer: p.issuer, token: p.token }), 'utf8');
}

const payloadSchema = z.strictObject({ issuer: z.string().regex(ISSUER_NAME), token: z.string().min(1).max(32 * 1024) });

export function decodePayload(bytes: Uint8Array): JwtPayload {
  if (bytes.length > MAX_PAYLOAD_BYTES) throw jwtRefused('malformed', 'jwt payload is too large');
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw jwtRefused('malformed', 'jwt payload is not valid JSON', err);
  }
  const parsed = payloadSchema.safeParse(json);
  if (!parsed.success) throw jwtRefused('malformed', 'jwt payload must be {issuer, token} with a valid issuer name');
  return parsed.data;
}
