/** What to do about a cluster lock held in the database, from the typed conflict the store reports. */
import { shq } from '../adapters/shell/quote.js';
import { LockConflictError, type LockConflict } from '../store/lock.js';

export function lockAdvice(c: LockConflict): string {
  const unlock = `regen unlock --cluster ${shq(c.cluster)}`;
  if (c.holderAlive === false) return unlock;
  if (c.holderAlive === true) return `wait for run ${c.holder.runId} to finish, or stop pid ${c.holder.pid} first; ${unlock} only once it is gone`;
  return `if run ${c.holder.runId} is no longer running on ${c.holder.host}: ${unlock}`;
}

/** The hint an error carries; a lock conflict's is worded here. */
export function hintOf(err: unknown): string | undefined {
  if (err instanceof LockConflictError) return lockAdvice(err.conflict);
  return (err as { hint?: string } | null)?.hint;
}
