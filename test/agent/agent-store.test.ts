/**
 * The agent's data dir on a real folder: secret files 0600 in a 0700 folder, and a damaged
 * state file is refused with a reason instead of crashing the agent with a TypeError.
 */
import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { AgentStore } from '../../src/agent/agent-store.js';
import { SigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';

function newStore(t: { teardown(fn: () => void): void }): AgentStore {
  const base = mkdtempSync(join(tmpdir(), 'sigil-store-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const dir = join(base, 'data');
  return new AgentStore(dir);
}

function save(store: AgentStore): void {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'der' });
  store.saveIdentity({ spiffeId: 'spiffe://example.org/sigil/agent/x', chainDer: [Buffer.from([0x30, 0x00])], keyPkcs8Der: new Secret(key), canReattest: true, attestor: 'x509pop' });
}

test('the identity is stored with the key 0600 in a 0700 folder, and read back', (t) => {
  const store = newStore(t);
  const old = process.umask(0);
  try {
    save(store);
  } finally {
    process.umask(old);
  }
  t.is(statSync(store.dir).mode & 0o777, 0o700);
  t.is(statSync(join(store.dir, 'agent-key.pem')).mode & 0o777, 0o600);
  t.is(statSync(join(store.dir, 'agent-state.json')).mode & 0o777, 0o600);
  t.is(store.loadIdentity()?.spiffeId, 'spiffe://example.org/sigil/agent/x');
});

test('a state file that is JSON but not an object is refused with reason data-dir', (t) => {
  const store = newStore(t);
  save(store);
  for (const body of ['null', '[]', '7', 'not json']) {
    writeFileSync(join(store.dir, 'agent-state.json'), body);
    const err = t.throws(() => store.loadIdentity(), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_FAILED_PRECONDITION', body);
    t.is(err?.reason, 'data-dir', body);
  }
});

test('an existing folder readable by others is brought to 0700', (t) => {
  const base = mkdtempSync(join(tmpdir(), 'sigil-store-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  chmodSync(base, 0o755);
  t.is(statSync(new AgentStore(base).dir).mode & 0o777, 0o700);
});
