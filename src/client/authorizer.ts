/**
 * Authorizers decide, after a peer's X509-SVID has been verified by SPIFFE rules, whether
 * that peer may talk to us. They see only the peer's verified SPIFFE ID; returning false
 * (or throwing) refuses the connection.
 */
import { SigilError } from '../common/errors.js';
import { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';

/** Decides whether a verified peer ID is allowed; false or a throw refuses it. */
export type Authorizer = (peerId: SpiffeId) => boolean;

function toId(id: SpiffeId | string): SpiffeId {
  return typeof id === 'string' ? SpiffeId.parse(id) : id;
}

/** Allows any peer whose SVID verified (any ID in any trusted trust domain). */
export function authorizeAny(): Authorizer {
  return () => true;
}

/** Allows exactly one SPIFFE ID. */
export function authorizeId(id: SpiffeId | string): Authorizer {
  const want = toId(id).toString();
  return (peer) => peer.toString() === want;
}

/** Allows any of the given SPIFFE IDs. */
export function authorizeOneOf(...ids: ReadonlyArray<SpiffeId | string>): Authorizer {
  const want = new Set(ids.map((id) => toId(id).toString()));
  return (peer) => want.has(peer.toString());
}

/** Allows any ID in the given trust domain. */
export function authorizeMemberOf(trustDomain: TrustDomain | string): Authorizer {
  const td = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain) : trustDomain;
  return (peer) => peer.memberOf(td);
}

/** Wraps a custom predicate; the same as passing the function itself, named for readability. */
export function authorizeIf(predicate: (peerId: SpiffeId) => boolean): Authorizer {
  return (peer) => predicate(peer);
}

/** Runs an authorizer and turns a refusal into ERR_PERMISSION_DENIED (reason `peer-not-authorized`). */
export function applyAuthorizer(authorizer: Authorizer, peerId: SpiffeId): void {
  let allowed: boolean;
  try {
    allowed = authorizer(peerId);
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw new SigilError('ERR_PERMISSION_DENIED', `peer ${peerId.toString()} is not authorized`, {
      reason: 'peer-not-authorized',
      cause: err,
    });
  }
  if (allowed !== true) {
    throw new SigilError('ERR_PERMISSION_DENIED', `peer ${peerId.toString()} is not authorized`, { reason: 'peer-not-authorized' });
  }
}
