/**
 * A real SoftHSM2 token per test: a temp directory with its own softhsm2.conf and token store,
 * one token initialised with `softhsm2-util --init-token`, and the user PIN in a 0600 file.
 * Sigil never reads SOFTHSM2_CONF: SoftHSM does, so a test points the module at its token by
 * setting it in this process (in-process tests, one test at a time) or in a child's env.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** Debian's SoftHSM2 module (package softhsm2, installed by scripts/ci-prepare.sh). */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** One initialised token in its own SoftHSM configuration. */
export interface SoftHsm {
  readonly dir: string;
  readonly conf: string;
  readonly tokenDir: string;
  readonly label: string;
  readonly pin: string;
  readonly pinFile: string;
  /** The environment that points SoftHSM at this configuration. */
  readonly env: { readonly SOFTHSM2_CONF: string };
  /** Initialises another token in the same configuration. */
  addToken(label: string): Promise<void>;
  /** Points this process's SoftHSM at this configuration (read at C_Initialize). */
  use(): void;
  remove(): Promise<void>;
}

/** Makes a fresh SoftHSM configuration with one token labelled `label`. */
export async function softHsm(label = 'sigil-test'): Promise<SoftHsm> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  await mkdir(tokenDir, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const pin = randomBytes(6).toString('hex');
  const pinFile = join(dir, 'pin');
  await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
  const env = { SOFTHSM2_CONF: conf };
  const addToken = async (l: string): Promise<void> => {
    await promisify(execFile)('softhsm2-util', ['--init-token', '--free', '--label', l, '--so-pin', `so-${pin}`, '--pin', pin], { env: { ...process.env, ...env } });
  };
  await addToken(label);
  return {
    dir,
    conf,
    tokenDir,
    label,
    pin,
    pinFile,
    env,
    addToken,
    use: () => {
      process.env.SOFTHSM2_CONF = conf;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
