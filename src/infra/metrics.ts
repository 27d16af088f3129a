import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Gatehouse's Prometheus instruments, on a registry of its own (never the
 * global one), so that several apps in one process or a host application's
 * own metrics never collide. Flows increment them through `services.metrics`;
 * a host can merge `metrics.registry` into its own with `Registry.merge`.
 */
export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpRequestDuration: Histogram<'method' | 'route' | 'status'>;
  registrations: Counter<never>;
  /** outcome: success, invalid_credentials, locked, disabled, unverified, rate_limited … */
  logins: Counter<'outcome'>;
  lockouts: Counter<never>;
  /** limiter: register, login, … */
  rateLimited: Counter<'limiter'>;
  hashWait: Histogram<never>;
  breachCheckFailures: Counter<never>;
  auditRowsSealed: Counter<never>;
  housekeepingDeleted: Counter<'table'>;
  /** Adds a gauge read when Prometheus scrapes, e.g. a queue length held elsewhere. */
  gaugeOnScrape(name: string, help: string, read: () => number | Promise<number>): void;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' });
  const registers = [registry];

  return {
    registry,
    httpRequests: new Counter({
      name: 'gatehouse_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    }),
    httpRequestDuration: new Histogram({
      name: 'gatehouse_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method, route template and status code',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    registrations: new Counter({
      name: 'gatehouse_registrations_total',
      help: 'Accounts created',
      registers,
    }),
    logins: new Counter({
      name: 'gatehouse_logins_total',
      help: 'Login attempts, by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    lockouts: new Counter({
      name: 'gatehouse_lockouts_total',
      help: 'Identifiers locked after too many failed logins',
      registers,
    }),
    rateLimited: new Counter({
      name: 'gatehouse_rate_limited_total',
      help: 'Requests refused with 429 by a rate limiter, by limiter',
      labelNames: ['limiter'],
      registers,
    }),
    hashWait: new Histogram({
      name: 'gatehouse_hash_queue_wait_seconds',
      help: 'Time a password hash or verification waited for a free hashing slot',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    breachCheckFailures: new Counter({
      name: 'gatehouse_breach_check_failures_total',
      help: 'Breach checks that could not be completed (API unreachable or erroring)',
      registers,
    }),
    auditRowsSealed: new Counter({
      name: 'gatehouse_audit_rows_sealed_total',
      help: 'Audit log rows sealed onto the hash chain by this process',
      registers,
    }),
    housekeepingDeleted: new Counter({
      name: 'gatehouse_housekeeping_deleted_total',
      help: 'Expired or retired rows deleted by housekeeping, by table',
      labelNames: ['table'],
      registers,
    }),
    gaugeOnScrape(name, help, read) {
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          // A dependency that is down must not take /metrics down with it: the series just goes missing.
          this.reset();
          try {
            this.set(await read());
          } catch {}
        },
      });
    },
  };
}
