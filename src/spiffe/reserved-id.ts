/**
 * The one rule about which SPIFFE IDs belong to Sigil itself and so can never be claimed by
 * a registration entry or signed for a workload: the trust domain ID (never a leaf), and
 * every ID under `spiffe://<td>/sigil/` (the server, the agents, anything added later). It
 * plays the part of SPIRE's reserved `/spire/` namespace. Registration (create, update,
 * batch create), the CA and the start-up scan of stored entries all ask this function.
 */
import { bytesEqual, childrenOf, contentOf, DerError, expectTlv, oidContent, type Tlv } from './der.js';
import type { SpiffeId, TrustDomain } from './spiffe-id.js';

/** The first path segment Sigil keeps for its own identities. */
export const RESERVED_SEGMENT = 'sigil';
/** Path of the server's own SPIFFE ID. */
export const SERVER_ID_PATH = `/${RESERVED_SEGMENT}/server`;
/** Path prefix of every agent SPIFFE ID (`/sigil/agent/<attestor>/...`). */
export const AGENT_ID_PATH_PREFIX = `/${RESERVED_SEGMENT}/agent/`;

/** The kinds of reserved ID. */
export type ReservedIdKind = 'trust-domain' | 'server' | 'agent' | 'reserved';

/** Which kind of reserved ID `id` is in `trustDomain`, or undefined when it is an ordinary ID (or not in that trust domain). */
export function reservedIdKind(id: SpiffeId, trustDomain: TrustDomain): ReservedIdKind | undefined {
  if (!id.memberOf(trustDomain)) return undefined;
  if (id.isTrustDomainId) return 'trust-domain';
  if (id.path === SERVER_ID_PATH) return 'server';
  if (id.path.startsWith(AGENT_ID_PATH_PREFIX)) return 'agent';
  if (id.path === `/${RESERVED_SEGMENT}` || id.path.startsWith(`/${RESERVED_SEGMENT}/`)) return 'reserved';
  return undefined;
}

/**
 * The same rule on the text of an ID already known valid (as the datastore stores them),
 * without parsing: cheap enough to ask of every entry an agent sync walks.
 */
export function isReservedIdText(text: string, trustDomain: TrustDomain): boolean {
  const base = trustDomain.idString;
  if (!text.startsWith(base)) return false;
  const rest = text.slice(base.length);
  return rest === '' || rest === `/${RESERVED_SEGMENT}` || rest.startsWith(`/${RESERVED_SEGMENT}/`);
}

/** The reserved IDs of a trust domain as text a datastore can look up through its SPIFFE ID index. */
export interface ReservedIdTexts {
  /** Reserved IDs named exactly: the trust domain ID and `spiffe://<td>/sigil`. */
  readonly exact: readonly string[];
  /** Every other reserved ID starts with one of these: `spiffe://<td>/sigil/`. */
  readonly prefixes: readonly string[];
}

/**
 * The rule of {@link isReservedIdText} as exact IDs and prefixes: a text is reserved exactly
 * when it is one of `exact` or starts with one of `prefixes` (test/spiffe/reserved-id.test.ts).
 */
export function reservedIdTexts(trustDomain: TrustDomain): ReservedIdTexts {
  const base = trustDomain.idString;
  return { exact: [base, `${base}/${RESERVED_SEGMENT}`], prefixes: [`${base}/${RESERVED_SEGMENT}/`] };
}

/**
 * Why `id` may not be a registration entry's SPIFFE ID (or a workload SVID's), naming the
 * rule; undefined when it may. IDs outside `trustDomain` are not this rule's business.
 */
export function reservedIdReason(id: SpiffeId, trustDomain: TrustDomain): string | undefined {
  const kind = reservedIdKind(id, trustDomain);
  if (kind === undefined) return undefined;
  const s = id.toString();
  const ns = `${trustDomain.idString}/${RESERVED_SEGMENT}/`;
  switch (kind) {
    case 'trust-domain':
      return `${s} is the trust domain ID, which never names a workload`;
    case 'server':
      return `${s} is the server's own ID: IDs under ${ns} are reserved for Sigil`;
    case 'agent':
      return `${s} is an agent ID: IDs under ${ns} are reserved for Sigil`;
    case 'reserved':
      return `${s} is reserved: IDs under ${ns} are reserved for Sigil`;
  }
}

/**
 * The marker only the server's own X.509-SVID carries: a non-critical extension with this
 * OID (a UUID-derived OID, ITU-T X.667 arc 2.25, so no registration is needed) holding the
 * UTF8String {@link SERVER_SVID_MARKER}. The CA adds it only when it signs the server SVID
 * with its server issuance capability; the leaf of every other SVID is built without it
 * (extensions in a CSR are never copied). Agents refuse a server without it, so even a
 * workload SVID that somehow named the server's ID could not stand in for the server.
 */
export const SERVER_SVID_MARKER_OID = '2.25.177617700219941544756167996008881369112';
/** The marker extension's value (a DER UTF8String of this text). */
export const SERVER_SVID_MARKER = 'sigil server';

const MARKER_OID_CONTENT = oidContent(SERVER_SVID_MARKER_OID);
const MARKER_VALUE = Uint8Array.from([0x0c, Buffer.byteLength(SERVER_SVID_MARKER), ...Buffer.from(SERVER_SVID_MARKER, 'utf8')]);

/**
 * True when the DER certificate carries the server marker, compared byte for byte (the OID's
 * 128-bit arc is never decoded to a number). False for a malformed certificate.
 */
export function hasServerSvidMarker(certDer: Uint8Array): boolean {
  try {
    const cert = expectTlv(certDer, 0, certDer.length, 0x30, 'Certificate');
    const tbs = expectTlv(certDer, cert.contentStart, cert.end, 0x30, 'TBSCertificate');
    const exts = childrenOf(certDer, tbs).find((f) => f.tag === 0xa3);
    if (exts === undefined) return false;
    const seq = expectTlv(certDer, exts.contentStart, exts.end, 0x30, 'Extensions');
    return childrenOf(certDer, seq).some((ext) => {
      const parts = childrenOf(certDer, ext);
      const oid = parts[0];
      const value: Tlv | undefined = parts[1]?.tag === 0x01 ? parts[2] : parts[1];
      return (
        oid?.tag === 0x06 &&
        bytesEqual(contentOf(certDer, oid), MARKER_OID_CONTENT) &&
        value?.tag === 0x04 &&
        bytesEqual(contentOf(certDer, value), MARKER_VALUE)
      );
    });
  } catch (err) {
    if (err instanceof DerError) return false;
    throw err;
  }
}
