/** Prometheus metrics of the server, in their own registry (never the global one, so tests can run several servers). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The server's metric instruments. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly svidsIssued = new Counter({
    name: 'sigil_server_svids_issued_total',
    help: 'SVIDs issued, by kind (x509, jwt, agent) and result (ok, error, denied; shed: refused at once, the signing backlog would outlast the call)',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });
  readonly issueLatency = new Histogram({
    name: 'sigil_server_svid_issue_seconds',
    help: 'Time to sign one SVID, by kind',
    labelNames: ['kind'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly attestations = new Counter({
    name: 'sigil_server_node_attestations_total',
    help: 'Node attestations, by attestor and result',
    labelNames: ['attestor', 'result'] as const,
    registers: [this.registry],
  });
  readonly entries = new Gauge({ name: 'sigil_server_entries', help: 'Registration entries', registers: [this.registry] });
  readonly agents = new Gauge({ name: 'sigil_server_agents', help: 'Attested agents', registers: [this.registry] });
  readonly syncStreams = new Gauge({ name: 'sigil_server_sync_streams', help: 'Open SyncEntries streams', registers: [this.registry] });
  readonly caExpiry = new Gauge({
    name: 'sigil_server_ca_expiry_timestamp_seconds',
    help: 'notAfter of the newest X.509 authority in the bundle',
    registers: [this.registry],
  });
}
