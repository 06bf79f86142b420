/** The child side of BufferHolder: plain Node, no Sigil module, only Buffers held in objects. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { HolderCommand, HolderReply } from './buffer-holder.js';

const held: { key: Buffer; chain: Buffer[] }[] = [];

async function settledRss(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(200);
    if (gc !== undefined) for (let j = 0; j < 3; j++) gc();
    readings.push(process.memoryUsage().rss);
  }
  readings.sort((a, b) => a - b);
  return readings[2]!;
}

function reply(r: HolderReply): void {
  process.send?.(r);
}

process.on('message', (m) => {
  const cmd = m as HolderCommand;
  void (async () => {
    try {
      if (cmd.type === 'hold') {
        const key = Buffer.from(cmd.key);
        const chain = cmd.chain.map((c) => Buffer.from(c));
        for (let i = 0; i < cmd.count; i++) held.push({ key: Buffer.from(key), chain: chain.map((c) => Buffer.from(c)) });
      }
      reply({ type: 'rss', rss: await settledRss(), held: held.length });
    } catch (err) {
      reply({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
