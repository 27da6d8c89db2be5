/** Small helpers the SSH modules share: how a host and a command are named in messages, and bounded waits. */

export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A command's first line, shortened, for messages. */
export function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? '';
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

/** A function, not an inline check, so TypeScript does not assume the flag cannot change across awaits. */
export function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

export function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Settles with `p`, or rejects with `onTimeout()` once `ms` have passed (the late result is ignored). */
export function withinDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
