/**
 * Every `sigil` command, subcommand and flag, as data: the parser (src/cli/parser.ts) builds
 * commander's commands, the generated `--help` and SPIRE's spellings from it, and
 * docs/cli.test.ts checks docs/cli.md against it. Nothing here loads a command's code: each
 * leaf names the module that runs it, loaded only when it runs.
 *
 * SPIRE spellings: every flag is also accepted Go-style with one dash (`-write`, `-output
 * json`), and `spire` lists SPIRE's own names where they differ from ours (`-parentID` for
 * `--parent-id`); `seconds` marks a SPIRE flag that takes whole seconds where ours takes a
 * duration (`token generate -ttl 3600`).
 */
import type { CommandIo } from './io.js';
import type { ParsedArgs } from './commands/args.js';

/** A command module: runs `command` (the name its definition's `run.as` gives) and resolves to the exit code. */
export interface CommandModule {
  run(command: string, args: ParsedArgs, io: CommandIo): Promise<number>;
}

/** How a flag's value is checked while parsing (a bad one is a usage error, exit code 2). */
export type ValueKind = 'string' | 'duration' | 'spiffe-id' | 'trust-domain' | 'selector';

/** A SPIRE name of a flag. */
export interface SpireName {
  readonly name: string;
  /** SPIRE's flag takes whole seconds where ours takes a duration. */
  readonly seconds?: boolean;
}

/** One flag. */
export interface OptionDef {
  /** The long name, without dashes. */
  readonly name: string;
  /** The value's placeholder in help (`ID`, `DIR`); absent for a switch. */
  readonly value?: string;
  readonly kind?: ValueKind;
  readonly choices?: readonly string[];
  /** May be given more than once. */
  readonly repeat?: boolean;
  readonly about: string;
  /** SPIRE's names of this flag, where they differ from `-<name>`. */
  readonly spire?: readonly SpireName[];
}

/** One command; a leaf has `run`, a group has `commands`. */
export interface CommandDef {
  readonly name: string;
  readonly about: string;
  /** commander argument syntax: `[entry-id]`, `[ids...]`. */
  readonly args?: readonly string[];
  readonly options?: readonly OptionDef[];
  readonly commands?: readonly CommandDef[];
  /** The subcommand run when a group is given none (SPIRE's `api fetch` = `api fetch x509`). */
  readonly isDefault?: boolean;
  readonly run?: {
    readonly load: () => Promise<CommandModule>;
    /** The command name handed to the module's run. */
    readonly as: string;
    /** Flag values this spelling implies (`localauthority x509 prepare` = `prepare --kind x509`). */
    readonly preset?: Readonly<Record<string, string>>;
  };
  /** The SPIRE commands this one stands for, listed in docs/cli.md's table. */
  readonly spire?: readonly string[];
}

// --- flag groups ---

const OUTPUT: OptionDef = { name: 'output', value: 'FORMAT', choices: ['table', 'json'], about: 'table for people (default) or json' };

/** How an admin command finds the server's admin socket (src/cli/commands/output.ts adminSocket). */
export const ADMIN: readonly OptionDef[] = [
  {
    name: 'socket',
    value: 'PATH',
    about: 'the server admin socket (default: adminApi.socketPath of --config, else $SIGIL_ADMIN_SOCKET, else /run/sigil-server/admin.sock)',
    spire: [{ name: 'socketPath' }],
  },
  { name: 'config', value: 'FILE', about: 'server.yaml whose adminApi.socketPath to use' },
  OUTPUT,
];

/** How a Workload API command finds the agent. */
export const WORKLOAD: readonly OptionDef[] = [
  {
    name: 'socket',
    value: 'PATH|URI',
    about: 'the agent Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET, else /run/sigil/agent.sock)',
    spire: [{ name: 'socketPath' }],
  },
  { name: 'timeout', value: 'DURATION', kind: 'duration', about: 'give up after this long (default 10s)' },
  OUTPUT,
];

const SPIFFE_ID = (about: string): OptionDef => ({ name: 'spiffe-id', value: 'ID', kind: 'spiffe-id', about, spire: [{ name: 'spiffeID' }] });
const PARENT_ID: OptionDef = { name: 'parent-id', value: 'ID', kind: 'spiffe-id', about: 'the parent: an agent or a node alias', spire: [{ name: 'parentID' }] };
const SELECTOR: OptionDef = { name: 'selector', value: 'TYPE:VALUE', kind: 'selector', repeat: true, about: 'a selector, e.g. unix:uid:1000 (repeat)' };
const ENTRY_ID: OptionDef = { name: 'entry-id', value: 'ID', about: 'the entry ID', spire: [{ name: 'entryID' }] };
const FEDERATES_FILTER: OptionDef = { name: 'federates-with', value: 'TD', kind: 'trust-domain', about: 'entries federating with this trust domain', spire: [{ name: 'federatesWith' }] };
const HINT = (about: string): OptionDef => ({ name: 'hint', value: 'HINT', about });

/** The fields of an entry (create and update). */
const ENTRY_FIELDS: readonly OptionDef[] = [
  SPIFFE_ID('the SPIFFE ID the workloads get'),
  PARENT_ID,
  { name: 'node', about: 'a node alias: the parent is the server, the selectors match agents' },
  SELECTOR,
  { name: 'x509-svid-ttl', value: 'DURATION', kind: 'duration', about: 'X509-SVID lifetime (default: the server svid.defaultX509Ttl)', spire: [{ name: 'x509SVIDTTL', seconds: true }, { name: 'ttl', seconds: true }] },
  { name: 'jwt-svid-ttl', value: 'DURATION', kind: 'duration', about: 'JWT-SVID lifetime (default: the server svid.defaultJwtTtl)', spire: [{ name: 'jwtSVIDTTL', seconds: true }] },
  { name: 'dns', value: 'NAME', repeat: true, about: 'a DNS name for the X509-SVID (repeat)' },
  { name: 'federates-with', value: 'TD', kind: 'trust-domain', repeat: true, about: 'a federated trust domain whose bundle the workloads get (repeat)', spire: [{ name: 'federatesWith' }] },
  HINT('a hint telling the workload which of its SVIDs this is'),
  { name: 'admin', about: 'the SVID may use the admin API' },
  { name: 'downstream', about: 'the SVID may sign (a downstream CA)' },
  { name: 'expires-in', value: 'DURATION', kind: 'duration', about: 'the entry expires after this long' },
  { name: 'allow-missing-bundle', about: 'accept --federates-with a trust domain without a bundle yet' },
];

const ENTRY_FILTERS: readonly OptionDef[] = [
  SPIFFE_ID('entries with this SPIFFE ID'),
  { ...PARENT_ID, about: 'entries with this parent' },
  { ...SELECTOR, about: 'entries with this selector (repeat)' },
  { name: 'match', value: 'HOW', choices: ['exact', 'subset', 'superset', 'any'], about: 'how --selector matches (default superset)', spire: [{ name: 'matchSelectorsOn' }] },
  FEDERATES_FILTER,
  HINT('entries with this hint'),
];

const FED_TD: OptionDef = { name: 'trust-domain', value: 'TD', kind: 'trust-domain', about: 'the peer trust domain', spire: [{ name: 'trustDomain' }, { name: 'id' }] };
const FED_FIELDS: readonly OptionDef[] = [
  FED_TD,
  { name: 'bundle-endpoint-url', value: 'URL', about: "https URL of the peer's bundle endpoint", spire: [{ name: 'bundleEndpointURL' }] },
  { name: 'bundle-endpoint-profile', value: 'PROFILE', choices: ['https_spiffe', 'https_web'], about: 'how the endpoint is authenticated: https_spiffe (default) or https_web', spire: [{ name: 'bundleEndpointProfile' }] },
  { name: 'endpoint-spiffe-id', value: 'ID', kind: 'spiffe-id', about: 'https_spiffe: the SPIFFE ID the endpoint presents', spire: [{ name: 'endpointSpiffeID' }] },
  { name: 'trust-domain-bundle-path', value: 'FILE', about: "the peer's bootstrap bundle (authenticates an https_spiffe endpoint the first time)", spire: [{ name: 'trustDomainBundlePath' }] },
  { name: 'trust-domain-bundle-format', value: 'FORMAT', choices: ['pem', 'spiffe'], about: 'the bootstrap bundle file format: pem (default) or spiffe', spire: [{ name: 'trustDomainBundleFormat' }] },
];

const load = {
  server: () => import('./commands/server.js'),
  entry: () => import('./commands/entry.js'),
  token: () => import('./commands/token.js'),
  bundle: () => import('./commands/bundle.js'),
  federation: () => import('./commands/federation.js'),
  agentAdmin: () => import('./commands/agent-admin.js'),
  agentRun: () => import('./commands/agent-run.js'),
  localauthority: () => import('./commands/localauthority.js'),
  x509: () => import('./commands/x509.js'),
  jwt: () => import('./commands/jwt.js'),
  demo: () => import('./commands/demo.js'),
  api: () => import('./commands/api.js'),
  helper: () => import('./commands/helper.js'),
  check: () => import('./commands/check.js'),
  oidc: () => import('./commands/oidc.js'),
} satisfies Record<string, () => Promise<CommandModule>>;

const KIND: OptionDef = { name: 'kind', value: 'KIND', choices: ['x509', 'jwt'], about: 'the X.509 CA or the JWT signing key' };
const AUTHORITY_ID: OptionDef = { name: 'id', value: 'ID', about: 'the authority ID (localauthority show lists them)', spire: [{ name: 'authorityID' }] };

/** `localauthority <verb>` with --kind, and SPIRE's `localauthority x509|jwt <verb>` implying it. */
function authorityVerbs(kind: 'x509' | 'jwt' | undefined): CommandDef[] {
  const withKind = (options: OptionDef[]): OptionDef[] => (kind === undefined ? [KIND, ...options] : options);
  const spire = (verb: string): string[] => (kind === undefined ? [] : [`spire-server localauthority ${kind} ${verb}`]);
  const what = kind === undefined ? 'authority' : kind === 'x509' ? 'X.509 CA' : 'JWT signing key';
  const verb = (name: string, about: string, options: OptionDef[]): CommandDef => ({
    name,
    about,
    options: [...(name === 'show' ? options : withKind(options)), ...ADMIN],
    run: { load: load.localauthority, as: name, ...(kind === undefined ? {} : { preset: { kind } }) },
    spire: spire(name),
  });
  return [
    verb('show', kind === undefined ? 'every X.509 and JWT authority with its phase' : `every ${what} with its phase`, []),
    verb('prepare', `prepare the next ${what} now (published at once)`, []),
    verb('activate', `activate the prepared ${what} now`, [{ ...AUTHORITY_ID, about: 'refuse unless this is the prepared authority' }]),
    verb('taint', `mark an old ${what} tainted`, [AUTHORITY_ID]),
    verb('revoke', `remove a tainted ${what} from the bundle`, [AUTHORITY_ID]),
  ];
}

/** The `sigil` command tree. */
export const COMMANDS: readonly CommandDef[] = [
  {
    name: 'server',
    about: 'run the server; healthcheck, validate, remove, rewrap-keys, generate-kek',
    commands: [
      {
        name: 'run',
        about: 'run the server until SIGINT or SIGTERM (flags override the file)',
        options: [
          { name: 'config', value: 'FILE', about: 'server configuration (YAML)' },
          { name: 'trust-domain', value: 'TD', about: 'the trust domain', spire: [{ name: 'trustDomain' }] },
          { name: 'data-dir', value: 'DIR', about: 'where the server keeps its state', spire: [{ name: 'dataDir' }] },
          { name: 'log-level', value: 'LEVEL', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], about: 'log level', spire: [{ name: 'logLevel' }] },
          { name: 'agent-address', value: 'HOST:PORT', about: 'where the agent API listens' },
          { name: 'admin-socket', value: 'PATH', about: 'the admin API socket', spire: [{ name: 'socketPath' }] },
          { name: 'health-address', value: 'HOST:PORT', about: 'where /live and /ready are served' },
        ],
        run: { load: load.server, as: 'run' },
        spire: ['spire-server run'],
      },
      {
        name: 'healthcheck',
        about: 'exit 0 when the server answers and is ready, 1 otherwise',
        options: [...ADMIN],
        run: { load: load.server, as: 'healthcheck' },
        spire: ['spire-server healthcheck'],
      },
      {
        name: 'validate',
        about: 'check a configuration file without starting the server',
        options: [{ name: 'config', value: 'FILE', about: 'server configuration (YAML)' }],
        run: { load: load.check, as: 'server validate' },
        spire: ['spire-server validate'],
      },
      {
        name: 'remove',
        about: 'remove another server that is gone for good: its authorities leave the bundle once what they signed has expired',
        options: [{ name: 'server-id', value: 'ID', about: 'the server to remove (as `localauthority show` lists it)' }, ...ADMIN],
        run: { load: load.server, as: 'remove' },
      },
      {
        name: 'rewrap-keys',
        about: 're-wrap every data key under a new KEK (stop the server first)',
        options: [
          { name: 'config', value: 'FILE', about: 'server configuration (YAML)' },
          { name: 'new-kek', value: 'FILE', about: 'the new KEK file' },
          { name: 'to-config', value: 'FILE', about: 'a server configuration whose keyManager holds the new KEK (a KEK file or a PKCS#11 token)' },
          OUTPUT,
        ],
        run: { load: load.server, as: 'rewrap-keys' },
      },
      {
        name: 'generate-kek',
        about: 'write 32 random bytes to a new file, mode 0600',
        args: ['[file]'],
        options: [{ name: 'path', value: 'FILE', about: 'the file to write (refuses to overwrite)' }],
        run: { load: load.server, as: 'generate-kek' },
      },
    ],
  },
  {
    name: 'entry',
    about: 'registration entries: create, show, list, update, delete, count',
    commands: [
      {
        name: 'create',
        about: 'create an entry',
        options: [...ENTRY_FIELDS, { ...ENTRY_ID, about: 'choose the entry ID (default: generated)' }, ...ADMIN],
        run: { load: load.entry, as: 'create' },
        spire: ['spire-server entry create'],
      },
      {
        name: 'show',
        about: 'show one entry in full, or the entries matching the filters',
        args: ['[entry-id]'],
        options: [ENTRY_ID, ...ENTRY_FILTERS, ...ADMIN],
        run: { load: load.entry, as: 'show' },
        spire: ['spire-server entry show'],
      },
      { name: 'list', about: 'list the entries matching the filters', options: [...ENTRY_FILTERS, ...ADMIN], run: { load: load.entry, as: 'list' } },
      {
        name: 'update',
        about: "replace an entry's fields (every field of create)",
        options: [{ ...ENTRY_ID, about: 'the entry to update' }, ...ENTRY_FIELDS, ...ADMIN],
        run: { load: load.entry, as: 'update' },
        spire: ['spire-server entry update'],
      },
      {
        name: 'delete',
        about: 'delete entries',
        args: ['[entry-ids...]'],
        options: [{ ...ENTRY_ID, repeat: true, about: 'the entry to delete (repeat)' }, ...ADMIN],
        run: { load: load.entry, as: 'delete' },
        spire: ['spire-server entry delete'],
      },
      { name: 'count', about: 'count the entries matching the filters', options: [...ENTRY_FILTERS, ...ADMIN], run: { load: load.entry, as: 'count' }, spire: ['spire-server entry count'] },
    ],
  },
  {
    name: 'token',
    about: 'generate a one-time join token',
    commands: [
      {
        name: 'generate',
        about: 'print a one-time join token (pass it to the agent in a file)',
        options: [
          { name: 'ttl', value: 'DURATION', kind: 'duration', about: 'how long the token is valid (default: the server nodeAttestors.joinToken.defaultTtl)', spire: [{ name: 'ttl', seconds: true }] },
          SPIFFE_ID('also create a node alias with this ID for the agent that uses the token'),
          ...ADMIN,
        ],
        run: { load: load.token, as: 'generate' },
        spire: ['spire-server token generate'],
      },
    ],
  },
  {
    name: 'bundle',
    about: 'trust bundles: show, list, set, delete',
    commands: [
      {
        name: 'show',
        about: 'print the own trust bundle, or a federated one',
        options: [
          { name: 'trust-domain', value: 'TD', kind: 'trust-domain', about: 'a federated trust domain (default: the own one)', spire: [{ name: 'id' }] },
          { name: 'format', value: 'FORMAT', choices: ['pem', 'spiffe'], about: 'pem (default) or spiffe (the JWKS bundle document)' },
          ...ADMIN,
        ],
        run: { load: load.bundle, as: 'show' },
        spire: ['spire-server bundle show'],
      },
      { name: 'list', about: 'list the federated bundles', options: [...ADMIN], run: { load: load.bundle, as: 'list' }, spire: ['spire-server bundle list'] },
      {
        name: 'set',
        about: "set (or append to) a federated trust domain's bundle",
        options: [
          { name: 'trust-domain', value: 'TD', kind: 'trust-domain', about: 'the federated trust domain', spire: [{ name: 'id' }] },
          { name: 'path', value: 'FILE', about: 'the bundle file' },
          { name: 'format', value: 'FORMAT', choices: ['pem', 'spiffe'], about: "the file's format: pem (default) or spiffe (a JWKS bundle document)" },
          { name: 'append', about: 'add the authorities to the stored bundle instead of replacing it' },
          ...ADMIN,
        ],
        run: { load: load.bundle, as: 'set' },
        spire: ['spire-server bundle set'],
      },
      {
        name: 'delete',
        about: 'delete a federated bundle',
        options: [{ name: 'trust-domain', value: 'TD', kind: 'trust-domain', about: 'the federated trust domain', spire: [{ name: 'id' }] }, ...ADMIN],
        run: { load: load.bundle, as: 'delete' },
        spire: ['spire-server bundle delete'],
      },
    ],
  },
  {
    name: 'federation',
    about: 'federation relationships: create, list, show, update, delete, refresh',
    commands: [
      { name: 'create', about: 'create a federation relationship with a peer trust domain', options: [...FED_FIELDS, ...ADMIN], run: { load: load.federation, as: 'create' }, spire: ['spire-server federation create'] },
      { name: 'list', about: 'list the federation relationships', options: [...ADMIN], run: { load: load.federation, as: 'list' }, spire: ['spire-server federation list'] },
      { name: 'show', about: 'show a relationship and its last refresh (success, error, sequence)', options: [FED_TD, ...ADMIN], run: { load: load.federation, as: 'show' }, spire: ['spire-server federation show'] },
      { name: 'update', about: "replace a relationship's endpoint fields (and, with a bundle path, the bundle)", options: [...FED_FIELDS, ...ADMIN], run: { load: load.federation, as: 'update' }, spire: ['spire-server federation update'] },
      { name: 'delete', about: "delete a relationship (the peer's last bundle stays until bundle delete)", options: [FED_TD, ...ADMIN], run: { load: load.federation, as: 'delete' }, spire: ['spire-server federation delete'] },
      { name: 'refresh', about: "fetch the peer's bundle now", options: [FED_TD, ...ADMIN], run: { load: load.federation, as: 'refresh' }, spire: ['spire-server federation refresh'] },
    ],
  },
  {
    name: 'agent',
    about: 'run the agent; attested agents: list, show, evict, ban, unban, count',
    commands: [
      {
        name: 'run',
        about: 'run the agent until SIGINT or SIGTERM (flags override the file)',
        options: [
          { name: 'config', value: 'FILE', about: 'agent configuration (YAML)' },
          { name: 'socket', value: 'PATH', about: 'the Workload API socket', spire: [{ name: 'socketPath' }] },
          { name: 'data-dir', value: 'DIR', about: 'where the agent keeps its SVID and key', spire: [{ name: 'dataDir' }] },
          { name: 'server-address', value: 'HOST:PORT', about: "the server's agent API", spire: [{ name: 'serverAddress' }] },
          { name: 'trust-bundle', value: 'FILE', about: 'bootstrap bundle (PEM) trusted for the first connection', spire: [{ name: 'trustBundle' }] },
          { name: 'join-token-file', value: 'FILE', about: 'attest with the join token in this file' },
          { name: 'join-token', value: 'TOKEN', about: 'refused: a join token is a secret, use --join-token-file', spire: [{ name: 'joinToken' }] },
          { name: 'trust-domain', value: 'TD', about: 'the trust domain', spire: [{ name: 'trustDomain' }] },
          { name: 'log-level', value: 'LEVEL', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], about: 'log level', spire: [{ name: 'logLevel' }] },
        ],
        run: { load: load.agentRun, as: 'run' },
        spire: ['spire-agent run'],
      },
      {
        name: 'healthcheck',
        about: "exit 0 when the agent's Workload API answers, 1 otherwise",
        options: [
          { name: 'socket', value: 'PATH|URI', about: 'the Workload API socket (default: socketPath of --config, else $SPIFFE_ENDPOINT_SOCKET, else /run/sigil/agent.sock)', spire: [{ name: 'socketPath' }] },
          { name: 'config', value: 'FILE', about: 'agent.yaml whose socketPath to use' },
          { name: 'timeout', value: 'DURATION', kind: 'duration', about: 'give up after this long (default 5s)' },
          OUTPUT,
        ],
        run: { load: load.check, as: 'agent healthcheck' },
        spire: ['spire-agent healthcheck'],
      },
      {
        name: 'validate',
        about: 'check a configuration file without starting the agent',
        options: [{ name: 'config', value: 'FILE', about: 'agent configuration (YAML)' }],
        run: { load: load.check, as: 'agent validate' },
        spire: ['spire-agent validate'],
      },
      {
        name: 'list',
        about: 'list attested agents',
        options: [
          { name: 'banned', about: 'only banned agents' },
          { name: 'attestation-type', value: 'TYPE', about: 'only agents attested this way (join_token, x509pop, k8s_psat, jwt)', spire: [{ name: 'attestationType' }] },
          ...ADMIN,
        ],
        run: { load: load.agentAdmin, as: 'list' },
        spire: ['spire-server agent list'],
      },
      {
        name: 'count',
        about: 'count attested agents',
        options: [
          { name: 'banned', about: 'only banned agents' },
          { name: 'attestation-type', value: 'TYPE', about: 'only agents attested this way', spire: [{ name: 'attestationType' }] },
          ...ADMIN,
        ],
        run: { load: load.agentAdmin, as: 'count' },
        spire: ['spire-server agent count'],
      },
      ...(
        [
          ['show', 'show one attested agent', 'spire-server agent show'],
          ['evict', 'forget an agent; it must attest again', 'spire-server agent evict'],
          ['ban', 'refuse an agent until unbanned', 'spire-server agent ban'],
          ['unban', 'lift a ban', undefined],
        ] as const
      ).map(([name, about, spire]): CommandDef => ({
        name,
        about,
        args: ['[spiffe-id]'],
        options: [SPIFFE_ID('the agent'), ...ADMIN],
        run: { load: load.agentAdmin, as: name },
        ...(spire === undefined ? {} : { spire: [spire] }),
      })),
    ],
  },
  {
    name: 'localauthority',
    about: 'X.509 CA and JWT key lifecycle: show, prepare, activate, taint, revoke',
    commands: [
      ...authorityVerbs(undefined),
      { name: 'x509', about: 'the X.509 CA: show, prepare, activate, taint, revoke', commands: authorityVerbs('x509') },
      { name: 'jwt', about: 'the JWT signing keys: show, prepare, activate, taint, revoke', commands: authorityVerbs('jwt') },
    ],
  },
  {
    name: 'x509',
    about: 'mint an X.509-SVID',
    commands: [
      {
        name: 'mint',
        about: 'mint an X509-SVID from the server (no agent): DIR/svid.pem, DIR/key.pem (0600), DIR/bundle.pem',
        options: [
          SPIFFE_ID('the SPIFFE ID of the SVID'),
          { name: 'write', value: 'DIR', about: 'the folder to write the files to' },
          { name: 'ttl', value: 'DURATION', kind: 'duration', about: 'lifetime (default: the server svid.defaultX509Ttl)' },
          { name: 'dns', value: 'NAME', repeat: true, about: 'a DNS name (repeat)' },
          ...ADMIN,
        ],
        run: { load: load.x509, as: 'mint' },
        spire: ['spire-server x509 mint'],
      },
    ],
  },
  {
    name: 'jwt',
    about: 'mint a JWT-SVID',
    commands: [
      {
        name: 'mint',
        about: 'mint a JWT-SVID from the server (no agent)',
        options: [
          SPIFFE_ID('the SPIFFE ID of the SVID'),
          { name: 'audience', value: 'AUD', repeat: true, about: 'an audience (repeat)' },
          { name: 'ttl', value: 'DURATION', kind: 'duration', about: 'lifetime (default: the server svid.defaultJwtTtl)' },
          { name: 'write', value: 'FILE', about: 'write the token to this file (0600) instead of standard output' },
          ...ADMIN,
        ],
        run: { load: load.jwt, as: 'mint' },
        spire: ['spire-server jwt mint'],
      },
    ],
  },
  {
    name: 'demo',
    about: 'run a local trust domain with two mTLS demo services (Ctrl-C stops it)',
    options: [
      { name: 'data-dir', value: 'DIR', about: 'where state and logs go (default .sigil-demo/ in the project); wiped at start' },
      { name: 'socket', value: 'PATH', about: 'the Workload API socket (default /tmp/sigil/agent.sock, or one in the data dir when that is taken)' },
      { name: 'svid-ttl', value: 'DURATION', kind: 'duration', about: 'X509-SVID lifetime (default 2m, at least 1m)' },
    ],
    run: { load: load.demo, as: 'demo' },
  },
  {
    name: 'api',
    about: 'Workload API client: fetch x509|jwt|bundles, validate jwt, watch',
    commands: [
      {
        name: 'fetch',
        about: 'fetch from the Workload API: x509 (the default), jwt, bundles',
        commands: [
          {
            name: 'x509',
            about: "print the caller's X509-SVIDs and bundles",
            isDefault: true,
            options: [{ name: 'write', value: 'DIR', about: 'write svid.N.pem, svid.N.key (0600), bundle.N.pem, federated_bundle.N.M.pem' }, ...WORKLOAD],
            run: { load: load.api, as: 'fetch x509' },
            spire: ['spire-agent api fetch x509', 'spire-agent api fetch'],
          },
          {
            name: 'jwt',
            about: 'fetch JWT-SVIDs for an audience',
            options: [{ name: 'audience', value: 'AUD', repeat: true, about: 'an audience (repeat)' }, SPIFFE_ID('only this identity'), ...WORKLOAD],
            run: { load: load.api, as: 'fetch jwt' },
            spire: ['spire-agent api fetch jwt'],
          },
          { name: 'bundles', about: 'print the X.509 and JWT bundles of every trust domain', options: [...WORKLOAD], run: { load: load.api, as: 'fetch bundles' } },
        ],
      },
      {
        name: 'validate',
        about: 'ask the agent to validate a token',
        commands: [
          {
            name: 'jwt',
            about: 'validate a JWT-SVID read from a file',
            options: [
              { name: 'audience', value: 'AUD', about: 'the audience the token must carry' },
              { name: 'token-file', value: 'FILE', about: 'the file holding the token' },
              { name: 'svid', value: 'TOKEN', about: 'refused: a token is a secret, use --token-file' },
              ...WORKLOAD,
            ],
            run: { load: load.api, as: 'validate jwt' },
            spire: ['spire-agent api validate jwt'],
          },
        ],
      },
      { name: 'watch', about: 'print every X.509 update until interrupted', options: WORKLOAD.filter((o) => o.name !== 'timeout'), run: { load: load.api, as: 'watch' }, spire: ['spire-agent api watch'] },
    ],
  },
  {
    name: 'helper',
    about: 'write SVID files for programs that cannot speak the Workload API',
    options: [
      { name: 'config', value: 'FILE', about: 'helper configuration (YAML)' },
      { name: 'socket', value: 'PATH|URI', about: 'the agent Workload API socket (default: agentAddress of the file, else $SPIFFE_ENDPOINT_SOCKET)' },
      { name: 'once', about: 'write the files once and exit' },
    ],
    run: { load: load.helper, as: 'helper' },
    spire: ['spiffe-helper'],
  },
  {
    name: 'oidc',
    about: 'publish the OpenID discovery document and JWT keys for cloud token exchange',
    commands: [
      {
        name: 'serve',
        about: 'serve the discovery document and the JWKS until SIGINT or SIGTERM',
        options: [{ name: 'config', value: 'FILE', about: 'OIDC provider configuration (YAML, docs/oidc.md)' }],
        run: { load: load.oidc, as: 'serve' },
        spire: ['oidc-discovery-provider'],
      },
      {
        name: 'export',
        about: 'write the discovery document and the JWKS as files for static hosting',
        options: [
          { name: 'config', value: 'FILE', about: 'OIDC provider configuration (YAML, docs/oidc.md)' },
          { name: 'dir', value: 'DIR', about: 'write the files below this folder' },
          { name: 'watch', about: 'keep running and rewrite them on every key change' },
        ],
        run: { load: load.oidc, as: 'export' },
      },
    ],
  },
];

/** Every command of the tree with its path (`['entry', 'create']`), groups before their children. */
export function walkCommands(defs: readonly CommandDef[] = COMMANDS, parent: readonly string[] = []): { path: string[]; def: CommandDef }[] {
  const out: { path: string[]; def: CommandDef }[] = [];
  for (const def of defs) {
    const path = [...parent, def.name];
    out.push({ path, def });
    if (def.commands !== undefined) out.push(...walkCommands(def.commands, path));
  }
  return out;
}
