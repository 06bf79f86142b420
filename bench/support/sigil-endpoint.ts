/**
 * The Sigil side of benchmarks 4 and 5: the real Workload API server
 * (startWorkloadApiServer) with the real unix attestor over the real /proc and SO_PEERCRED,
 * fed by a StaticIdentitySource holding a CA-signed SVID for this uid.
 */
import { ProcfsProcessInfo } from '../../src/agent/peer/process-info.js';
import { startWorkloadApiServer } from '../../src/agent/workload-api/workload-api-server.js';
import { silentLogger } from '../../src/common/logger.js';
import { makeSelector } from '../../src/spiffe/selector.js';
import { UnixWorkloadAttestor } from '../../attestors/workload/unix/unix-attestor.js';
import { BENCH_TRUST_DOMAIN, createBenchCa } from './ca.js';
import { StaticIdentitySource } from './static-identity-source.js';

/** A running Workload API endpoint under benchmark. */
export interface SigilEndpoint {
  readonly address: string;
  /** What serves the identities, for the report. */
  readonly description: string;
  /** Open subscriptions (streams the source pushes to). */
  readonly subscribers: number;
  /** Changes the trust bundle and pushes it to every stream. */
  pushBundleChange(): void;
  close(): Promise<void>;
}

/** Starts the Workload API on `socketPath`. */
export async function startSigilEndpoint(socketPath: string): Promise<SigilEndpoint> {
  const ca = await createBenchCa();
  const uid = process.getuid?.() ?? 0;
  const source = await StaticIdentitySource.create(ca, BENCH_TRUST_DOMAIN, makeSelector('unix', `uid:${uid}`));
  const processes = new ProcfsProcessInfo();
  const server = await startWorkloadApiServer({
    socketPath,
    attestors: [new UnixWorkloadAttestor({ processes })],
    identities: source,
    logger: silentLogger(),
    processInfo: processes,
  });
  return {
    address: server.address,
    description: 'startWorkloadApiServer + unix attestor + static identity source (the agent daemon is not in the tree yet)',
    get subscribers() {
      return source.subscribers;
    },
    pushBundleChange: () => source.pushBundleChange(),
    close: () => server.close(),
  };
}
