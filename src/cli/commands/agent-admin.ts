/** `sigil agent list|count|show|evict|ban|unban`: attested agents, over the server's admin API. */
import type { CommandIo } from '../io.js';
import { usageError, type ParsedArgs } from './args.js';
import type { AdminClient } from './admin-client.js';
import { isoSeconds, outputFormat, printFields, printJson, printTable, rfc3339, serialForm, withAdmin } from './output.js';

interface AgentMsg {
  spiffe_id: string;
  attestation_type: string;
  serial: string;
  expires_at: string;
  selectors: { type: string; value: string }[];
  banned: boolean;
  can_reattest: boolean;
  created_at: string;
  updated_at: string;
}

/** The JSON form of an agent, the same in every command (times RFC 3339, the serial as serialForm gives). */
function view(a: AgentMsg): Record<string, unknown> {
  return {
    spiffeId: a.spiffe_id,
    attestationType: a.attestation_type,
    serial: serialForm(a.serial),
    expiresAt: rfc3339(a.expires_at),
    selectors: a.selectors.map((s) => `${s.type}:${s.value}`),
    banned: a.banned,
    canReattest: a.can_reattest,
    createdAt: rfc3339(a.created_at),
    updatedAt: rfc3339(a.updated_at),
  };
}

async function listAll(client: AdminClient, req: Record<string, unknown>): Promise<AgentMsg[]> {
  const out: AgentMsg[] = [];
  let pageToken = '';
  do {
    const r = await client.call<{ agents: AgentMsg[]; next_page_token: string }>('Agents', 'ListAgents', { ...req, page_size: 500, page_token: pageToken });
    out.push(...r.agents);
    pageToken = r.next_page_token;
  } while (pageToken !== '');
  return out;
}

/** Runs one agent admin subcommand. */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  return withAdmin(io, args, async (client) => {
    if (sub === 'list' || sub === 'count') {
      const agents = await listAll(client, {
        ...(args.has('banned') ? { banned: true } : {}),
        attestation_type: args.get('attestation-type') ?? '',
      });
      if (sub === 'count') {
        if (outputFormat(args) === 'json') printJson(io, { count: agents.length });
        else io.out(`${agents.length} attested agent${agents.length === 1 ? '' : 's'}\n`);
      } else if (outputFormat(args) === 'json') printJson(io, { agents: agents.map(view) });
      else printTable(io, ['SPIFFE ID', 'ATTESTOR', 'SERIAL', 'EXPIRES', 'BANNED'], agents.map((a) => [a.spiffe_id, a.attestation_type, serialForm(a.serial), isoSeconds(a.expires_at), String(a.banned)]));
      return 0;
    }
    const id = args.get('spiffe-id') ?? args.positionals[0];
    if (id === undefined) throw usageError('--spiffe-id is required');
    if (args.get('spiffe-id') !== undefined && args.positionals[0] !== undefined) throw usageError('give the SPIFFE ID once: as the argument or with --spiffe-id');
    if (sub === 'show') {
      const a = await client.call<AgentMsg>('Agents', 'GetAgent', { spiffe_id: id });
      if (outputFormat(args) === 'json') printJson(io, { agent: view(a) });
      else
        printFields(io, [
          ['SPIFFE ID', a.spiffe_id],
          ['Attestor', a.attestation_type],
          ['SVID serial', serialForm(a.serial)],
          ['SVID expires', isoSeconds(a.expires_at)],
          ['Selectors', a.selectors.map((s) => `${s.type}:${s.value}`).join(', ')],
          ['Banned', String(a.banned)],
          ['Can re-attest', String(a.can_reattest)],
        ]);
      return 0;
    }
    const method = { evict: 'EvictAgent', ban: 'BanAgent', unban: 'UnbanAgent' }[sub];
    if (method === undefined) throw new Error(`no agent subcommand ${sub}`);
    await client.call('Agents', method, { spiffe_id: id });
    if (outputFormat(args) === 'json') printJson(io, { spiffeId: id, action: sub });
    else io.out(`agent ${id}: ${sub === 'evict' ? 'evicted' : sub === 'ban' ? 'banned' : 'unbanned'}\n`);
    return 0;
  });
}
