/**
 * A retry line is one line: code, reason, message, the gRPC status or system code of the cause,
 * and the caller's fields; never a stack. An unexpected failure (not a SigilError, or
 * ERR_INTERNAL) adds its stack on a debug line, and only there.
 */
import test from 'ava';
import { status as Status, Metadata, type ServiceError } from '@grpc/grpc-js';
import { memoryLogger } from '../../src/common/logger.js';
import { SigilError } from '../../src/common/errors.js';
import { logRetry, retryErrorFields } from '../../src/common/retry-log.js';

function serviceError(code: Status, details: string): ServiceError {
  const e = new Error(`${code} ${Status[code]}: ${details}`) as ServiceError;
  e.code = code;
  e.details = details;
  e.metadata = new Metadata();
  return e;
}

function connectRefused(): Error {
  const e = new Error('connect ECONNREFUSED 127.0.0.1:1') as NodeJS.ErrnoException;
  e.code = 'ECONNREFUSED';
  return e;
}

const CASES: readonly { name: string; err: unknown; fields: Record<string, unknown>; stack: boolean }[] = [
  {
    name: 'a gRPC failure',
    err: new SigilError('ERR_UNAVAILABLE', 'No connection established', { cause: serviceError(Status.UNAVAILABLE, 'No connection established') }),
    fields: { code: 'ERR_UNAVAILABLE', error: 'No connection established', grpcStatus: 'UNAVAILABLE' },
    stack: false,
  },
  {
    name: 'a datastore that refuses connections',
    err: new SigilError('ERR_UNAVAILABLE', 'datastore is unavailable', { reason: 'datastore-unavailable', cause: connectRefused() }),
    fields: { code: 'ERR_UNAVAILABLE', reason: 'datastore-unavailable', error: 'datastore is unavailable', cause: 'connect ECONNREFUSED 127.0.0.1:1' },
    stack: false,
  },
  {
    name: 'an internal error',
    err: new SigilError('ERR_INTERNAL', 'cannot open datastore', { reason: 'datastore-error', cause: new TypeError('x is not a function') }),
    fields: { code: 'ERR_INTERNAL', reason: 'datastore-error', error: 'cannot open datastore', cause: 'x is not a function' },
    stack: true,
  },
  { name: 'a plain error', err: new RangeError('out of range'), fields: { error: 'out of range' }, stack: true },
  { name: 'a thrown string', err: 'boom', fields: { error: 'boom' }, stack: true },
];

for (const c of CASES) {
  test(`retry line for ${c.name}: one line without a stack, the stack only at debug when unexpected`, (t) => {
    t.deepEqual(retryErrorFields(c.err), c.fields);
    const { logger, lines } = memoryLogger('debug');
    logRetry(logger, c.err, { retryInMs: 250 }, 'server unreachable; retrying');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const [warn, ...rest] = parsed;
    t.like(warn, { level: 40, msg: 'server unreachable; retrying', retryInMs: 250, ...c.fields });
    t.false(lines[0]?.includes('    at ') ?? true, 'no stack in the retry line');
    t.false('err' in (warn ?? {}));
    t.is(rest.length, c.stack ? 1 : 0);
    if (c.stack) t.like(rest[0], { level: 20 });
    if (c.stack && c.err instanceof Error) t.true(lines[1]?.includes('    at '), 'the stack is on the debug line');

    const quiet = memoryLogger('info');
    logRetry(quiet.logger, c.err, { retryInMs: 250 }, 'server unreachable; retrying');
    t.is(quiet.lines.length, 1, 'at info level only the retry line');
  });
}
