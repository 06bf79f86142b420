/**
 * Runs the real `openssl verify` on certificates, as a second opinion on path validation.
 * PEMs are written to a fresh mkdtemp directory (0700) that is removed afterwards; no
 * private key is ever written or passed.
 *
 *   const r = await opensslVerify({ roots: [root.pem], untrusted: [inter.pem], leaf: leaf.pem });
 *   t.true(r.ok, r.output);
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Inputs of opensslVerify; PEM strings (one or more CERTIFICATE blocks each). */
export interface OpensslVerifyInput {
  /** Trust anchors (written to root.pem, given as -CAfile). */
  readonly roots: readonly string[];
  /** Untrusted intermediates (inter.pem, given as -untrusted). */
  readonly untrusted?: readonly string[];
  /** The certificate to verify. */
  readonly leaf: string;
  /** Verify as of this time (-attime); default now. */
  readonly at?: Date;
  /** Extra flags, e.g. ['-x509_strict']. */
  readonly flags?: readonly string[];
}

/** The verdict of openssl and everything it printed. */
export interface OpensslVerifyResult {
  readonly ok: boolean;
  readonly output: string;
}

/** Runs `openssl verify -CAfile root.pem [-untrusted inter.pem] [-attime T] leaf.pem`. */
export async function opensslVerify(input: OpensslVerifyInput, signal?: AbortSignal): Promise<OpensslVerifyResult> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-openssl-'));
  try {
    const args = ['verify'];
    await writeFile(join(dir, 'root.pem'), input.roots.join(''), { mode: 0o600 });
    args.push('-CAfile', join(dir, 'root.pem'));
    if (input.untrusted !== undefined && input.untrusted.length > 0) {
      await writeFile(join(dir, 'inter.pem'), input.untrusted.join(''), { mode: 0o600 });
      args.push('-untrusted', join(dir, 'inter.pem'));
    }
    if (input.at !== undefined) args.push('-attime', String(Math.floor(input.at.getTime() / 1000)));
    args.push(...(input.flags ?? []));
    await writeFile(join(dir, 'leaf.pem'), input.leaf, { mode: 0o600 });
    args.push(join(dir, 'leaf.pem'));
    return await new Promise<OpensslVerifyResult>((resolve, reject) => {
      execFile('openssl', args, { timeout: 10_000, signal }, (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (err === null) resolve({ ok: true, output });
        else if (typeof err.code === 'number') resolve({ ok: false, output });
        else reject(err);
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
