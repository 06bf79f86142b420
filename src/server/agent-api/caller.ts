/**
 * Who is calling the agent API: the agent SVID presented over mTLS, checked against the
 * attested-node record (known, not banned, and the SVID is the current one or the one
 * issued at the last renewal — using the new one promotes it).
 */
import type { PeerCertificate } from 'node:tls';
import type { AttestedNode, Datastore } from '../../datastore/datastore.js';
import { SigilError } from '../../common/errors.js';
import { SpiffeId, type TrustDomain } from '../../spiffe/spiffe-id.js';

/** The part of grpc-js's call auth context used here. */
export interface CallAuthContext {
  readonly sslPeerCertificate?: PeerCertificate;
}

/** An authenticated agent. */
export interface AgentCaller {
  readonly agentId: string;
  readonly node: AttestedNode;
  /** True when this call's SVID was the one issued at the last renewal and has just become current. */
  readonly promoted?: boolean;
}

/** Normalises a hex serial: lowercase, no leading zeros, no colons. */
export function normalizeSerial(serial: string): string {
  const s = serial.replace(/:/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}

function uriSan(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  return subjectAltName
    .split(', ')
    .filter((p) => p.startsWith('URI:'))
    .map((p) => p.slice(4));
}

/** Authenticates the agent behind a call; throws ERR_UNAUTHENTICATED or ERR_PERMISSION_DENIED. */
export async function authenticateAgent(auth: CallAuthContext, ds: Datastore, trustDomain: TrustDomain): Promise<AgentCaller> {
  const cert = auth.sslPeerCertificate;
  if (cert === undefined || cert.raw === undefined) {
    throw new SigilError('ERR_UNAUTHENTICATED', 'an agent SVID client certificate is required', { reason: 'no-client-certificate' });
  }
  const uris = uriSan(cert.subjectaltname);
  if (uris.length !== 1) throw new SigilError('ERR_UNAUTHENTICATED', 'client certificate must carry exactly one URI SAN', { reason: 'bad-client-certificate' });
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uris[0] as string);
  } catch (err) {
    throw new SigilError('ERR_UNAUTHENTICATED', 'client certificate URI SAN is not a SPIFFE ID', { reason: 'bad-client-certificate', cause: err });
  }
  if (!id.memberOf(trustDomain) || !id.path.startsWith('/sigil/agent/')) {
    throw new SigilError('ERR_PERMISSION_DENIED', `caller ${id.toString()} is not an agent of this trust domain`, { reason: 'not-an-agent' });
  }
  const agentId = id.toString();
  const node = await ds.getAttestedNode(agentId);
  if (node === undefined) {
    throw new SigilError('ERR_PERMISSION_DENIED', `agent ${agentId} is not attested (evicted?); attest again`, { reason: 'agent-unknown' });
  }
  if (node.banned) throw new SigilError('ERR_PERMISSION_DENIED', `agent ${agentId} is banned`, { reason: 'agent-banned' });
  const serial = normalizeSerial(cert.serialNumber);
  if (node.certSerial !== '' && normalizeSerial(node.certSerial) === serial) return { agentId, node };
  if (node.newCertSerial !== '' && normalizeSerial(node.newCertSerial) === serial) {
    const promoted = await ds.updateAttestedNode({
      ...node,
      certSerial: node.newCertSerial,
      certNotAfter: node.newCertNotAfter,
      newCertSerial: '',
      newCertNotAfter: 0,
    });
    return { agentId, node: promoted, promoted: true };
  }
  throw new SigilError('ERR_PERMISSION_DENIED', `agent ${agentId} presented an SVID (serial ${serial}) that is no longer current`, {
    reason: 'agent-svid-superseded',
  });
}
