/**
 * Server tests drive the real server with the agent's own client (src/agent/server-client.ts),
 * not a copy of it: these helpers only make a fresh key and CSR, attest with it, and hand back an
 * AgentServerClient presenting the agent SVID, so a change to what the agent sends or checks is
 * what the server tests see.
 */
import { X509Certificate } from 'node:crypto';
import { AgentServerClient, type X509SvidItemResult } from '../../src/agent/server-client.js';
import { SigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import { toPem } from '../../src/common/x509.js';
import type { NodeAttestorAgent } from '../../src/plugin/node-attestor.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';

export type { WireSyncPage as SyncMessage } from '../../src/agent/server-client.js';

/** An agent SVID and its key. */
export interface AgentIdentity {
  readonly spiffeId: string;
  readonly chain: Buffer[];
  readonly keyPkcs8: Buffer;
  /** The same key as PEM (bench/ hands it to a child process). */
  readonly keyPem: string;
  readonly serial: string;
  readonly bundleRoots: Buffer[];
}

function clientFor(target: string, roots: readonly Buffer[], trustDomain: string): AgentServerClient {
  return new AgentServerClient({ addresses: [target], trustDomain: TrustDomain.parse(trustDomain), roots });
}

/** Runs AttestAgent through the agent's client; resolves to the agent identity or rejects with its SigilError. */
export async function attest(target: string, roots: readonly Buffer[], trustDomain: string, attestor: NodeAttestorAgent): Promise<AgentIdentity> {
  const client = clientFor(target, roots, trustDomain);
  const { csr, pkcs8 } = await generateKeyAndCsr();
  try {
    const out = await client.attest(attestor, csr);
    return { spiffeId: out.svid.spiffe_id, chain: out.svid.cert_chain, keyPkcs8: pkcs8, keyPem: toPem(pkcs8, 'PRIVATE KEY'), serial: out.svid.serial, bundleRoots: out.bundle.x509_authorities };
  } finally {
    client.close();
  }
}

/** The agent's client presenting `identity` on its mTLS calls; close it in a teardown. */
export function agentClient(target: string, roots: readonly Buffer[], trustDomain: string, identity: { chain: readonly Buffer[]; keyPkcs8: Buffer }): AgentServerClient {
  const client = clientFor(target, roots, trustDomain);
  client.setIdentity({ chainDer: identity.chain, keyPkcs8Der: new Secret(identity.keyPkcs8) });
  return client;
}

/** RenewAgent with a new key through `client`; returns the new identity (the client keeps presenting the old one). */
export async function renewAgent(client: AgentServerClient): Promise<{ chain: Buffer[]; keyPkcs8: Buffer; serial: string }> {
  const { csr, pkcs8 } = await generateKeyAndCsr();
  const svid = await client.renew(csr);
  return { chain: svid.cert_chain, keyPkcs8: pkcs8, serial: svid.serial };
}

/** The leaf's URI SAN. */
export function uriOf(der: Buffer): string | undefined {
  return new X509Certificate(der).subjectAltName?.replace(/^URI:/, '');
}

/** Each item's refusal code, '' for an issued SVID (as the wire's `sigil_code`). */
export function itemCodes(results: readonly X509SvidItemResult[]): string[] {
  return results.map((r) => r.error?.code ?? (r.svid === undefined ? 'no SVID' : ''));
}

/**
 * Calls `fn` until the server no longer sheds it as `signing-overloaded` (work of a flood or of
 * cancelled calls is still being cleared), 100 ms apart, at most `maxShed` times; returns its
 * value and how often it was shed.
 */
export async function untilNotShed<T>(fn: () => Promise<T>, maxShed = 100): Promise<{ value: T; shed: number }> {
  for (let shed = 0; ; shed++) {
    try {
      return { value: await fn(), shed };
    } catch (err) {
      if (shed >= maxShed || !(err instanceof SigilError) || err.reason !== 'signing-overloaded') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
