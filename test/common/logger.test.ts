/**
 * Every log line is strict JSON (issue 11, item 7): pino writes a child's bindings and the
 * call's fields side by side, so a field the child already carries came out twice
 * (`"peerPid":1,…,"peerPid":1`), which strict parsers refuse. The check used here refuses a
 * repeated key; it is shown to say no first.
 */
import test from 'ava';
import { memoryLogger } from '../../src/common/logger.js';
import { SigilError } from '../../src/common/errors.js';
import { nonStrictJsonLines, parseStrictJson } from '../helpers/strict-json.js';

test('the strict check refuses a repeated key, at any depth, and anything that is not JSON', (t) => {
  t.throws(() => parseStrictJson('{"a":1,"a":1}'), { message: /duplicate key "a"/ });
  t.throws(() => parseStrictJson('{"x":{"b":true,"b":false}}'), { message: /duplicate key "b"/ });
  t.throws(() => parseStrictJson('[{"c":null,"c":null}]'), { message: /duplicate key "c"/ });
  t.throws(() => parseStrictJson('{"a":1} x'));
  t.throws(() => parseStrictJson('{"a":01}'));
  t.deepEqual(parseStrictJson('{"a":[1,2.5e3,"x\\"y",{"b":false}],"c":null}'), { a: [1, 2500, 'x"y', { b: false }], c: null });
  const bad = nonStrictJsonLines('{"a":1}\n{"a":1,"a":2}\n');
  t.is(bad.length, 1);
  t.regex(bad[0] as string, /^duplicate key "a" at offset \d+ of /);
});

test('a field the child logger already carries is written once; a different value is kept under _<key>', (t) => {
  const { logger, lines } = memoryLogger('debug');
  const child = logger.child({ method: 'FetchX509SVID', peerPid: 42, peerUid: 1000 });
  child.info({ peerPid: 42, peerUid: 1000, reason: 'no-identity' }, 'workload stream denied');
  child.info({ peerPid: 43 }, 'other pid');
  t.deepEqual(nonStrictJsonLines(lines.join('')), []);
  const denied = parseStrictJson(lines[0] as string) as Record<string, unknown>;
  t.like(denied, { method: 'FetchX509SVID', peerPid: 42, peerUid: 1000, reason: 'no-identity', msg: 'workload stream denied' });
  const other = parseStrictJson(lines[1] as string) as Record<string, unknown>;
  t.like(other, { peerPid: 42, _peerPid: 43, msg: 'other pid' });
});

test("fields named like pino's own keys (pid, msg, time, level, hostname, name) do not repeat them", (t) => {
  const { logger, lines } = memoryLogger('debug');
  logger.info({ pid: 1, msg: 'field', time: 'now', level: 'x', hostname: 'h' }, 'message');
  logger.child({ name: 'outer' }).warn({ name: 'inner', err: new SigilError('ERR_INTERNAL', 'boom', { reason: 'r' }) }, 'with error');
  logger.error(new Error('plain'), 'an error as first argument');
  t.deepEqual(nonStrictJsonLines(lines.join('')), []);
  const first = parseStrictJson(lines[0] as string) as Record<string, unknown>;
  t.is(first.msg, 'message');
  t.is(first.pid, process.pid);
  t.like(first, { _pid: 1, _msg: 'field', _time: 'now', _level: 'x', _hostname: 'h' });
  const second = parseStrictJson(lines[1] as string) as Record<string, unknown>;
  t.like(second, { name: 'outer', _name: 'inner' });
  t.like((second.err ?? {}) as object, { code: 'ERR_INTERNAL', reason: 'r' });
});
