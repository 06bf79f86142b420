import test from 'ava';
import { defaultWorkloadEndpoint, grpcTarget, parseWorkloadEndpoint } from '../../src/client/address.js';
import { SigilError } from '../../src/common/errors.js';

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigilError && err.code === 'ERR_INVALID_ARGUMENT') return err.reason;
    throw err;
  }
  return undefined;
}

const ACCEPTS: ReadonlyArray<[string, string]> = [
  ['unix:///tmp/agent.sock', 'unix:///tmp/agent.sock'],
  ['unix:///run/sigil/agent%20x.sock', 'unix:///run/sigil/agent x.sock'],
  ['tcp://127.0.0.1:8081', 'ipv4:127.0.0.1:8081'],
  ['tcp://[::1]:8081', 'ipv6:[::1]:8081'],
];

const REJECTS: ReadonlyArray<[string, string]> = [
  ['', 'endpoint-empty'],
  ['/tmp/agent.sock', 'endpoint-bad-scheme'],
  ['http://127.0.0.1:8081', 'endpoint-bad-scheme'],
  ['UNIX:///tmp/a', 'endpoint-bad-scheme'],
  ['unix:/tmp/agent.sock', 'endpoint-opaque'],
  ['unix:tmp/agent.sock', 'endpoint-opaque'],
  ['unix://', 'endpoint-unix-no-path'],
  ['unix:///', 'endpoint-unix-no-path'],
  ['unix://host/tmp/agent.sock', 'endpoint-unix-authority'],
  ['unix://user@/tmp/agent.sock', 'endpoint-has-userinfo'],
  ['unix:///tmp/agent.sock?x=1', 'endpoint-has-query'],
  ['unix:///tmp/agent.sock#frag', 'endpoint-has-fragment'],
  ['tcp://localhost:8081', 'endpoint-tcp-not-ip'],
  ['tcp://127.0.0.1', 'endpoint-tcp-host-port'],
  ['tcp://127.0.0.1:', 'endpoint-tcp-host-port'],
  ['tcp://127.0.0.1:0', 'endpoint-tcp-bad-port'],
  ['tcp://127.0.0.1:65536', 'endpoint-tcp-bad-port'],
  ['tcp://127.0.0.1:8081/', 'endpoint-tcp-path'],
  ['tcp://127.0.0.1:8081/path', 'endpoint-tcp-path'],
  ['tcp://user@127.0.0.1:8081', 'endpoint-has-userinfo'],
  ['tcp://::1:8081', 'endpoint-tcp-host-port'],
  ['tcp://[127.0.0.1]:8081', 'endpoint-tcp-not-ip'],
  ['tcp://127.0.0.1:8081?x', 'endpoint-has-query'],
];

test('valid Workload Endpoint addresses parse to the right grpc target', (t) => {
  for (const [address, target] of ACCEPTS) t.is(grpcTarget(parseWorkloadEndpoint(address)), target, address);
});

test('invalid Workload Endpoint addresses are refused with a reason', (t) => {
  for (const [address, reason] of REJECTS) t.is(reasonOf(() => parseWorkloadEndpoint(address)), reason, address);
});

test('the default address comes from SPIFFE_ENDPOINT_SOCKET', (t) => {
  t.deepEqual(defaultWorkloadEndpoint({ SPIFFE_ENDPOINT_SOCKET: 'unix:///tmp/x.sock' }), { kind: 'unix', path: '/tmp/x.sock', address: 'unix:///tmp/x.sock' });
  t.is(reasonOf(() => defaultWorkloadEndpoint({})), 'endpoint-not-configured');
  t.is(reasonOf(() => defaultWorkloadEndpoint({ SPIFFE_ENDPOINT_SOCKET: 'localhost:1' })), 'endpoint-bad-scheme');
});
