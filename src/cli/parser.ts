/**
 * The command line, parsed with commander (a maintained parser: subcommands, generated
 * help, unknown-flag and unknown-command errors with suggestions) over the definitions in
 * definitions.ts. Three things happen before commander sees the arguments:
 *
 * 1. `--help` (or `-h`, Go's `-help`) anywhere before `--` prints the help of the command it
 *    follows and exits 0: nothing is parsed, read, connected to or changed.
 * 2. SPIRE's spellings become ours: `-parentID X` → `--parent-id X`, `-write D` → `--write D`,
 *    `-banned=true` → `--banned`, and a SPIRE flag in seconds (`token generate -ttl 3600`) gets
 *    its unit (`3600s`).
 * 3. Then commander parses; each flag's value is checked for its kind (durations, SPIFFE IDs,
 *    trust domains, selectors, choices), so a bad value is a usage error before the command runs.
 *
 * Exit codes: 0 success (and help, --version), 1 runtime failure (the command's own), 2 usage
 * error (unknown command or flag, bad or missing value), printed as one line with a hint.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../common/duration.js';
import { SIGIL_VERSION } from '../common/version.js';
import { SpiffeId, spiffeIdReason, TrustDomain } from '../spiffe/spiffe-id.js';
import { optionKey, parsedArgs, setCommandPath } from './commands/args.js';
import { COMMANDS, type CommandDef, type OptionDef, type ValueKind } from './definitions.js';
import type { CommandIo } from './io.js';

/** Exit code of a usage error. */
export const USAGE_EXIT = 2;

const HELP_TOKENS = new Set(['--help', '-h', '-help']);

/** Checks one value of a flag of `kind`; returns it as given, or throws commander's InvalidArgumentError. */
function checkValue(kind: ValueKind, value: string): string {
  switch (kind) {
    case 'duration': {
      if (/^\d+$/.test(value)) throw new InvalidArgumentError(`a duration needs a unit, such as ${value}s or 1h`);
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch {
        throw new InvalidArgumentError('not a duration: use forms like 90s, 5m, 1h30m');
      }
      if (ms <= 0) throw new InvalidArgumentError('must be longer than 0 (leave the flag out for the default)');
      return value;
    }
    case 'spiffe-id':
      try {
        SpiffeId.parse(value);
      } catch (err) {
        throw new InvalidArgumentError(`not a SPIFFE ID: ${spiffeIdReason(err)}`);
      }
      return value;
    case 'trust-domain':
      try {
        TrustDomain.parse(value);
      } catch (err) {
        throw new InvalidArgumentError(`not a trust domain: ${spiffeIdReason(err)}`);
      }
      return value;
    case 'selector': {
      const i = value.indexOf(':');
      if (i <= 0 || i === value.length - 1) throw new InvalidArgumentError('a selector is type:value, e.g. unix:uid:1000');
      return value;
    }
    case 'string':
      return value;
  }
}

function makeOption(def: OptionDef): Option {
  const spire = (def.spire ?? []).map((s) => `-${s.name}`);
  const about = spire.length === 0 ? def.about : `${def.about} [SPIRE: ${spire.join(', ')}]`;
  const option = new Option(def.value === undefined ? `--${def.name}` : `--${def.name} <${def.value}>`, def.repeat && !about.includes('(repeat)') ? `${about} (repeat)` : about);
  if (def.value === undefined) return option;
  if (def.choices !== undefined) option.choices([...def.choices]);
  const kind = def.kind ?? 'string';
  const choices = def.choices;
  return option.argParser((value: string, previous: unknown) => {
    if (choices !== undefined && !choices.includes(value)) throw new InvalidArgumentError(`must be one of ${choices.join(', ')}`);
    const checked = checkValue(kind, value);
    if (def.repeat) return [...((previous as string[] | undefined) ?? []), checked];
    if (previous !== undefined) throw new InvalidArgumentError('given more than once');
    return checked;
  });
}

/** commander's message made one line, with the hint to the command's help. */
export function oneLine(message: string, path: readonly string[]): string {
  const text = message
    .trim()
    .replace(/^error: /, '')
    .replace(/\s*\n\(Did you mean (.*)\?\)$/s, ' (did you mean $1?)')
    .replace(/\s*\n\s*/g, ' ')
    .replace(/^option '(--[^ ']+)[^']*' argument '(.*)' is invalid\. (.*)$/s, (_m, flag: string, value: string, why: string) => `${flag} ${JSON.stringify(value)}: ${why}`)
    .replace(/^option '(--[^ ']+) <([^>]+)>' argument missing$/, '$1 needs a value ($2)')
    .replace(/\.$/, '');
  return `sigil: ${text}; see "${['sigil', ...path].join(' ')} --help"\n`;
}

/** The SPIRE spellings of a leaf's flags, as text for its help. */
function spireHelp(def: CommandDef): string {
  const lines: string[] = [];
  if (def.spire !== undefined && def.spire.length > 0) lines.push(`SPIRE: ${def.spire.join(', ')}`);
  if (def.options !== undefined && def.options.length > 0) lines.push('Flags also take one dash, Go-style, as in SPIRE (-output json).');
  return lines.length === 0 ? '' : `\n${lines.join('\n')}\n`;
}

/** What a parsed command line asks for. */
interface Invocation {
  def: CommandDef;
  path: string[];
  values: Record<string, unknown>;
  positionals: string[];
}

interface Built {
  program: Command;
  commands: Map<CommandDef, Command>;
  invoked: () => Invocation | undefined;
}

function build(io: CommandIo): Built {
  const commands = new Map<CommandDef, Command>();
  let invocation: Invocation | undefined;
  const configure = (cmd: Command, path: readonly string[]): Command =>
    cmd
      .exitOverride()
      .helpOption('-h, --help', 'show this help and exit (nothing else is done)')
      .configureHelp({ sortSubcommands: false, sortOptions: false })
      .configureOutput({ writeOut: (t) => io.out(t), writeErr: (t) => io.err(t), outputError: (t) => io.err(oneLine(t, path)) });

  const add = (parent: Command, def: CommandDef, path: readonly string[]): void => {
    const cmd = configure(new Command(def.name), path).description(def.about);
    parent.addCommand(cmd, def.isDefault === true ? { isDefault: true } : {});
    // `sigil help <command>` at the top; below it, `<command> --help`
    if (def.commands !== undefined) cmd.helpCommand(false);
    commands.set(def, cmd);
    for (const a of def.args ?? []) cmd.argument(a);
    for (const o of def.options ?? []) cmd.addOption(makeOption(o));
    const extra = spireHelp(def);
    if (extra !== '') cmd.addHelpText('after', extra);
    for (const sub of def.commands ?? []) add(cmd, sub, [...path, sub.name]);
    if (def.run !== undefined) {
      const preset = def.run.preset ?? {};
      cmd.action((...params: unknown[]) => {
        const self = params[params.length - 1] as Command;
        const values: Record<string, unknown> = { ...self.opts() };
        for (const [k, v] of Object.entries(preset)) values[optionKey(k)] = v;
        invocation = { def, path: [...path], values, positionals: (self.args as string[]).filter((a) => a !== undefined) };
      });
    }
  };

  const program = configure(new Command('sigil'), [])
    .description('SPIFFE workload identity: the server, the agent and their admin and Workload API clients')
    .version(SIGIL_VERSION, '-V, --version', 'print the version and exit')
    .addHelpText('after', '\nExit codes: 0 success, 1 failure, 2 usage error. SPIRE command shapes and flags work too (docs/cli.md).\n');
  for (const def of COMMANDS) add(program, def, [def.name]);
  return { program, commands, invoked: () => invocation };
}

/** The deepest command the leading words of `tokens` name, and how many words that took. */
function resolve(tokens: readonly string[]): { def: CommandDef | undefined; depth: number } {
  let defs: readonly CommandDef[] | undefined = COMMANDS;
  let def: CommandDef | undefined;
  let depth = 0;
  for (const t of tokens) {
    if (t.startsWith('-') || defs === undefined) break;
    const next: CommandDef | undefined = defs.find((d) => d.name === t);
    if (next === undefined) break;
    def = next;
    defs = next.commands;
    depth++;
  }
  return { def, depth };
}

/** The leaf a command line runs: the named command, or a group's default subcommand. */
function leafOf(def: CommandDef | undefined): CommandDef | undefined {
  let d = def;
  while (d !== undefined && d.run === undefined) d = d.commands?.find((c) => c.isDefault === true);
  return d;
}

/**
 * Rewrites SPIRE's (Go's) spellings of `leaf`'s flags in `tokens` (the words after the
 * command) into ours. With one dash SPIRE's meaning wins (`token generate -ttl 3600` is
 * seconds), with two ours does (`--ttl 3600` is refused: a duration needs a unit). A
 * single-dash word that is no flag of the command becomes a double-dash one, so commander
 * reports it as unknown with a suggestion.
 */
export function spireSpellings(tokens: readonly string[], leaf: CommandDef): string[] {
  const own = new Map<string, { def: OptionDef; seconds: boolean }>();
  const spire = new Map<string, { def: OptionDef; seconds: boolean }>();
  for (const def of leaf.options ?? []) {
    own.set(def.name, { def, seconds: false });
    for (const s of def.spire ?? []) spire.set(s.name, { def, seconds: s.seconds === true });
  }
  const out: string[] = [];
  const withUnit = (seconds: boolean, v: string): string => (seconds && /^\d+$/.test(v) ? `${v}s` : v);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    if (t === '--') {
      out.push(...tokens.slice(i));
      break;
    }
    const m = /^(-{1,2})([A-Za-z][A-Za-z0-9-]*)(=(.*))?$/s.exec(t);
    if (m === null || (m[1] === '-' && (m[2] as string).length === 1)) {
      out.push(t);
      continue;
    }
    const [, , name, eq, inline] = m as unknown as [string, string, string, string | undefined, string | undefined];
    // one dash is SPIRE's habit: its names (and seconds) first; two dashes are ours first
    const known = m[1] === '-' ? (spire.get(name) ?? own.get(name)) : (own.get(name) ?? spire.get(name));
    if (known === undefined) {
      out.push(`--${name}${eq ?? ''}`);
      continue;
    }
    const long = `--${known.def.name}`;
    if (known.def.value === undefined) {
      // Go booleans: -banned, -banned=true, -banned=false
      if (inline === undefined || inline === 'true') out.push(long);
      else if (inline !== 'false') out.push(`${long}=${inline}`);
      continue;
    }
    if (inline !== undefined) out.push(`${long}=${withUnit(known.seconds, inline)}`);
    else {
      out.push(long);
      const value = tokens[i + 1];
      if (value !== undefined) {
        out.push(withUnit(known.seconds, value));
        i++;
      }
    }
  }
  return out;
}

/** Parses `argv` (without node and script) and runs the command; resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CommandIo): Promise<number> {
  const { program, commands, invoked } = build(io);
  const end = argv.indexOf('--');
  const head = end === -1 ? argv : argv.slice(0, end);
  const { def, depth } = resolve(argv);

  if (head.some((t) => HELP_TOKENS.has(t))) {
    (def === undefined ? program : (commands.get(def) as Command)).outputHelp();
    return 0;
  }

  const leaf = leafOf(def);
  const words = argv.slice(0, depth);
  const rest = argv.slice(depth);
  let tokens = [...words, ...(leaf === undefined ? rest : spireSpellings(rest, leaf))];
  if (leaf !== undefined && leaf !== def && def !== undefined) tokens = [...words, leaf.name, ...spireSpellings(rest, leaf)];

  try {
    await program.parseAsync(tokens, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_EXIT;
    throw err;
  }
  const run = invoked();
  if (run === undefined || run.def.run === undefined) return USAGE_EXIT;
  setCommandPath(run.path);
  const module = await run.def.run.load();
  return module.run(run.def.run.as, parsedArgs(run.values, run.positionals), io);
}
