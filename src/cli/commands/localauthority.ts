/** `sigil localauthority show|prepare|activate|taint|revoke`: operate the server's X.509 CA and JWT key lifecycle. */
import type { CommandIo } from '../io.js';
import { parseArgs, usageError } from './args.js';
import { isoSeconds, outputFormat, printJson, printTable, reportError, withAdmin } from './output.js';

interface AuthorityMsg {
  kind: string;
  authority_id: string;
  phase: string;
  tainted: boolean;
  not_after: string;
  key_type: string;
}

const USAGE = `usage: sigil localauthority <show|prepare|activate|taint|revoke> [flags]

  show                                     every X.509 and JWT authority with its phase
  prepare   --kind x509|jwt                prepare the next authority now (published at once)
  activate  --kind x509|jwt                activate the prepared authority now
  taint     --kind x509|jwt --id ID        mark an old authority tainted
  revoke    --kind x509|jwt --id ID        remove a tainted authority from the bundle

common: --socket PATH | --config server.yaml   --output table|json
`;

/** Runs `sigil localauthority …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(USAGE);
    return sub === undefined ? 2 : 0;
  }
  try {
    const args = parseArgs(rest, { values: ['kind', 'id'] });
    return await withAdmin(io, args, async (client) => {
      let status: { authorities: AuthorityMsg[] };
      const kind = args.get('kind');
      const id = args.get('id');
      if (sub === 'show') status = await client.call('LocalAuthority', 'GetStatus');
      else if (sub === 'prepare' || sub === 'activate') {
        if (kind === undefined) throw usageError('--kind is required');
        status = await client.call('LocalAuthority', sub === 'prepare' ? 'Prepare' : 'Activate', { kind });
      } else if (sub === 'taint' || sub === 'revoke') {
        if (kind === undefined || id === undefined) throw usageError('--kind and --id are required');
        status = await client.call('LocalAuthority', sub === 'taint' ? 'Taint' : 'Revoke', { kind, authority_id: id });
      } else throw usageError(`unknown localauthority subcommand ${JSON.stringify(sub)}`);
      if (outputFormat(args) === 'json') {
        printJson(io, {
          authorities: status.authorities.map((a) => ({ kind: a.kind, id: a.authority_id, phase: a.phase, tainted: a.tainted, notAfter: Number(a.not_after), keyType: a.key_type })),
        });
      } else {
        printTable(io, ['KIND', 'ID', 'PHASE', 'TAINTED', 'NOT AFTER', 'KEY'], status.authorities.map((a) => [a.kind, a.authority_id, a.phase, String(a.tainted), isoSeconds(a.not_after), a.key_type]));
      }
      return 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
