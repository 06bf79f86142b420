/**
 * A small HTTP endpoint for orchestrator probes: `/live` answers 200 while the process runs,
 * `/ready` 200 or 503 with a JSON body naming each readiness check, so an operator sees
 * which one holds a pod back. Binaries may add routes of their own (the server's metrics).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running probe endpoint. */
export interface ProbeServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Readiness by check name; every one must be true for `/ready` to answer 200. */
export type ReadinessChecks = Readonly<Record<string, boolean>>;

/** Options of startProbeServer. */
export interface ProbeServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Evaluated on every `/ready` request; a rejection counts as not ready. */
  readonly readiness: () => ReadinessChecks | Promise<ReadinessChecks>;
  /** Extra GET routes by path; answered before 404. */
  readonly routes?: Readonly<Record<string, (req: IncomingMessage, res: ServerResponse) => void>>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
}

/** Serves `/live` and `/ready` (and `routes`) on host:port; resolves once listening. */
export async function startProbeServer(options: ProbeServerOptions): Promise<ProbeServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/live') {
      json(res, 200, { live: true });
    } else if (path === '/ready') {
      Promise.resolve()
        .then(() => options.readiness())
        .then(
          (checks) => {
            const ready = Object.values(checks).every(Boolean);
            json(res, ready ? 200 : 503, { ready, checks });
          },
          () => json(res, 503, { ready: false }),
        );
    } else {
      const route = options.routes?.[path];
      if (route !== undefined) route(req, res);
      else res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
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
