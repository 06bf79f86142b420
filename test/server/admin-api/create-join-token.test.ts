import test from 'ava';
import { ManualClock } from '../../../src/common/clock.js';
import { startTestServer } from '../../helpers/server.js';
import { rejectionOf } from '../support/rejection.js';

test('CreateJoinToken: ttl_seconds 0 means the default, up to 30 days is accepted, negative or longer is refused (join-token-ttl)', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const s = await startTestServer({ clock });
  t.teardown(() => s.destroy());
  const now = Math.floor(clock.nowMs() / 1000);
  const create = (ttl: number) => s.admin.call<{ expires_at: number | string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: ttl });

  // The documented maximum, 30 days, spelt out: the test does not follow the code's constant.
  const MAX_JOIN_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
  t.is(Number((await create(0)).expires_at), now + s.config.nodeAttestors.joinToken!.defaultTtlMs / 1000);
  t.is(Number((await create(MAX_JOIN_TOKEN_TTL_SECONDS)).expires_at), now + MAX_JOIN_TOKEN_TTL_SECONDS);
  for (const bad of [MAX_JOIN_TOKEN_TTL_SECONDS + 1, 2_147_483_647, -1]) {
    const r = await rejectionOf(create(bad));
    t.is(r.code, 'ERR_INVALID_ARGUMENT', String(bad));
    t.is(r.reason, 'join-token-ttl', String(bad));
  }
});
