import test from 'ava';
import { inspect } from 'node:util';
import { Secret } from '../../src/common/secret.js';
import { ManualClock } from '../../src/common/clock.js';
import { parseDuration, formatDuration } from '../../src/common/duration.js';
import { Backoff } from '../../src/common/backoff.js';
import { memoryLogger } from '../../src/common/logger.js';
import { SigilError } from '../../src/common/errors.js';
import { STATUS_BY_CODE, toServiceError, fromServiceError } from '../../src/grpc/status.js';
import { status } from '@grpc/grpc-js';

test('a Secret never prints its value', (t) => {
  const s = new Secret('hunter2-token');
  t.is(s.reveal(), 'hunter2-token');
  t.false(JSON.stringify({ s }).includes('hunter2'));
  t.false(inspect(s).includes('hunter2'));
  t.false(`${String(s)}`.includes('hunter2'));
  const { logger, lines } = memoryLogger();
  logger.info({ s, nested: { s } }, 'secret holder');
  t.is(lines.length, 1);
  t.false(lines.join('').includes('hunter2'));
});

test('logged errors keep code and reason but not extra properties', (t) => {
  const { logger, lines } = memoryLogger();
  const err = Object.assign(new SigilError('ERR_NOT_FOUND', 'entry not found', { reason: 'entry' }), { token: 'tok-123' });
  logger.error({ err }, 'lookup failed');
  const line = JSON.parse(lines[0] ?? '{}') as { err: { code: string; reason: string } };
  t.is(line.err.code, 'ERR_NOT_FOUND');
  t.is(line.err.reason, 'entry');
  t.false(lines[0]?.includes('tok-123'));
});

test('ManualClock fires timers in order as time advances', async (t) => {
  const clock = new ManualClock(1000);
  const fired: string[] = [];
  clock.setTimer(() => fired.push('b'), 200);
  clock.setTimer(() => {
    fired.push('a');
    clock.setTimer(() => fired.push('c'), 150);
  }, 100);
  const cancelled = clock.setTimer(() => fired.push('x'), 50);
  cancelled.cancel();
  clock.advance(99);
  t.deepEqual(fired, []);
  clock.advance(200);
  t.deepEqual(fired, ['a', 'b', 'c']);
  t.is(clock.nowMs(), 1299);
  const slept = clock.sleep(10);
  clock.advance(10);
  await slept;
  const ac = new AbortController();
  const aborted = clock.sleep(10, ac.signal);
  ac.abort(new Error('stop'));
  await t.throwsAsync(aborted, { message: 'stop' });
});

test('durations parse and print', (t) => {
  t.is(parseDuration('1h'), 3_600_000);
  t.is(parseDuration('1h30m'), 5_400_000);
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('1.5s'), 1500);
  t.is(formatDuration(5_400_000), '1h30m');
  t.is(formatDuration(0), '0s');
  for (const bad of ['', '1', 'h', '1y', '1h ', '-1s', '1h-']) {
    const err = t.throws(() => parseDuration(bad), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_INVALID_ARGUMENT');
  }
});

test('backoff grows, caps, jitters and resets', (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 400, random: () => 1 });
  t.deepEqual([b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 400]);
  b.reset();
  t.is(b.next(), 100);
  const low = new Backoff({ initialMs: 100, random: () => 0 });
  t.is(low.next(), 50);
});

test('every error code maps to a gRPC status and round-trips', (t) => {
  for (const code of Object.keys(STATUS_BY_CODE) as Array<keyof typeof STATUS_BY_CODE>) {
    const se = toServiceError(new SigilError(code, 'msg'));
    t.is(se.code, STATUS_BY_CODE[code]);
    t.is(fromServiceError(se).code, code);
  }
  const withReason = fromServiceError(toServiceError(new SigilError('ERR_PERMISSION_DENIED', 'agent is banned', { reason: 'agent-banned' })));
  t.is(withReason.code, 'ERR_PERMISSION_DENIED');
  t.is(withReason.reason, 'agent-banned');
  const odd = fromServiceError(toServiceError(new SigilError('ERR_NOT_FOUND', 'x', { reason: 'Not A Slug!' })));
  t.is(odd.reason, undefined);
  const internal = toServiceError(new Error('secret detail'));
  t.is(internal.code, status.INTERNAL);
  t.is(internal.details, 'internal error');
});
