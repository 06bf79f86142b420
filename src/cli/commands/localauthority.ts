/** `sigil localauthority show|prepare|activate|taint|revoke`: operate the server's X.509 CA and JWT key lifecycle. */
import type { CommandIo } from '../io.js';
import { usageError, type ParsedArgs } from './args.js';
import { isoSeconds, outputFormat, printJson, printTable, withAdmin } from './output.js';
import { jsonTime } from './views.js';

interface AuthorityMsg {
  kind: string;
  authority_id: string;
  phase: string;
  tainted: boolean;
  not_after: string;
  key_type: string;
  server_id?: string;
}

/**
 * Runs `sigil localauthority <sub>` (show, prepare, activate, taint, revoke); `--kind` comes
 * from the flag or, for SPIRE's `localauthority x509|jwt <sub>`, from the command's name.
 */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  return withAdmin(io, args, async (client) => {
    let status: { authorities: AuthorityMsg[] };
    const kind = args.get('kind');
    const id = args.get('id');
    if (sub === 'show') status = await client.call('LocalAuthority', 'GetStatus');
    else if (sub === 'prepare' || sub === 'activate') {
      if (kind === undefined) throw usageError('--kind is required');
      if (sub === 'activate' && id !== undefined) {
        // SPIRE names the authority it activates: refuse unless it is the prepared one
        const now = await client.call<{ authorities: AuthorityMsg[] }>('LocalAuthority', 'GetStatus');
        const prepared = now.authorities.find((a) => a.kind === kind && a.phase === 'prepared');
        if (prepared?.authority_id !== id) {
          throw usageError(`${id} is not the prepared ${kind} authority${prepared === undefined ? ' (none is prepared: run prepare first)' : ` (${prepared.authority_id} is)`}`);
        }
      }
      status = await client.call('LocalAuthority', sub === 'prepare' ? 'Prepare' : 'Activate', { kind });
    } else if (sub === 'taint' || sub === 'revoke') {
      if (kind === undefined || id === undefined) throw usageError('--kind and --id are required');
      status = await client.call('LocalAuthority', sub === 'taint' ? 'Taint' : 'Revoke', { kind, authority_id: id });
    } else throw new Error(`no localauthority subcommand ${sub}`);
    const shown = status.authorities.filter((a) => kind === undefined || sub !== 'show' || a.kind === kind);
    if (outputFormat(args) === 'json') {
      printJson(io, {
        authorities: shown.map((a) => ({ kind: a.kind, id: a.authority_id, phase: a.phase, tainted: a.tainted, notAfter: jsonTime(a.not_after), keyType: a.key_type, serverId: a.server_id ?? '' })),
      });
    } else {
      printTable(io, ['KIND', 'ID', 'PHASE', 'TAINTED', 'NOT AFTER', 'KEY', 'SERVER'], shown.map((a) => [a.kind, a.authority_id, a.phase, String(a.tainted), isoSeconds(a.not_after), a.key_type, a.server_id ?? '']));
    }
    return 0;
  });
}
