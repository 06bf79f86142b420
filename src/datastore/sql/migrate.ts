/**
 * Schema migrations: each dialect keeps an ordered list of steps; `schema_version` records
 * every step applied. All pending steps run in one write transaction, so a crash leaves
 * the old schema or the new one, never half of it. A database written by newer code than
 * this one is refused rather than guessed at.
 */
import { SigilError } from '../../common/errors.js';
import type { SqlDriver } from './sql-driver.js';

/** One schema step: version N turns schema N-1 into N. */
export interface Migration {
  readonly version: number;
  readonly description: string;
  /** DDL statements, one per string, run in order. */
  readonly statements: readonly string[];
}

/** The latest version a migration list produces (after checking it is 1, 2, 3, … in order). */
export function latestVersion(migrations: readonly Migration[]): number {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new SigilError('ERR_INTERNAL', `migration ${i} has version ${m.version}, expected ${i + 1}`);
  });
  return migrations.length;
}

/**
 * Brings the schema to the latest version and returns it. Throws ERR_FAILED_PRECONDITION
 * (reason `schema-too-new`) when the database is newer than `migrations` knows.
 */
export async function migrate(driver: SqlDriver, migrations: readonly Migration[], nowMs: number): Promise<{ from: number; to: number }> {
  const latest = latestVersion(migrations);
  return driver.transaction('write', async (tx) => {
    await tx.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const rows = await tx.all('SELECT MAX(version) AS v FROM schema_version');
    const current = Number(rows[0]?.['v'] ?? 0);
    if (current > latest) {
      throw new SigilError(
        'ERR_FAILED_PRECONDITION',
        `database schema version ${current} is newer than this sigil supports (${latest}); upgrade sigil`,
        { reason: 'schema-too-new' },
      );
    }
    for (const m of migrations.slice(current)) {
      for (const statement of m.statements) await tx.exec(statement);
      await tx.run('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)', [m.version, nowMs]);
    }
    return { from: current, to: latest };
  });
}
