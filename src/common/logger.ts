/**
 * Structured JSON logging through pino. A logger is always injected, never global.
 * Constant messages, data in named fields; errors are serialised to code, reason,
 * message and stack only (never arbitrary properties that might carry secrets).
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

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

/** Creates a JSON logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    level: options.level ?? 'info',
    serializers: { err: (e: unknown) => serializeError(e) },
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
