/**
 * User and group names from /etc/passwd and /etc/group, parsed directly (no NSS), kept for a
 * short time so a burst of workload connections reads each file once.
 */
import { readFile } from 'node:fs/promises';
import { systemClock, type Clock } from '../../../src/common/clock.js';

/** Options of UserDatabase. */
export interface UserDatabaseOptions {
  readonly passwdPath?: string;
  readonly groupPath?: string;
  /** How long a parsed file is reused, in milliseconds; 10 s by default. */
  readonly ttlMs?: number;
  readonly clock?: Clock;
}

interface CacheEntry {
  readonly startedAt: number;
  readonly byId: Promise<ReadonlyMap<number, string>>;
}

/**
 * Parses a passwd(5) or group(5) file into id → name. Fields are colon separated with the
 * name first and the numeric id third; comments, blank lines and NIS `+`/`-` lines are
 * skipped; the first line for an id wins, as getpwuid(3) on files does.
 */
export function parseIdNameFile(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trimEnd();
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const fields = line.split(':');
    const name = fields[0];
    const idText = fields[2];
    if (name === undefined || name === '' || idText === undefined || !/^\d{1,10}$/.test(idText)) continue;
    const id = Number(idText);
    if (id > 0xffffffff || out.has(id)) continue;
    out.set(id, name);
  }
  return out;
}

/** Looks up user and group names by id, from files re-read at most once per TTL. */
export class UserDatabase {
  readonly #passwdPath: string;
  readonly #groupPath: string;
  readonly #ttlMs: number;
  readonly #clock: Clock;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(options: UserDatabaseOptions = {}) {
    this.#passwdPath = options.passwdPath ?? '/etc/passwd';
    this.#groupPath = options.groupPath ?? '/etc/group';
    this.#ttlMs = options.ttlMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
  }

  /** The user name of `uid`, or undefined when the passwd file has none (or cannot be read). */
  async userName(uid: number): Promise<string | undefined> {
    return (await this.#load(this.#passwdPath)).get(uid);
  }

  /** The group name of `gid`, or undefined when the group file has none (or cannot be read). */
  async groupName(gid: number): Promise<string | undefined> {
    return (await this.#load(this.#groupPath)).get(gid);
  }

  #load(path: string): Promise<ReadonlyMap<number, string>> {
    const now = this.#clock.nowMs();
    const current = this.#cache.get(path);
    // Decided synchronously so a burst of callers shares one read of the file.
    if (current !== undefined && now - current.startedAt < this.#ttlMs) return current.byId;
    const byId = readFile(path, 'utf8').then(
      (text): ReadonlyMap<number, string> => parseIdNameFile(text),
      // An unreadable file yields no names (the uid/gid selectors still stand), as SPIRE does.
      (): ReadonlyMap<number, string> => new Map(),
    );
    this.#cache.set(path, { startedAt: now, byId });
    return byId;
  }
}
