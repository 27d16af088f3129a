/** What one request under load came back with. */
export interface Answer {
  /** HTTP status, or what went wrong before one arrived. */
  status: number | 'timeout' | 'network-error';
  body: string;
  headers: Headers | undefined;
  /** Milliseconds from send to answer (or to giving up). */
  ms: number;
}

/**
 * fetch with a hard deadline: a request that hangs past `timeoutMs` is
 * reported as 'timeout' instead of holding the test up.
 */
export async function send(url: string, init: RequestInit = {}, timeoutMs = 10_000): Promise<Answer> {
  const started = performance.now();
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const body = await response.text();
    return { status: response.status, body, headers: response.headers, ms: performance.now() - started };
  } catch (error) {
    const name = (error as { name?: string }).name;
    const status = name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network-error';
    return { status, body: String((error as Error).message), headers: undefined, ms: performance.now() - started };
  }
}

export function postJson(url: string, payload: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000) {
  return send(
    url,
    { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(payload) },
    timeoutMs,
  );
}

/**
 * `workers` loops, each sending one request at a time until `running()` is
 * false: a closed-loop load, bounded by whatever ends `running`.
 */
export async function closedLoop<T>(
  workers: number,
  running: () => boolean,
  task: (worker: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (running()) results.push(await task(worker));
    }),
  );
  return results;
}

/** Counts of each status, for assertion messages. */
export function tally(answers: { status: Answer['status'] }[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[String(a.status)] = (counts[String(a.status)] ?? 0) + 1;
  return counts;
}
