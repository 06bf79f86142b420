/**
 * DeadlineQueue (src/agent/deadline-queue.ts): many deadlines behind one timer fire in order
 * of due time, moved and removed items behave, and the queue never holds more than one timer.
 */
import test from 'ava';
import { ManualClock } from '../../src/common/clock.js';
import { DeadlineQueue, type Deadline } from '../../src/agent/deadline-queue.js';

interface Item extends Deadline {
  readonly name: string;
}

function item(name: string): Item {
  return { name, dueMs: 0, queueIndex: -1 };
}

test('items fire in due order behind a single timer; moved and removed items follow their new due time', (t) => {
  const clock = new ManualClock(0);
  const fired: string[] = [];
  const q = new DeadlineQueue<Item>(clock, (i) => fired.push(`${i.name}@${clock.nowMs()}`));
  const items = Array.from({ length: 200 }, (_, i) => item(`i${i}`));
  // A scrambled order of due times 1000..200000.
  items.forEach((it, i) => q.schedule(it, 1000 * (((i * 37) % 200) + 1)));
  t.is(clock.pendingTimers, 1);
  const moved = items[5] as Item;
  q.schedule(moved, 500);
  const removed = items[6] as Item;
  q.remove(removed);
  q.remove(removed);
  t.is(removed.queueIndex, -1);
  t.is(q.size, 199);
  t.true(clock.pendingTimers <= 2);

  clock.advance(500);
  t.deepEqual(fired, ['i5@500']);
  clock.advance(200_000);
  t.is(fired.length, 199);
  const times = fired.map((f) => Number(f.split('@')[1]));
  t.deepEqual(times, [...times].sort((a, b) => a - b));
  t.false(fired.some((f) => f.startsWith('i6@')));
  t.is(q.size, 0);
});

test('an item rescheduled from its own callback fires again later; stop cancels everything', (t) => {
  const clock = new ManualClock(0);
  const fired: number[] = [];
  const a = item('a');
  const q = new DeadlineQueue<Item>(clock, (i) => {
    fired.push(clock.nowMs());
    if (fired.length === 1) q.schedule(i, 3000);
  });
  q.schedule(a, 1000);
  q.schedule(item('b'), 5000);
  clock.advance(3000);
  t.deepEqual(fired, [1000, 3000]);
  q.stop();
  clock.advance(10_000);
  t.deepEqual(fired, [1000, 3000]);
  t.is(clock.pendingTimers, 0);
});
