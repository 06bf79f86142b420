/**
 * One logged-in PKCS#11 token (through pkcs11js): finding it by label or slot, the PIN from a
 * 0600 file, a small pool of sessions, re-login when the module has dropped the sessions or the
 * login, and a clear error naming what is wrong (module, token, label, PIN) — never the PIN.
 *
 * Threads: every call into the module is made from the main thread, but the long ones (sign,
 * encrypt, decrypt) use pkcs11js's async variants, which run on libuv's threadpool. A session
 * is never used by two operations at once: each takes one from the pool (sized by `sessions`,
 * default 4 = libuv's default threadpool), so the module must be initialised thread-safe
 * (CKF_OS_LOCKING_OK), which SoftHSM2 and every network HSM's module are. A module that is
 * not thread-safe is used with `sessions: 1`, which serialises every token operation.
 */
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import type * as Pkcs11Types from 'pkcs11js';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { Secret } from '../../common/secret.js';
import { checkSecretFile } from './secure-file.js';

type Pkcs11Module = typeof Pkcs11Types;
/** A pkcs11js handle (slot, session or object). */
export type Handle = Buffer;

let loaded: Pkcs11Module | undefined;
/** pkcs11js, loaded on first use so that a server without a token never loads the addon. */
export function pkcs11js(): Pkcs11Module {
  if (loaded === undefined) loaded = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
  return loaded;
}

/** Return values meaning "the sessions or the login are gone": open new sessions, log in again, retry once. */
const SESSION_LOST = new Set(['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_USER_NOT_LOGGED_IN']);
/**
 * Return values meaning "that object handle is stale": modules may hand out new handles after
 * every session closed (SoftHSM2 does), so callers find the object again by label.
 */
export const HANDLE_STALE = new Set(['CKR_OBJECT_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID']);
/** Return values meaning "the token cannot be reached now". */
const TOKEN_GONE = new Set([
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_SLOT_ID_INVALID',
  'CKR_GENERAL_ERROR',
  'CKR_FUNCTION_FAILED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
]);

/** The CKR_ name of a pkcs11js error, or undefined for anything else. */
export function ckrOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'number' && typeof e.message === 'string') {
    const m = /CKR_[A-Z_]+/.exec(e.message);
    if (m !== null) return m[0];
  }
  return undefined;
}

/** Options of Pkcs11Token.open. */
export interface Pkcs11TokenOptions {
  /** Path of the PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so). */
  readonly module: string;
  /** The token's label; give this or `slot`. */
  readonly tokenLabel?: string;
  /** The slot ID; give this or `tokenLabel`. */
  readonly slot?: number;
  /** File holding the user PIN (mode 0600 or stricter; one trailing newline is ignored). */
  readonly pinFile: string;
  /** Sessions in the pool (default 4). */
  readonly sessions?: number;
  readonly logger?: Logger;
}

function configError(message: string, reason: string, cause?: unknown): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', message, { reason, ...(cause === undefined ? {} : { cause: new Error(ckrOf(cause) ?? 'pkcs11 error') }) });
}

/** Reads the PIN file: 0600 or stricter, not empty, one trailing newline dropped. */
export async function readPinFile(path: string): Promise<Secret<string>> {
  await checkSecretFile(path, 'pin file', 'pin-file');
  const text = (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
  if (text.length === 0 || text.includes('\n')) throw configError(`pin file ${path} must hold the pin on one line`, 'bad-pin-file');
  return new Secret(text);
}

/** Loaded modules by path: a module is initialised once per process and finalised when its last token closes. */
const modules = new Map<string, { p: Pkcs11Types.PKCS11; refs: number }>();

function loadModule(path: string): Pkcs11Types.PKCS11 {
  const known = modules.get(path);
  if (known !== undefined) {
    known.refs++;
    return known.p;
  }
  const lib = pkcs11js();
  const p = new lib.PKCS11();
  try {
    p.load(path);
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `pkcs11 module ${path} cannot be loaded (check keyManager.module)`, {
      reason: 'pkcs11-module-unusable',
      cause: new Error(err instanceof Error ? (err.message.split('\n')[0] ?? 'load failed') : 'load failed'),
    });
  }
  try {
    p.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (ckrOf(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      p.close();
      throw configError(`pkcs11 module ${path} failed to initialise (${ckrOf(err) ?? 'error'})`, 'pkcs11-module-unusable', err);
    }
  }
  modules.set(path, { p, refs: 1 });
  return p;
}

function releaseModule(path: string): void {
  const known = modules.get(path);
  if (known === undefined) return;
  if (--known.refs > 0) return;
  modules.delete(path);
  try {
    known.p.C_Finalize();
    known.p.close();
  } catch {
    // the process is letting go of the module
  }
}

function slotNumber(slot: Handle): number {
  return Number(slot.length >= 8 ? slot.readBigUInt64LE(0) : slot.readUInt32LE(0));
}

/** A token the server is logged in to, with a pool of sessions. */
export class Pkcs11Token {
  readonly #p: Pkcs11Types.PKCS11;
  readonly #options: Pkcs11TokenOptions;
  readonly #pin: Secret<string>;
  readonly #log: Logger | undefined;
  readonly #size: number;
  #slot: Handle;
  #free: Handle[] = [];
  readonly #waiters: Array<(s: Handle) => void> = [];
  #available = true;
  #closed = false;
  /** Operations holding a session right now. */
  #busy = 0;
  /** An object we hold vanished: the module must start over to see the token as it is. */
  #needsRestart = false;
  #generation = 0;
  /** What the token is, for messages: `token "label" in module path`. */
  readonly description: string;

  private constructor(p: Pkcs11Types.PKCS11, options: Pkcs11TokenOptions, pin: Secret<string>, slot: Handle, description: string) {
    this.#p = p;
    this.#options = options;
    this.#pin = pin;
    this.#log = options.logger;
    this.#size = options.sessions ?? 4;
    this.#slot = slot;
    this.description = description;
  }

  /** Loads the module, finds the token, logs in and opens the session pool; every failure names what is wrong. */
  static async open(options: Pkcs11TokenOptions): Promise<Pkcs11Token> {
    const pin = await readPinFile(options.pinFile);
    const p = loadModule(options.module);
    try {
      const { slot, description } = Pkcs11Token.#findSlot(p, options);
      const token = new Pkcs11Token(p, options, pin, slot, description);
      token.#openSessions();
      options.logger?.info({ token: description, sessions: token.#size }, 'pkcs11 token opened');
      return token;
    } catch (err) {
      releaseModule(options.module);
      throw err;
    }
  }

  static #findSlot(p: Pkcs11Types.PKCS11, o: Pkcs11TokenOptions): { slot: Handle; description: string } {
    const found: string[] = [];
    for (const slot of p.C_GetSlotList(true)) {
      const label = p.C_GetTokenInfo(slot).label.trim();
      if (label === '') continue;
      found.push(`"${label}" (slot ${slotNumber(slot)})`);
      if (o.tokenLabel !== undefined ? label === o.tokenLabel : slotNumber(slot) === o.slot) {
        return { slot, description: `token "${label}" in ${o.module}` };
      }
    }
    const want = o.tokenLabel !== undefined ? `labelled ${JSON.stringify(o.tokenLabel)} (keyManager.tokenLabel)` : `in slot ${String(o.slot)} (keyManager.slot)`;
    throw configError(`no initialised pkcs11 token ${want} in module ${o.module}; found: ${found.length === 0 ? 'none' : found.join(', ')}`, 'pkcs11-token-not-found');
  }

  #openSessions(): void {
    const lib = pkcs11js();
    const sessions: Handle[] = [];
    try {
      for (let i = 0; i < this.#size; i++) sessions.push(this.#p.C_OpenSession(this.#slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION));
      try {
        // the login belongs to the application and covers every session of the token
        this.#p.C_Login(sessions[0] as Handle, lib.CKU_USER, this.#pin.reveal());
      } catch (err) {
        const ckr = ckrOf(err);
        if (ckr === 'CKR_USER_ALREADY_LOGGED_IN') {
          // fine: another session of ours is still logged in
        } else if (ckr === 'CKR_PIN_INCORRECT' || ckr === 'CKR_PIN_INVALID' || ckr === 'CKR_PIN_LEN_RANGE') {
          throw configError(`the pin in ${this.#options.pinFile} is wrong for ${this.description} (keyManager.pinFile)`, 'pkcs11-pin-incorrect');
        } else if (ckr === 'CKR_PIN_LOCKED') {
          throw configError(`the user pin of ${this.description} is locked: unlock it with the SO pin`, 'pkcs11-pin-locked');
        } else {
          throw err;
        }
      }
    } catch (err) {
      for (const s of sessions) {
        try {
          this.#p.C_CloseSession(s);
        } catch {
          // closing what we could
        }
      }
      throw err;
    }
    this.#free = [...sessions];
    this.#generation++;
  }

  /** False after the token failed to answer, until an operation succeeds again. */
  get available(): boolean {
    return this.#available;
  }

  #probe: (() => Promise<void>) | undefined;

  /** Sets the check `recheck` runs while the token counts as unavailable (finding the objects the manager relies on). */
  setProbe(probe: () => Promise<void>): void {
    this.#probe = probe;
  }

  /**
   * True when the token answers: at once while it has been answering; after a failure, runs
   * the probe (so /ready turns true again once the token is back, even when nothing signs).
   */
  async recheck(): Promise<boolean> {
    if (this.#available || this.#closed) return !this.#closed;
    try {
      await this.#probe?.();
      return this.#available;
    } catch {
      return false;
    }
  }

  /**
   * Marks the token unavailable from outside a session (an object it held is gone, as when the
   * token was removed): the next operation re-opens the sessions first.
   */
  markUnavailable(why: string): SigilError {
    this.#needsRestart = true;
    return this.#unavailable(new Error(why));
  }

  #acquire(): Promise<Handle> {
    const s = this.#free.pop();
    if (s !== undefined) return Promise.resolve(s);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #release(s: Handle, generation: number): void {
    if (generation !== this.#generation) return; // a session of a pool since replaced
    const w = this.#waiters.shift();
    if (w !== undefined) w(s);
    else this.#free.push(s);
  }

  /**
   * A token that went away and came back is only seen again after the module starts over
   * (SoftHSM2 and most USB tokens keep serving a stale view until then): finalise and
   * initialise it, then find the token again. Never while a call is in flight (finalising
   * under it is undefined behaviour); the module is shared by the tokens of this process.
   */
  #restartModule(): void {
    try {
      this.#p.C_Finalize();
    } catch {
      // it may already be unusable
    }
    try {
      this.#p.C_Initialize({ flags: pkcs11js().CKF_OS_LOCKING_OK });
    } catch (initErr) {
      if (ckrOf(initErr) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw initErr;
    }
    this.#slot = Pkcs11Token.#findSlot(this.#p, this.#options).slot;
    this.#openSessions();
  }

  /** Drops every session and opens a fresh, logged-in pool (after the module lost them). */
  #reopen(): void {
    try {
      this.#p.C_CloseAllSessions(this.#slot);
    } catch {
      // they may already be gone
    }
    this.#free = [];
    if (!this.#needsRestart) {
      try {
        this.#slot = Pkcs11Token.#findSlot(this.#p, this.#options).slot;
        this.#openSessions();
      } catch (err) {
        if (this.#busy > 0) throw err;
        this.#restartModule();
      }
    } else {
      if (this.#busy > 0) throw new Error('calls in flight');
      this.#restartModule();
    }
    this.#needsRestart = false;
    // hand fresh sessions to whoever waited on the old pool
    while (this.#waiters.length > 0 && this.#free.length > 0) (this.#waiters.shift() as (s: Handle) => void)(this.#free.pop() as Handle);
    this.#log?.warn({ token: this.description }, 'pkcs11 sessions re-opened and logged in again');
  }

  #unavailable(err: unknown): SigilError {
    const why = ckrOf(err) ?? (err instanceof Error && !(err instanceof SigilError) ? err.message : 'error');
    if (this.#available) this.#log?.error({ token: this.description, why }, 'pkcs11 token unavailable: serving what is cached, cannot sign with token keys');
    this.#available = false;
    return new SigilError('ERR_UNAVAILABLE', `${this.description} is unavailable (${why})`, { reason: 'pkcs11-token-unavailable' });
  }

  /**
   * Runs `fn` with a session of its own. When the module says the session or the login is
   * gone, logs in again on fresh sessions and retries once; when the token cannot be
   * reached, fails with ERR_UNAVAILABLE (reason `pkcs11-token-unavailable`) and the token
   * counts as unavailable until an operation succeeds.
   */
  async withSession<T>(fn: (session: Handle) => T | Promise<T>): Promise<T> {
    if (this.#closed) throw new SigilError('ERR_UNAVAILABLE', `${this.description} is closed`, { reason: 'pkcs11-token-unavailable' });
    for (let attempt = 0; ; attempt++) {
      if (!this.#available && attempt === 0) {
        try {
          this.#reopen();
        } catch (err) {
          throw this.#unavailable(err);
        }
      }
      const generation = this.#generation;
      const session = await this.#acquire();
      this.#busy++;
      try {
        const result = await Promise.resolve().then(() => fn(session)).finally(() => this.#busy--);
        if (!this.#available) this.#log?.info({ token: this.description }, 'pkcs11 token available again');
        this.#available = true;
        this.#release(session, generation);
        return result;
      } catch (err) {
        const ckr = ckrOf(err);
        if (ckr === undefined || HANDLE_STALE.has(ckr) || (!SESSION_LOST.has(ckr) && !TOKEN_GONE.has(ckr))) {
          this.#release(session, generation);
          throw err;
        }
        if (attempt > 0) throw this.#unavailable(err);
        if (generation === this.#generation) {
          try {
            this.#reopen();
          } catch (reopenErr) {
            throw this.#unavailable(reopenErr);
          }
        }
      }
    }
  }

  /** The underlying pkcs11js instance, for the wrap and sign helpers of this directory. */
  get module(): Pkcs11Types.PKCS11 {
    return this.#p;
  }

  /** Finds objects matching the template. */
  find(session: Handle, template: Pkcs11Types.Template): Handle[] {
    this.#p.C_FindObjectsInit(session, template);
    try {
      const out: Handle[] = [];
      for (;;) {
        const batch = this.#p.C_FindObjects(session, 64);
        out.push(...batch);
        if (batch.length < 64) return out;
      }
    } finally {
      this.#p.C_FindObjectsFinal(session);
    }
  }

  /** Logs out, closes the sessions and finalises the module. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#p.C_CloseAllSessions(this.#slot);
    } catch {
      // closing anyway
    }
    releaseModule(this.#options.module);
  }
}
