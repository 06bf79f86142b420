/**
 * What the agent keeps across restarts, in its data dir (0700): its SVID chain, its private
 * key (PKCS#8 PEM, 0600), the last bundle of its own trust domain (so a restart trusts the
 * server's current CA, not only the bootstrap file; and, whole with its JWT keys, so a
 * restart serves workloads their bundles before the server is reached), and a small state file. Every file is
 * written to a temporary name and renamed, so a crash never leaves half a key. See
 * docs/agent.md for why the key is kept 0600 rather than wrapped by a KEK.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { SigilError } from '../common/errors.js';
import { Secret } from '../common/secret.js';
import { pemBlocks, toPem } from '../common/x509.js';
import { Bundle } from '../spiffe/bundle.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import { writeFileAtomic } from './helper/file-writer.js';

/** The persisted agent identity. */
export interface StoredAgentIdentity {
  readonly spiffeId: string;
  /** Leaf first. */
  readonly chainDer: readonly Buffer[];
  readonly keyPkcs8Der: Secret<Buffer>;
  /** True when the node attestor may attest this agent again (x509pop), false for join tokens. */
  readonly canReattest: boolean;
  /** The attestor that attested this agent. */
  readonly attestor: string;
}

const FILES = { svid: 'agent-svid.pem', key: 'agent-key.pem', state: 'agent-state.json', bundle: 'bundle.pem', bundleDocument: 'bundle.json' } as const;

/** The helper's writer: temp file created O_EXCL|O_NOFOLLOW owner-only, so the key never sits in a wider file. */
function writeAtomic(path: string, data: string | Buffer, mode: number): void {
  writeFileAtomic(dirname(path), basename(path), data, mode);
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw new SigilError('ERR_FAILED_PRECONDITION', `cannot read ${path}`, { reason: 'data-dir', cause: err });
  }
}

/** The agent's data dir. */
export class AgentStore {
  readonly dir: string;

  /** Creates the folder (0700) when missing; refuses one others can read. */
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o077) !== 0) chmodSync(dir, 0o700);
  }

  /** The stored identity, or undefined when none (or an incomplete one) is there. */
  loadIdentity(): StoredAgentIdentity | undefined {
    const stateText = readOptional(join(this.dir, FILES.state));
    const svidPem = readOptional(join(this.dir, FILES.svid));
    const keyPem = readOptional(join(this.dir, FILES.key));
    if (stateText === undefined || svidPem === undefined || keyPem === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(stateText);
    } catch (err) {
      throw new SigilError('ERR_FAILED_PRECONDITION', `agent state file ${join(this.dir, FILES.state)} is not valid JSON`, { reason: 'data-dir', cause: err });
    }
    // `null` or a list parses too; reading fields off it would be a TypeError at startup
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new SigilError('ERR_FAILED_PRECONDITION', `agent state file ${join(this.dir, FILES.state)} is not a JSON object`, { reason: 'data-dir' });
    }
    const state = parsed as { spiffeId?: unknown; canReattest?: unknown; attestor?: unknown };
    const chain = pemBlocks(svidPem, 'CERTIFICATE');
    const [key] = pemBlocks(keyPem, 'PRIVATE KEY');
    if (typeof state.spiffeId !== 'string' || chain.length === 0 || key === undefined) return undefined;
    return {
      spiffeId: state.spiffeId,
      chainDer: chain,
      keyPkcs8Der: new Secret(key),
      canReattest: state.canReattest === true,
      attestor: typeof state.attestor === 'string' ? state.attestor : 'unknown',
    };
  }

  /** Persists the identity: key first (0600), then the chain, then the state that makes them count. */
  saveIdentity(identity: StoredAgentIdentity): void {
    writeAtomic(join(this.dir, FILES.key), toPem(identity.keyPkcs8Der.reveal(), 'PRIVATE KEY'), 0o600);
    writeAtomic(join(this.dir, FILES.svid), identity.chainDer.map((c) => toPem(c, 'CERTIFICATE')).join(''), 0o644);
    writeAtomic(
      join(this.dir, FILES.state),
      `${JSON.stringify({ spiffeId: identity.spiffeId, canReattest: identity.canReattest, attestor: identity.attestor }, null, 2)}\n`,
      0o600,
    );
  }

  /** Forgets the identity (after an eviction is noticed), so a restart attests again. */
  clearIdentity(): void {
    for (const f of [FILES.state, FILES.svid, FILES.key]) rmSync(join(this.dir, f), { force: true });
  }

  /** The last stored X.509 authorities of the agent's own trust domain (DER), or []. */
  loadBundle(): Buffer[] {
    const pem = readOptional(join(this.dir, FILES.bundle));
    return pem === undefined ? [] : pemBlocks(pem, 'CERTIFICATE');
  }

  /** Stores the X.509 authorities of the agent's own trust domain. */
  saveBundle(roots: readonly Buffer[]): void {
    if (roots.length === 0) return;
    writeAtomic(join(this.dir, FILES.bundle), roots.map((r) => toPem(r, 'CERTIFICATE')).join(''), 0o644);
  }

  /**
   * The whole bundle of the agent's own trust domain (X.509 and JWT authorities) as last
   * synced, served to workloads after a restart until the server is reached again. Undefined
   * when none was stored, or the stored one is of another trust domain or unreadable (then
   * the agent waits for the server, as it did before it stored one).
   */
  loadBundleDocument(trustDomain: TrustDomain): Bundle | undefined {
    const path = join(this.dir, FILES.bundleDocument);
    const text = readOptional(path);
    if (text === undefined) return undefined;
    try {
      const stored = JSON.parse(text) as { trustDomain?: unknown; bundle?: unknown };
      if (stored.trustDomain !== trustDomain.idString || typeof stored.bundle !== 'object' || stored.bundle === null) return undefined;
      return Bundle.parseJwks(trustDomain, stored.bundle);
    } catch {
      return undefined;
    }
  }

  /** Stores the own trust domain's bundle (its SPIFFE bundle document, and which trust domain it is of). */
  saveBundleDocument(bundle: Bundle): void {
    const text = JSON.stringify({ trustDomain: bundle.trustDomain.idString, bundle: bundle.toJwksObject() }, null, 2);
    writeAtomic(join(this.dir, FILES.bundleDocument), `${text}\n`, 0o644);
  }
}
