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
  /** True once the CA, the APIs and the bundle are up. */
  ready: () => Promise<boolean>;
  /** True once the datastore is open and while it answers; false while the server waits for it at start. */
  datastore: () => Promise<boolean>;
  /**
   * True once the CA keys are loaded and while the key manager can use them; false before (the
   * server is still starting) and while a token does not answer (it serves what it has but cannot sign).
   */
  keysAvailable: () => Promise<boolean>;
  metrics: ServerMetrics;
  logger: Logger;
}): Promise<HealthServer> {
  return startProbeServer({
    host: options.host,
    port: options.port,
    // each check on its own, a failing one false, so the body always says which holds the server back
    readiness: async () => {
      const check = (p: () => Promise<boolean>): Promise<boolean> => p().then((ok) => ok, () => false);
      const [serving, datastore, keyManager] = await Promise.all([check(options.ready), check(options.datastore), check(options.keysAvailable)]);
      return { serving, datastore, keyManager };
    },
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
