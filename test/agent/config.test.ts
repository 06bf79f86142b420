/** The agent config schema: defaults, flags over file, unknown keys named, every problem at once, frozen. */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSigilError, type SigilError } from '../../src/common/errors.js';
import { DEFAULT_AGENT_SOCKET, loadAgentConfig, resolveAgentConfig } from '../../src/agent/config.js';

const base = {
  trustDomain: 'example.org',
  serverAddress: 'sigil-server:8081',
  trustBundleFile: '/etc/sigil/bootstrap.pem',
  dataDir: '/var/lib/sigil/agent',
  nodeAttestor: { joinToken: { tokenFile: '/etc/sigil/token' } },
};

function configError(t: ExecutionContext, fn: () => unknown): SigilError {
  const err = t.throws(fn);
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  return err as SigilError;
}

test('defaults fill every optional key and the result is frozen', (t) => {
  const c = resolveAgentConfig(base);
  t.is(c.socketPath, DEFAULT_AGENT_SOCKET);
  t.is(c.logLevel, 'info');
  t.deepEqual(c.nodeAttestor, { type: 'join_token', tokenFile: '/etc/sigil/token' });
  t.deepEqual(c.svidCache, { maxSize: 1000, idleGraceMs: 300_000 });
  t.deepEqual(c.sync, { pageSize: 0, retryInitialMs: 1000, retryMaxMs: 30_000 });
  t.false(c.workloadAttestors.unix.discoverWorkloadPath);
  t.true(Object.isFrozen(c) && Object.isFrozen(c.sync) && Object.isFrozen(c.nodeAttestor));
  t.throws(() => {
    (c as { logLevel: string }).logLevel = 'debug';
  });
});

test('unknown keys are rejected by name, with every other problem in the same error', (t) => {
  const err = configError(t, () => resolveAgentConfig({ ...base, serverAdress: 'x:1', svidCache: { maxSize: 0, ttl: '1h' }, logLevel: 'loud' }));
  t.is(err.reason, 'config');
  t.true(err.message.includes('unknown key serverAdress'));
  t.true(err.message.includes('unknown key svidCache.ttl'));
  t.true(err.message.includes('svidCache.maxSize'));
  t.true(err.message.includes('logLevel'));
});

test('exactly one node attestor, and flags win over the file', (t) => {
  configError(t, () => resolveAgentConfig({ ...base, nodeAttestor: {} }));
  configError(t, () => resolveAgentConfig({ ...base, nodeAttestor: { joinToken: { tokenFile: 'a' }, x509pop: { certFile: 'b', keyFile: 'c' } } }));
  const c = resolveAgentConfig(base, { socketPath: '/tmp/s.sock', joinTokenFile: 'token', logLevel: 'debug' }, '/srv');
  t.is(c.socketPath, '/tmp/s.sock');
  t.deepEqual(c.nodeAttestor, { type: 'join_token', tokenFile: '/srv/token' });
  t.is(c.logLevel, 'debug');
});

test('a YAML file resolves relative paths against its folder; bad durations and addresses are named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-agent-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, 'trustDomain: example.org\nserverAddress: 127.0.0.1:8081\ntrustBundleFile: bootstrap.pem\ndataDir: data\nnodeAttestor:\n  x509pop:\n    certFile: node.pem\n    keyFile: node-key.pem\n');
  const c = loadAgentConfig(file);
  t.is(c.trustBundleFile, join(dir, 'bootstrap.pem'));
  t.deepEqual(c.nodeAttestor, { type: 'x509pop', certFile: join(dir, 'node.pem'), keyFile: join(dir, 'node-key.pem') });
  const err = configError(t, () => resolveAgentConfig({ ...base, serverAddress: 'no-port', svidCache: { idleGrace: 'soon' } }));
  t.true(err.message.includes('serverAddress'));
  t.true(err.message.includes('svidCache.idleGrace'));
  t.is(configError(t, () => loadAgentConfig(join(dir, 'missing.yaml'))).reason, 'config-file');
});

test('banRecheckInterval defaults to 5m and is read as a duration', (t) => {
  t.is(resolveAgentConfig(base).banRecheckIntervalMs, 300_000);
  t.is(resolveAgentConfig({ ...base, banRecheckInterval: '90s' }).banRecheckIntervalMs, 90_000);
  const err = configError(t, () => resolveAgentConfig({ ...base, banRecheckInterval: 'soon' }));
  t.true(err.message.includes('banRecheckInterval'));
});

test('workloadAttestors.k8s: off when absent; SPIRE defaults when present; one kubelet port only', (t) => {
  t.is(resolveAgentConfig(base).workloadAttestors.k8s, undefined);
  const c = resolveAgentConfig({ ...base, workloadAttestors: { k8s: {} } });
  t.deepEqual(c.workloadAttestors.k8s, {
    kubelet: {
      kind: 'secure',
      port: 10250,
      skipVerification: false,
      tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
    },
    maxPollAttempts: 60,
    pollRetryIntervalMs: 500,
    reloadIntervalMs: 60_000,
    disableContainerSelectors: false,
  });
  const readOnly = resolveAgentConfig({ ...base, workloadAttestors: { k8s: { kubeletReadOnlyPort: 10255, nodeName: 'node-1' } } });
  t.deepEqual(readOnly.workloadAttestors.k8s?.kubelet, { kind: 'read-only', port: 10255 });
  const both = configError(t, () => resolveAgentConfig({ ...base, workloadAttestors: { k8s: { kubeletReadOnlyPort: 10255, kubeletSecurePort: 10250 } } }));
  t.true(both.message.includes('workloadAttestors.k8s'), both.message);
  const bad = configError(t, () => resolveAgentConfig({ ...base, workloadAttestors: { k8s: { pollRetryInterval: 'soon', kubeletPort: 1 } } }));
  t.true(bad.message.includes('pollRetryInterval') && bad.message.includes('kubeletPort'), bad.message);
});

test('serverAddresses lists several servers; serverAddress is its one-element form; both or neither is an error naming the keys', (t) => {
  const one = resolveAgentConfig(base);
  t.deepEqual(one.serverAddresses, ['sigil-server:8081']);
  t.is(one.serverAddress, 'sigil-server:8081');
  const { serverAddress: _drop, ...rest } = base;
  const many = resolveAgentConfig({ ...rest, serverAddresses: ['a.example:8081', 'b.example:8081', 'a.example:8081'] });
  t.deepEqual(many.serverAddresses, ['a.example:8081', 'b.example:8081'], 'duplicates dropped, order kept');
  t.is(many.serverAddress, 'a.example:8081');
  const both = configError(t, () => resolveAgentConfig({ ...base, serverAddresses: ['b.example:8081'] }));
  t.true(both.message.includes('serverAddress, serverAddresses: set one of them, not both'), both.message);
  const neither = configError(t, () => resolveAgentConfig(rest));
  t.true(neither.message.includes('serverAddress') && neither.message.includes('serverAddresses'), neither.message);
  const empty = configError(t, () => resolveAgentConfig({ ...rest, serverAddresses: [] }));
  t.true(empty.message.includes('serverAddresses'), empty.message);
  const bad = configError(t, () => resolveAgentConfig({ ...rest, serverAddresses: ['no-port'] }));
  t.true(bad.message.includes('serverAddresses'), bad.message);
  // the flag names the one server to use, whatever the file lists
  t.deepEqual(resolveAgentConfig({ ...rest, serverAddresses: ['b.example:8081'] }, { serverAddress: 'c.example:8081' }).serverAddresses, ['c.example:8081']);
});
