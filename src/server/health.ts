/** The server's health and metrics HTTP endpoint: `/live`, `/ready` and `/metrics` (Prometheus text). */
import { startProbeServer, type ProbeServer } from '../common/health-http.js';
import type { Logger } from '../common/logger.js';
import type { ServerMetrics } from './metrics.js';

/** A running health endpoint. */
export type HealthServer = ProbeServer;

/** Serves health and metrics on host:port (port 0 picks a free one). */
export function startHealthServer(options: {
  host: string;
  port: number;
  ready: () => Promise<boolean>;
  /** False while the key manager's token does not answer: the server serves what it has but cannot sign. */
  keysAvailable?: () => Promise<boolean>;
  metrics: ServerMetrics;
  logger: Logger;
}): Promise<HealthServer> {
  return startProbeServer({
    host: options.host,
    port: options.port,
    // one check: the datastore answers and the CA, APIs and bundle are up
    readiness: async () => ({ serving: await options.ready(), keyManager: (await options.keysAvailable?.()) ?? true }),
    routes: {
      '/metrics': (_req, res) => {
        options.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': options.metrics.registry.contentType }).end(text),
          (err: unknown) => {
            options.logger.error({ err }, 'metrics collection failed');
            res.writeHead(500).end();
          },
        );
      },
    },
  });
}
