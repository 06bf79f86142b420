/**
 * The agent half of the configured node attestor, made fresh for every attestation so that
 * a join token written to the token file after an eviction is picked up without a restart.
 * The token is read from a file (never argv or env) and held only as a Secret.
 */
import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { X509PopAgentAttestor } from '../../attestors/node/x509pop/agent.js';
import { K8sPsatAgentAttestor } from '../../attestors/node/k8s_psat/agent.js';
import { JwtAgentAttestor } from '../../attestors/node/jwt/agent.js';
import { SigilError } from '../common/errors.js';
import { Secret } from '../common/secret.js';
import { checkSecretFileMode } from '../common/secret-file.js';
import { pemBlocks } from '../common/x509.js';
import type { NodeAttestorAgent } from '../plugin/node-attestor.js';
import type { AgentNodeAttestorConfig } from './config.js';

/** A node attestor ready for one attestation, with a fingerprint of its evidence source. */
export interface PreparedNodeAttestor {
  readonly attestor: NodeAttestorAgent;
  /** sha256 of the join token (to notice a spent one without sending it again); '' for attestors that can attest again (x509pop, k8s_psat, jwt). */
  readonly evidenceFingerprint: string;
}

function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read ${what} ${path}`, { reason: 'attestor-file', cause: err });
  }
}

/** Reads the attestor's files and builds its agent half; throws ERR_CONFIG_INVALID when a file is missing or empty, or a join token file is open to others. */
export function prepareNodeAttestor(config: AgentNodeAttestorConfig): PreparedNodeAttestor {
  if (config.type === 'join_token') {
    // A join token is a bearer credential: one others can read is refused, like the server's KEK.
    checkSecretFileMode(config.tokenFile, 'join token file');
    const token = readSecretFile(config.tokenFile, 'join token file').trim();
    if (token === '') throw new SigilError('ERR_CONFIG_INVALID', `join token file ${config.tokenFile} is empty`, { reason: 'join-token-empty' });
    return {
      attestor: new JoinTokenAgentAttestor(new Secret(token)),
      evidenceFingerprint: createHash('sha256').update(token).digest('hex'),
    };
  }
  if (config.type === 'k8s_psat') {
    // The kubelet rewrites this file as the token rotates; read it fresh for every attestation.
    const token = readSecretFile(config.tokenFile, 'k8s_psat token file').trim();
    if (token === '') throw new SigilError('ERR_CONFIG_INVALID', `k8s_psat token file ${config.tokenFile} is empty`, { reason: 'psat-token-empty' });
    return { attestor: new K8sPsatAgentAttestor(config.cluster, new Secret(token)), evidenceFingerprint: '' };
  }
  if (config.type === 'jwt') {
    // A CI step or a refresher rewrites this file; read it fresh for every attestation.
    const token = readSecretFile(config.tokenFile, 'jwt token file').trim();
    if (token === '') throw new SigilError('ERR_CONFIG_INVALID', `jwt token file ${config.tokenFile} is empty`, { reason: 'jwt-token-empty' });
    return { attestor: new JwtAgentAttestor(config.issuer, new Secret(token)), evidenceFingerprint: '' };
  }
  const certs = pemBlocks(readSecretFile(config.certFile, 'x509pop certificate file'), 'CERTIFICATE');
  if (certs.length === 0) throw new SigilError('ERR_CONFIG_INVALID', `x509pop certificate file ${config.certFile} holds no certificate`, { reason: 'x509pop-cert' });
  let privateKey;
  try {
    privateKey = createPrivateKey(readSecretFile(config.keyFile, 'x509pop key file'));
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw new SigilError('ERR_CONFIG_INVALID', `x509pop key file ${config.keyFile} holds no usable private key`, { reason: 'x509pop-key', cause: err });
  }
  return { attestor: new X509PopAgentAttestor({ certificates: certs, privateKey }), evidenceFingerprint: '' };
}
