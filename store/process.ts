/**
 * The one rule for "is this process alive" on this host: signal 0 reaches it, or it exists and belongs to someone
 * else (EPERM). Only "no such process" (ESRCH) means gone. The lock's takeover, `regen unlock` and `regen status`
 * all ask this.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
