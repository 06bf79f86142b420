/** The health and metrics HTTP endpoint: `/live`, `/ready` and `/metrics` (Prometheus text). */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { ServerMetrics } from './metrics.js';

/** A running health endpoint. */
export interface HealthServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves health and metrics on host:port (port 0 picks a free one). */
export async function startHealthServer(options: {
  host: string;
  port: number;
  ready: () => Promise<boolean>;
  metrics: ServerMetrics;
  logger: Logger;
}): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/live') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"live":true}\n');
    } else if (path === '/ready') {
      options.ready().then(
        (ok) => res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(`{"ready":${ok}}\n`),
        () => res.writeHead(503, { 'content-type': 'application/json' }).end('{"ready":false}\n'),
      );
    } else if (path === '/metrics') {
      options.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.metrics.registry.contentType }).end(text),
        (err: unknown) => {
          options.logger.error({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    host: options.host,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
