/**
 * The server's stable identity among the servers sharing one datastore: the owner of its CA
 * journal and authorities. Taken from `serverId` in the config, or generated at the first start
 * and kept in `<dataDir>/server-id` (0600), so a restart is the same server and a second data
 * dir (another machine) is another one.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SERVER_ID_PATTERN } from '../datastore/validation.js';

/** The file in the data dir that keeps a generated server ID. */
export const SERVER_ID_FILE = 'server-id';

/** The configured server ID, else the one stored in the data dir, else a new one stored there. */
export function resolveServerId(dataDir: string, configured: string | undefined, logger: Logger): string {
  if (configured !== undefined) return configured;
  const path = join(dataDir, SERVER_ID_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SigilError('ERR_CONFIG_INVALID', `cannot read the server id file ${path}`, { reason: 'server-id-file', cause: err });
    }
  }
  if (text !== undefined) {
    if (!SERVER_ID_PATTERN.test(text)) {
      throw new SigilError('ERR_CONFIG_INVALID', `server id file ${path} does not hold a server id (1-64 of [a-z0-9._-])`, { reason: 'server-id-file' });
    }
    return text;
  }
  const id = `srv-${randomBytes(6).toString('hex')}`;
  try {
    writeFileSync(path, `${id}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot create the server id file ${path}`, { reason: 'server-id-file', cause: err });
  }
  logger.info({ serverId: id, path }, 'server id generated');
  return id;
}
