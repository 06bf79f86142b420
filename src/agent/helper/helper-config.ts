/**
 * Configuration of `sigil helper`: where to write the SVID files, which JWT-SVIDs to keep
 * fresh, and how to tell the program that uses them (a signal to the pid in a pid file, or
 * a command). One YAML file, unknown keys rejected by name, defaults filled, then frozen.
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { configError, deepFreezeConfig, durationSchema, logLevelSchema, parseConfig, pathResolver, requireConfigMapping, type LogLevel } from '../../common/config.js';
import { parseDuration } from '../../common/duration.js';
import { SigilError } from '../../common/errors.js';
import { SpiffeId, spiffeIdReason } from '../../spiffe/spiffe-id.js';

const fileName = z.string().min(1).regex(/^[^/\0]+$/, 'must be a file name, not a path');

const duration = durationSchema('10s, 1m');

/** The schema of helper.yaml. */
export const helperConfigSchema = z.strictObject({
  /** `unix:///path` of the agent; SPIFFE_ENDPOINT_SOCKET when absent. */
  agentAddress: z.string().min(1).optional(),
  /** Folder the files are written to (created 0755 if missing). */
  certDir: z.string().min(1),
  /** Write the X.509-SVID with this SPIFFE ID instead of the default identity (svids[0]). */
  spiffeId: z.string().min(1).optional(),
  /** Write the X.509-SVID whose entry carries this hint (with spiffeId: both must match). */
  hint: z.string().min(1).optional(),
  svidFileName: fileName.default('svid.pem'),
  svidKeyFileName: fileName.default('svid_key.pem'),
  svidBundleFileName: fileName.default('bundle.pem'),
  /** Append the federated trust domains' CAs to the bundle file. */
  includeFederatedBundles: z.boolean().default(false),
  /**
   * JWT-SVIDs kept fresh in files (0600), refreshed at half of their life. Each item is for
   * the identity its own spiffeId and/or hint select; an item that sets neither follows the
   * top-level spiffeId/hint (the identity of the X.509 files); with none anywhere, the
   * default identity.
   */
  jwtSvids: z
    .array(z.strictObject({ audience: z.array(z.string().min(1)).min(1), spiffeId: z.string().min(1).optional(), hint: z.string().min(1).optional(), fileName }))
    .default([]),
  /** The JWT bundles (JWKS JSON by trust domain) written to this file when set. */
  jwtBundleFileName: fileName.optional(),
  /** How to make the program pick up new files; nothing is done when absent. */
  reload: z
    .strictObject({
      pidFile: z.string().min(1).optional(),
      signal: z.string().regex(/^SIG[A-Z0-9]+$/, 'must be a signal name such as SIGHUP').default('SIGHUP'),
      /** argv of a command to run instead (no shell). */
      command: z.array(z.string().min(1)).min(1).optional(),
      timeout: duration.default('30s'),
    })
    .optional(),
  logLevel: logLevelSchema.default('info'),
});

/** The resolved, frozen helper configuration. */
export interface HelperConfig {
  readonly agentAddress: string | undefined;
  readonly certDir: string;
  /** Which X.509-SVID to write; both undefined means the default identity. */
  readonly spiffeId: string | undefined;
  readonly hint: string | undefined;
  readonly svidFileName: string;
  readonly svidKeyFileName: string;
  readonly svidBundleFileName: string;
  readonly includeFederatedBundles: boolean;
  /** Each with the selection it follows, resolved (its own, else the top-level one; none: the default identity). */
  readonly jwtSvids: readonly { readonly audience: readonly string[]; readonly spiffeId?: string; readonly hint?: string; readonly fileName: string }[];
  readonly jwtBundleFileName: string | undefined;
  readonly reload:
    | { readonly kind: 'signal'; readonly pidFile: string; readonly signal: NodeJS.Signals; readonly timeoutMs: number }
    | { readonly kind: 'command'; readonly command: readonly string[]; readonly timeoutMs: number }
    | undefined;
  readonly logLevel: LogLevel;
}

/** Validates parsed YAML; relative paths resolve against `baseDir`. */
export function resolveHelperConfig(raw: unknown, baseDir = process.cwd()): HelperConfig {
  const c = parseConfig(helperConfigSchema, requireConfigMapping(raw, 'helper'), 'helper', { certDir: 'set certDir (the folder the files are written to)' });
  const abs = pathResolver(baseDir);
  const problems: string[] = [];
  let reload: HelperConfig['reload'];
  if (c.reload !== undefined) {
    const timeoutMs = parseDuration(c.reload.timeout);
    if ((c.reload.pidFile === undefined) === (c.reload.command === undefined)) problems.push('reload: set exactly one of pidFile, command');
    else if (c.reload.command !== undefined) reload = { kind: 'command', command: [...c.reload.command], timeoutMs };
    else {
      if (!(c.reload.signal in constants.signals)) problems.push(`reload.signal: unknown signal ${c.reload.signal}`);
      reload = { kind: 'signal', pidFile: abs(c.reload.pidFile as string), signal: c.reload.signal as NodeJS.Signals, timeoutMs };
    }
  }
  const checkId = (key: string, id: string | undefined): void => {
    if (id === undefined) return;
    try {
      SpiffeId.parse(id);
    } catch (err) {
      problems.push(`${key}: ${JSON.stringify(id)} is not a valid SPIFFE ID (${spiffeIdReason(err)})`);
    }
  };
  checkId('spiffeId', c.spiffeId);
  c.jwtSvids.forEach((j, i) => checkId(`jwtSvids.${i}.spiffeId`, j.spiffeId));
  const names = [c.svidFileName, c.svidKeyFileName, c.svidBundleFileName, ...c.jwtSvids.map((j) => j.fileName), ...(c.jwtBundleFileName ? [c.jwtBundleFileName] : [])];
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) problems.push(`file name ${dup} is used twice`);
  if (problems.length > 0) throw configError('helper', problems);
  return deepFreezeConfig({
    agentAddress: c.agentAddress,
    certDir: abs(c.certDir),
    spiffeId: c.spiffeId,
    hint: c.hint,
    svidFileName: c.svidFileName,
    svidKeyFileName: c.svidKeyFileName,
    svidBundleFileName: c.svidBundleFileName,
    includeFederatedBundles: c.includeFederatedBundles,
    jwtSvids: c.jwtSvids.map((j) => {
      const own = j.spiffeId !== undefined || j.hint !== undefined;
      const spiffeId = own ? j.spiffeId : c.spiffeId;
      const hint = own ? j.hint : c.hint;
      return { audience: [...j.audience], fileName: j.fileName, ...(spiffeId === undefined ? {} : { spiffeId }), ...(hint === undefined ? {} : { hint }) };
    }),
    jwtBundleFileName: c.jwtBundleFileName,
    reload,
    logLevel: c.logLevel,
  });
}

/** Reads and resolves a helper.yaml; paths are relative to its folder. */
export function loadHelperConfig(path: string): HelperConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read helper configuration ${path}`, { reason: 'config-file', cause: err });
  }
  return resolveHelperConfig(raw, resolve(path, '..'));
}
