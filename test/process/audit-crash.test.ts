/**
 * The audit log loses nothing that was committed (issue 11, item 6), seen as a supervisor
 * and an auditor would: the real `sigil server run` (SQLite data dir) takes concurrent entry
 * creates and deletes over its admin socket and is killed with SIGKILL, several times, at
 * varying points; then it starts once more, ships what it owed, and every entry in the
 * datastore, and every entry deleted from it, must have exactly one audit record ID in the
 * audit file. A record may appear more than once (the shipper is at-least-once), but only
 * as the same line with the same `auditId`.
 *
 * Where to kill: a random SIGKILL rarely lands in the microseconds between a commit and its
 * audit line, so each round freezes the server (SIGSTOP, confirmed in /proc) every few
 * acknowledged creates and compares what is committed in the SQLite file with the audit
 * file; it kills the frozen server at the first freeze where a committed change has no line
 * yet — exactly the crash the audit trail must survive — or after MAX_FREEZES freezes.
 * Everything is counted (acknowledged creates, freezes), nothing is timed.
 */
import test from 'ava';
import Database from 'better-sqlite3';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AdminClient } from '../../src/cli/commands/admin-client.js';
import type { Daemon } from '../agent/support/processes.js';
import { serverHome } from './support/under-test.js';

const ROUNDS = 6;
const WORKERS = 6;
const PER_BATCH = 3;
/** Acknowledged creates in a round before the first freeze: varies the kill point. */
const FIRST_FREEZE_AFTER = [30, 55, 10, 80, 20, 45];
/** Acknowledged creates between freezes. */
const BETWEEN_FREEZES = 3;
const MAX_FREEZES = 60;

interface AuditLine {
  readonly action: string;
  readonly entryId?: string;
  readonly auditId?: string;
  readonly seq?: number;
}

/** Every line of the audit file, parsed; a line that is not one JSON object fails the test. */
function auditLines(path: string): { raw: string; line: AuditLine }[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((raw) => ({ raw, line: JSON.parse(raw) as AuditLine }));
}

/** Entry IDs in the SQLite file, read by a second connection (the server is frozen or stopped). */
function committedEntryIds(dbPath: string): Set<string> {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return new Set((db.prepare('SELECT id FROM registered_entries').all() as { id: string }[]).map((r) => r.id));
  } finally {
    db.close();
  }
}

/** The IDs of entries that `action` lines name. */
function named(lines: readonly { line: AuditLine }[], action: string): Set<string> {
  return new Set(lines.filter((l) => l.line.action === action && l.line.entryId !== undefined).map((l) => l.line.entryId as string));
}

/** True when a change is committed in the datastore but the audit file does not have its line (yet). */
function hole(dbPath: string, auditPath: string): boolean {
  const ids = committedEntryIds(dbPath);
  const lines = auditLines(auditPath);
  const created = named(lines, 'entry.create');
  const deleted = named(lines, 'entry.delete');
  for (const id of ids) if (!created.has(id)) return true;
  for (const id of created) if (!ids.has(id) && !deleted.has(id)) return true;
  return false;
}

/**
 * Waits (by polling /proc, a bounded number of times: ~10 s at the least, generous for a
 * loaded machine where the stop can take a scheduler round to land) until the kernel shows
 * `pid` stopped.
 */
async function stopped(pid: number): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the state follows the command name in parentheses
    if (/\) [Tt] /.test(stat)) return;
    await new Promise((r) => (i < 100 ? setImmediate(r) : setTimeout(r, 2)));
  }
  throw new Error(`process ${pid} never stopped`);
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

test.serial('kill -9 during concurrent entry writes: every committed create and delete has exactly one audit record ID', async (t) => {
  const home = await serverHome();
  const running: Daemon[] = [];
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    rmSync(home.dir, { recursive: true, force: true });
  });
  const auditPath = join(home.dataDir, 'audit.log');
  const dbPath = join(home.dataDir, 'datastore.sqlite3');
  /** Creates the server acknowledged, and deletes it acknowledged. */
  const ackedCreates = new Set<string>();
  const ackedDeletes = new Set<string>();
  let uid = 100_000;
  let killedAtHole = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const d = await home.start();
    running.push(d);
    const pid = d.child.pid as number;
    const client = new AdminClient(home.adminSocket);
    let stop = false;
    const ackedBefore = ackedCreates.size;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        try {
          const entries = Array.from({ length: PER_BATCH }, () => ({
            spiffe_id: `spiffe://example.org/w${w}`,
            parent_id: 'spiffe://example.org/node',
            selectors: [{ type: 'unix', value: `uid:${uid++}` }],
            x509_svid_ttl_seconds: 0,
            jwt_svid_ttl_seconds: 0,
            dns_names: [],
            federates_with: [],
            hint: '',
            expires_at: 0,
          }));
          const r = await client.call<{ results: { status: { code: number }; entry?: { id: string } }[] }>('Entries', 'BatchCreateEntry', { entries }, 60_000);
          for (const res of r.results) if (res.status.code === 0 && res.entry !== undefined) ackedCreates.add(res.entry.id);
          // every other batch deletes one entry this worker saw created
          if (i % 2 === 1) {
            const victim = r.results.find((res) => res.entry !== undefined)?.entry?.id;
            if (victim !== undefined) {
              const del = await client.call<{ results: { status: { code: number }; id: string }[] }>('Entries', 'BatchDeleteEntry', { ids: [victim] }, 60_000);
              for (const res of del.results) if (res.status.code === 0) ackedDeletes.add(res.id);
            }
          }
        } catch {
          // the server was killed under this call: its outcome is unknown, which is the point
          return;
        }
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));

    await until(`${FIRST_FREEZE_AFTER[round]} acknowledged creates`, () => ackedCreates.size - ackedBefore >= (FIRST_FREEZE_AFTER[round] ?? 0));
    for (let freeze = 0; ; freeze++) {
      process.kill(pid, 'SIGSTOP');
      await stopped(pid);
      if (hole(dbPath, auditPath)) {
        killedAtHole++;
        break;
      }
      if (freeze + 1 >= MAX_FREEZES) break;
      const seen = ackedCreates.size;
      process.kill(pid, 'SIGCONT');
      await until(`${BETWEEN_FREEZES} more acknowledged creates`, () => ackedCreates.size - seen >= BETWEEN_FREEZES);
    }
    // SIGKILL ends a stopped process too
    process.kill(pid, 'SIGKILL');
    t.deepEqual(await d.closed, { code: null, signal: 'SIGKILL' });
    stop = true;
    await Promise.all(workers);
    client.close();
  }

  // one more start: it ships what the killed runs owed before it serves; then a clean stop
  const last = await home.start();
  running.push(last);
  t.is(await last.stop('SIGTERM'), 0);

  const ids = committedEntryIds(dbPath);
  const lines = auditLines(auditPath);
  const byAuditId = new Map<string, string>();
  let duplicates = 0;
  let conflicting = 0;
  for (const { raw, line } of lines) {
    if (line.auditId === undefined) continue;
    const seen = byAuditId.get(line.auditId);
    if (seen === undefined) byAuditId.set(line.auditId, raw);
    else if (seen === raw) duplicates++;
    else conflicting++;
  }
  /** Distinct record IDs of `action` for each entry; a line without an auditId counts as a record of its own. */
  const recordIds = (action: string): Map<string, Set<string>> => {
    const out = new Map<string, Set<string>>();
    lines.forEach(({ line }, i) => {
      if (line.action !== action || line.entryId === undefined) return;
      const set = out.get(line.entryId) ?? new Set<string>();
      set.add(line.auditId ?? `line-${i}`);
      out.set(line.entryId, set);
    });
    return out;
  };
  const creates = recordIds('entry.create');
  const deletes = recordIds('entry.delete');
  const count = (m: Map<string, Set<string>>, id: string): number => m.get(id)?.size ?? 0;

  const storedWithout = [...ids].filter((id) => count(creates, id) !== 1);
  const gone = [...creates.keys()].filter((id) => !ids.has(id));
  const deletedWithout = gone.filter((id) => count(deletes, id) !== 1);
  const deletesOfStored = [...deletes.keys()].filter((id) => ids.has(id));
  t.log(
    `${ROUNDS} kills (${killedAtHole} at a committed change without its line yet); ${ids.size} entries stored, ${gone.length} deleted; ` +
      `${ackedCreates.size} creates and ${ackedDeletes.size} deletes acknowledged; ${lines.length} audit lines, ${duplicates} repeated with the same auditId`,
  );
  t.true(ackedCreates.size >= ROUNDS * 10, 'the servers took writes in every round');
  t.true(killedAtHole >= 1, 'at least one kill hit a committed change whose line was not out yet');
  t.deepEqual(storedWithout, [], 'every stored entry has exactly one entry.create record');
  t.deepEqual(deletedWithout, [], 'every deleted entry has exactly one entry.delete record');
  t.deepEqual(deletesOfStored, [], 'no delete record for an entry still stored');
  t.is(conflicting, 0, 'lines repeated with the same auditId are the same line');
  t.deepEqual([...ackedCreates].filter((id) => !ids.has(id) && count(deletes, id) !== 1), [], 'every acknowledged create is stored, or deleted with its record');
  t.deepEqual([...ackedDeletes].filter((id) => ids.has(id)), [], 'every acknowledged delete is gone');
});
