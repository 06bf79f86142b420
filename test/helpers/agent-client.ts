/**
 * A minimal agent-API client for server tests: attests over the bidi stream, then calls
 * the mTLS methods with the agent SVID. Real gRPC over TLS to the real server.
 */
import { X509Certificate } from 'node:crypto';
import { credentials, Metadata, type Client, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from '../../src/grpc/proto.js';
import { fromServiceError } from '../../src/grpc/status.js';
import { toPem } from '../../src/common/x509.js';
import { SigilError } from '../../src/common/errors.js';
import type { NodeAttestorAgent } from '../../src/plugin/node-attestor.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';

const AGENT_PROTO = 'sigil/agent/v1/agent.proto';
const SERVICE = 'sigil.agent.v1.Agent';

/** The server SPIFFE ID check every agent connection makes. */
function checkServer(trustDomain: string) {
  return (_host: string, cert: { subjectaltname?: string }): Error | undefined =>
    cert.subjectaltname === `URI:spiffe://${trustDomain}/sigil/server` ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`);
}

/** An agent SVID and its key. */
export interface AgentIdentity {
  readonly spiffeId: string;
  readonly chain: Buffer[];
  readonly keyPem: string;
  readonly serial: string;
  readonly bundleRoots: Buffer[];
}

function rootsPem(roots: readonly Buffer[]): Buffer {
  return Buffer.from(roots.map((r) => toPem(r, 'CERTIFICATE')).join(''));
}

function makeClient(target: string, roots: readonly Buffer[], trustDomain: string, identity?: { chain: Buffer[]; keyPem: string }): Client {
  const Ctor = serviceClient(AGENT_PROTO, SERVICE);
  const creds = credentials.createSsl(
    rootsPem(roots),
    identity === undefined ? null : Buffer.from(identity.keyPem),
    identity === undefined ? null : Buffer.from(identity.chain.map((c) => toPem(c, 'CERTIFICATE')).join('')),
    { checkServerIdentity: checkServer(trustDomain) },
  );
  // a host name for SNI: Node warns about IP addresses there (identity is checked by SPIFFE ID)
  return new Ctor(target, creds, { 'grpc.ssl_target_name_override': 'sigil-server', 'grpc.default_authority': 'sigil-server' });
}

/** Runs AttestAgent with the given attestor; resolves to the agent identity or rejects with a SigilError. */
export async function attest(target: string, roots: readonly Buffer[], trustDomain: string, attestor: NodeAttestorAgent): Promise<AgentIdentity> {
  const client = makeClient(target, roots, trustDomain);
  const { csr, pkcs8 } = await generateKeyAndCsr();
  try {
    return await new Promise<AgentIdentity>((resolve, reject) => {
      const call = (client as unknown as { AttestAgent(): ClientDuplexStream<unknown, Record<string, unknown>> }).AttestAgent();
      let done = false;
      call.on('data', (msg: { step: string; challenge?: Buffer; result?: { svid: { spiffe_id: string; cert_chain: Buffer[]; serial: string }; bundle: { x509_authorities: Buffer[] } } }) => {
        if (msg.step === 'challenge' && msg.challenge !== undefined) {
          attestor.respond(msg.challenge).then(
            (resp) => call.write({ challenge_response: Buffer.from(resp) }),
            (err: unknown) => {
              call.cancel();
              reject(err);
            },
          );
        } else if (msg.result !== undefined) {
          done = true;
          const r = msg.result;
          resolve({ spiffeId: r.svid.spiffe_id, chain: r.svid.cert_chain, keyPem: toPem(pkcs8, 'PRIVATE KEY'), serial: r.svid.serial, bundleRoots: r.bundle.x509_authorities });
          call.end();
        }
      });
      call.on('error', (err: ServiceError) => reject(fromServiceError(err)));
      call.on('end', () => {
        if (!done) reject(new SigilError('ERR_INTERNAL', 'attestation stream ended without a result'));
      });
      attestor.payload().then((payload) => call.write({ params: { attestor: attestor.name, payload: Buffer.from(payload), csr } }), reject);
    });
  } finally {
    client.close();
  }
}

type Unary = (req: unknown, md: Metadata, opts: object, cb: (err: ServiceError | null, res: unknown) => void) => void;

/** An mTLS agent client. */
export class AgentApiClient {
  readonly client: Client;

  constructor(target: string, roots: readonly Buffer[], trustDomain: string, identity: { chain: Buffer[]; keyPem: string }) {
    this.client = makeClient(target, roots, trustDomain, identity);
  }

  /** Calls a unary method. */
  call<T = Record<string, unknown>>(method: string, request: object): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method] as Unary;
    return new Promise<T>((resolve, reject) =>
      fn.call(this.client, request, new Metadata(), { deadline: new Date(Date.now() + 15_000) }, (err, res) =>
        err ? reject(fromServiceError(err)) : resolve(res as T),
      ),
    );
  }

  /** Opens SyncEntries. */
  sync(pageSize = 0): ClientReadableStream<SyncMessage> {
    return (this.client as unknown as { SyncEntries(req: object): ClientReadableStream<SyncMessage> }).SyncEntries({ page_size: pageSize });
  }

  /** Renews the agent SVID; returns the new identity (same key kept simple: a new key). */
  async renew(): Promise<{ chain: Buffer[]; keyPem: string; serial: string }> {
    const { csr, pkcs8 } = await generateKeyAndCsr();
    const r = await this.call<{ svid: { cert_chain: Buffer[]; serial: string } }>('RenewAgent', { csr });
    return { chain: r.svid.cert_chain, keyPem: toPem(pkcs8, 'PRIVATE KEY'), serial: r.svid.serial };
  }

  close(): void {
    this.client.close();
  }
}

/** A SyncEntries message as received. */
export interface SyncMessage {
  kind: 'FULL' | 'DELTA';
  entries: { id: string; spiffe_id: string; parent_id: string; revision: string }[];
  deleted_entry_ids: string[];
  bundle: { trust_domain_id: string; document: Buffer } | null;
  federated_bundles: { trust_domain_id: string }[];
  batch_complete: boolean;
  batch: string;
}

/** The leaf's URI SAN. */
export function uriOf(der: Buffer): string | undefined {
  return new X509Certificate(der).subjectAltName?.replace(/^URI:/, '');
}
