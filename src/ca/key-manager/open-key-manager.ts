/** Opens the key manager a server's configuration names: memory, disk (KEK file) or pkcs11 (wrap or sign). */
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { KeyManager } from '../../plugin/key-manager.js';
import { DiskKeyManager } from './disk-key-manager.js';
import { fileKekWrapper, readKekFile } from './kek.js';
import { MemoryKeyManager } from './memory-key-manager.js';
import { tokenKekWrapper } from './pkcs11-kek.js';
import { Pkcs11KeyManager } from './pkcs11-key-manager.js';
import { Pkcs11Token } from './pkcs11-token.js';
import type { DataKeyWrapper } from './sealed-box.js';

/** The token settings of `keyManager.type: pkcs11`. */
export interface Pkcs11Spec {
  readonly module: string;
  readonly tokenLabel?: string;
  readonly slot?: number;
  readonly pinFile: string;
  /** `wrap`: a token AES key wraps the data keys of key files; `sign`: the keys themselves live in the token. */
  readonly mode: 'wrap' | 'sign';
  /** Label of the KEK object (wrap mode). */
  readonly kekLabel: string;
  /** Sessions in the pool. */
  readonly sessions: number;
}

/** What a server configuration says about its keys. */
export interface KeyManagerSpec {
  readonly type: 'disk' | 'memory' | 'pkcs11';
  readonly kekFile?: string;
  /** Directory of key files (disk and pkcs11 wrap). */
  readonly dir: string;
  readonly pkcs11?: Pkcs11Spec;
}

/** An open key manager and what it holds open. */
export interface OpenedKeyManager {
  readonly keyManager: KeyManager;
  /** False while the token does not answer (always true without a token); re-checks the token when it had failed. */
  available(): Promise<boolean>;
  close(): Promise<void>;
}

function openToken(p: Pkcs11Spec, logger?: Logger): Promise<Pkcs11Token> {
  return Pkcs11Token.open({
    module: p.module,
    ...(p.tokenLabel === undefined ? {} : { tokenLabel: p.tokenLabel }),
    ...(p.slot === undefined ? {} : { slot: p.slot }),
    pinFile: p.pinFile,
    sessions: p.sessions,
    ...(logger === undefined ? {} : { logger }),
  });
}

function pkcs11Of(spec: KeyManagerSpec): Pkcs11Spec {
  if (spec.pkcs11 === undefined) throw new SigilError('ERR_CONFIG_INVALID', 'keyManager.type pkcs11 needs module, pinFile and tokenLabel or slot', { reason: 'pkcs11-config-missing' });
  return spec.pkcs11;
}

/** Opens the configured key manager; a wrong KEK, module, token, label or PIN fails here, naming which. */
export async function openKeyManager(spec: KeyManagerSpec, logger?: Logger): Promise<OpenedKeyManager> {
  if (spec.type === 'memory') return { keyManager: new MemoryKeyManager(), available: async () => true, close: async () => undefined };
  if (spec.type === 'disk') {
    const keyManager = await DiskKeyManager.open({ dir: spec.dir, kekPath: spec.kekFile as string, ...(logger === undefined ? {} : { logger }) });
    return { keyManager, available: async () => true, close: async () => undefined };
  }
  const p = pkcs11Of(spec);
  const token = await openToken(p, logger);
  try {
    const keyManager =
      p.mode === 'sign'
        ? await Pkcs11KeyManager.open(token, logger)
        : await DiskKeyManager.open({ dir: spec.dir, kek: await tokenKekWrapper(token, p.kekLabel, true), ...(logger === undefined ? {} : { logger }) });
    return { keyManager, available: () => token.recheck(), close: () => token.close() };
  } catch (err) {
    await token.close();
    throw err;
  }
}

/** The KEK of a configuration that keeps key files (disk, or pkcs11 in wrap mode), for `rewrap-keys`; a token KEK is created when missing. */
export async function openKek(spec: KeyManagerSpec, logger?: Logger): Promise<{ kek: DataKeyWrapper; close(): Promise<void> }> {
  if (spec.type === 'disk' && spec.kekFile !== undefined) return { kek: fileKekWrapper(await readKekFile(spec.kekFile)), close: async () => undefined };
  if (spec.type === 'pkcs11' && spec.pkcs11?.mode === 'wrap') {
    const token = await openToken(spec.pkcs11, logger);
    try {
      return { kek: await tokenKekWrapper(token, spec.pkcs11.kekLabel, true), close: () => token.close() };
    } catch (err) {
      await token.close();
      throw err;
    }
  }
  throw new SigilError('ERR_FAILED_PRECONDITION', 'rewrap-keys needs keyManager.type disk with a kekFile, or pkcs11 with mode wrap (sign-mode keys cannot leave their token)', {
    reason: 'not-disk-key-manager',
  });
}
