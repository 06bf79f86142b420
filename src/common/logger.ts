/**
 * Structured JSON logging through pino. A logger is always injected, never global.
 * Constant messages, data in named fields; errors are serialised to code, reason,
 * message and stack only (never arbitrary properties that might carry secrets).
 */
import { pino, type DestinationStream, type LogFn, type Logger as PinoLogger } from 'pino';

/** The logger every component receives. */
export type Logger = PinoLogger;

/** Options of createLogger. */
export interface LoggerOptions {
  readonly level?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  readonly name?: string;
  /** Where lines go; stdout by default. */
  readonly destination?: DestinationStream;
}

interface SerializedError {
  type: string;
  message: string;
  code?: string;
  reason?: string;
  stack?: string;
  cause?: SerializedError;
}

/** Serialises an error without copying its enumerable properties (which may hold secrets). */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const out: SerializedError = { type: err.name, message: err.message };
  const { code, reason } = err as { code?: unknown; reason?: unknown };
  if (typeof code === 'string') out.code = code;
  if (typeof reason === 'string') out.reason = reason;
  if (err.stack !== undefined) out.stack = err.stack;
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

/** Keys pino writes on every line itself (messageKey included). */
const LINE_KEYS = ['level', 'time', 'pid', 'hostname', 'msg'] as const;

/** Per logger instance: the keys its lines already carry, with their values (child bindings are fixed per instance). */
const takenKeys = new WeakMap<object, ReadonlyMap<string, unknown>>();

function keysTakenBy(logger: PinoLogger): ReadonlyMap<string, unknown> {
  let taken = takenKeys.get(logger);
  if (taken === undefined) {
    const m = new Map<string, unknown>(LINE_KEYS.map((k) => [k, undefined]));
    for (const [k, v] of Object.entries(logger.bindings())) m.set(k, v);
    takenKeys.set(logger, (taken = m));
  }
  return taken;
}

/**
 * pino writes a child's bindings and then the call's fields without merging them, so
 * `logger.child({ peerPid }).info({ peerPid }, …)` prints `"peerPid"` twice, which strict
 * JSON parsers refuse. Every line is made strict here: a field equal to a binding is left
 * out, one that differs (or that names a key pino writes itself, such as `pid` or `msg`) is
 * written as `_<key>`.
 */
function uniqueKeys(this: PinoLogger, args: Parameters<LogFn>, method: LogFn): void {
  const [first] = args;
  if (typeof first === 'object' && first !== null && !(first instanceof Error) && !Array.isArray(first)) {
    const taken = keysTakenBy(this);
    let fields: Record<string, unknown> | undefined;
    for (const key of Object.keys(first)) {
      if (!taken.has(key)) continue;
      fields ??= { ...(first as Record<string, unknown>) };
      const value = fields[key];
      delete fields[key];
      if (taken.get(key) === value && !(LINE_KEYS as readonly string[]).includes(key)) continue;
      let renamed = `_${key}`;
      while (taken.has(renamed) || renamed in fields) renamed = `_${renamed}`;
      fields[renamed] = value;
    }
    if (fields !== undefined) {
      method.apply(this, [fields, ...args.slice(1)] as Parameters<LogFn>);
      return;
    }
  }
  method.apply(this, args);
}

/** Creates a JSON logger whose every line is strict JSON (no key twice). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    level: options.level ?? 'info',
    serializers: { err: (e: unknown) => serializeError(e) },
    hooks: { logMethod: uniqueKeys },
    ...(options.name === undefined ? {} : { name: options.name }),
  };
  return options.destination === undefined ? pino(base) : pino(base, options.destination);
}

/** A logger that writes nothing (for tools and tests that do not inspect logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A logger that keeps every line in memory, for tests that scan logs for secrets. */
export function memoryLogger(level: LoggerOptions['level'] = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination: DestinationStream = { write: (line: string) => void lines.push(line) };
  return { logger: createLogger({ level, destination }), lines };
}
