/** `sigil token generate`: a one-time join token for a new node (printed once, stored only hashed). */
import type { CommandIo } from '../io.js';
import type { AdminEntryMessage } from '../../grpc/messages.js';
import { durationSeconds, type ParsedArgs } from './args.js';
import { entryView } from './entry.js';
import { isoSeconds, outputFormat, printFields, printJson, reportError, rfc3339, withAdmin } from './output.js';

interface EntryResult {
  status: { code: number; message: string; sigil_code: string };
  entry: AdminEntryMessage | null;
}

/**
 * Runs `sigil token generate`: prints a one-time join token, to be passed to the agent
 * through a file (never a flag or env); the agent's SPIFFE ID will be
 * spiffe://<td>/sigil/agent/join_token/<token id>. With --spiffe-id (SPIRE's -spiffeID) it
 * also creates a node alias with that ID matching the agent that uses the token
 * (selector join_token:id:<token id>), so entries can name that ID as their parent.
 */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    const ttlSeconds = durationSeconds(args, 'ttl');
    return await withAdmin(io, args, async (client) => {
      const r = await client.call<{ token: string; token_id: string; agent_id: string; expires_at: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: ttlSeconds });
      const aliasId = args.get('spiffe-id');
      let alias: AdminEntryMessage | undefined;
      if (aliasId !== undefined) {
        const info = await client.call<{ trust_domain: string }>('Server', 'GetInfo');
        const created = await client.call<{ results: EntryResult[] }>('Entries', 'BatchCreateEntry', {
          entries: [{ spiffe_id: aliasId, parent_id: `spiffe://${info.trust_domain}/sigil/server`, selectors: [{ type: 'join_token', value: `id:${r.token_id}` }] }],
        });
        const result = created.results[0];
        if (result === undefined || result.status.code !== 0 || result.entry === null) {
          // The token exists and works; only the alias failed.
          io.err(`sigil: join token ${r.token_id} created, but not its node alias ${aliasId}: ${result?.status.message ?? 'no result'} (${result?.status.sigil_code ?? 'ERR_INTERNAL'})\n`);
        } else alias = result.entry;
      }
      if (outputFormat(args) === 'json') {
        printJson(io, { joinToken: { token: r.token, tokenId: r.token_id, agentId: r.agent_id, expiresAt: rfc3339(r.expires_at) }, ...(alias === undefined ? {} : { alias: entryView(alias) }) });
      } else
        printFields(io, [
          ['Token', r.token],
          ['Token ID', r.token_id],
          ['Agent ID', r.agent_id],
          ['Expires', isoSeconds(r.expires_at)],
          ...(alias === undefined ? [] : ([['Node alias', `${alias.spiffe_id} (entry ${alias.id})`]] as [string, string][])),
        ]);
      return aliasId !== undefined && alias === undefined ? 1 : 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
