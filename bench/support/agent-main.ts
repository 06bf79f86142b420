/** The child side of AgentProcess: one real agent, its cache counts and memory on request. */
import { startAgent, type RunningAgent } from '../../src/agent/agent.js';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { silentLogger } from '../../src/common/logger.js';
import type { AgentCommand, AgentProcessStats, AgentReply } from './bench-agent.js';

let agent: RunningAgent | undefined;

function reply(r: AgentReply): void {
  process.send?.(r);
}

function stats(): AgentProcessStats {
  const s = agent?.cache.stats();
  const m = process.memoryUsage();
  return {
    entries: s?.entries ?? 0,
    svids: s?.svids ?? 0,
    subscribers: s?.subscribers ?? 0,
    synced: s?.synced ?? false,
    rss: m.rss,
    heapUsed: m.heapUsed,
    arrayBuffers: m.arrayBuffers,
    at: process.hrtime.bigint().toString(),
  };
}

function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) for (let i = 0; i < 3; i++) gc();
}

process.on('message', (m) => {
  const cmd = m as AgentCommand;
  void (async () => {
    try {
      if (cmd.type === 'start') {
        agent = await startAgent(resolveAgentConfig(cmd.raw), { logger: silentLogger() });
        reply({ type: 'started', address: agent.address });
      } else if (cmd.type === 'stats') {
        if (cmd.gc === true) fullGc();
        reply({ type: 'stats', ...stats() });
      } else if (cmd.type === 'until') {
        const deadline = Date.now() + cmd.timeoutMs;
        for (;;) {
          const s = agent?.cache.stats();
          if (s !== undefined && s.entries >= (cmd.entries ?? 0) && s.svids >= (cmd.svids ?? 0)) break;
          if (Date.now() > deadline) throw new Error(`agent cache did not reach ${JSON.stringify({ entries: cmd.entries, svids: cmd.svids })} in time: ${JSON.stringify(s)}`);
          await new Promise((r) => setTimeout(r, 2));
        }
        reply({ type: 'stats', ...stats() });
      } else {
        await agent?.stop();
        reply({ type: 'stopped' });
        process.exit(0);
      }
    } catch (err) {
      reply({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
