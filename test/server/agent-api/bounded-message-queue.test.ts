import test from 'ava';
import { BoundedMessageQueue } from '../../../src/server/agent-api/bounded-message-queue.js';

test('delivers to a waiting reader, queues up to the cap, then reports overflow', async (t) => {
  const q = new BoundedMessageQueue<number>(2);
  const waiting = q.next();
  t.is(q.push(1), 'delivered');
  t.is(await waiting, 1);
  t.is(q.push(2), 'queued');
  t.is(q.push(3), 'queued');
  t.is(q.size, 2);
  t.is(q.push(4), 'overflow');
  // an overflow keeps nothing more
  t.is(q.size, 2);
  t.is(await q.next(), 2);
  t.is(await q.next(), 3);
});

test('failing discards unread messages, rejects the pending read and every later one, drops later pushes', async (t) => {
  const q = new BoundedMessageQueue<string>(4);
  const pending = q.next();
  const flood = new Error('flood');
  q.fail(flood);
  t.is(await t.throwsAsync(pending), flood);
  t.true(q.failed);
  t.is(q.push('late'), 'dropped');
  t.is(q.size, 0);
  t.is(await t.throwsAsync(q.next()), flood);
  t.is(t.throws(() => q.throwIfFailed()), flood);

  const q2 = new BoundedMessageQueue<string>(4);
  q2.push('a');
  q2.fail(flood);
  t.is(q2.size, 0);
  t.is(await t.throwsAsync(q2.next()), flood);
});

test('the end resolves readers with undefined after what is left; later pushes are dropped', async (t) => {
  const q = new BoundedMessageQueue<string>(4);
  q.push('a');
  q.end();
  t.is(q.push('b'), 'dropped');
  t.is(await q.next(), 'a');
  t.is(await q.next(), undefined);
  const q2 = new BoundedMessageQueue<string>(1);
  const pending = q2.next();
  q2.end();
  t.is(await pending, undefined);
  t.notThrows(() => q2.throwIfFailed());
});

test('one reader at a time; the capacity must be a positive integer', async (t) => {
  const q = new BoundedMessageQueue<string>(1);
  void q.next();
  await t.throwsAsync(q.next());
  for (const bad of [0, -1, 1.5, Number.NaN]) t.throws(() => new BoundedMessageQueue<string>(bad), { instanceOf: RangeError });
});
