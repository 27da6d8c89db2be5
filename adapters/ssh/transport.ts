/**
 * The real transport: Remote over ssh2, one connection per node, reused for every command.
 *
 * Outcomes follow adapters/ssh/remote.ts: a command that never started is NodeUnreachableError, one that
 * ran to its end resolves with its exit code, and one whose end regen did not see (timeout, dropped
 * connection, killed channel, abort) is OutcomeUnknownError, which the caller settles with a probe.
 * Reconnecting happens only before a command starts; a command is never re-sent by the transport.
 *
 * By concern: host-keys.ts (known_hosts policy), auth.ts (agent, keys, passphrases), connect.ts (hops, ProxyJump,
 * retries), exec.ts (the command's channel, deadline and output cap), pool.ts (the per-node Remote and the pool).
 */
export { shq } from '../shell/quote.js';
export type { PassphrasePrompt } from './auth.js';
export { OUTPUT_CAP_BYTES, TailBuffer, withheld, wrapCommand } from './exec.js';
export { HostKeyPolicy } from './host-keys.js';
export type { AcceptedHostKey, HostKeyFiles } from './host-keys.js';
export { targetFromInventory } from './options.js';
export type { SshTarget, SshTransportOptions } from './options.js';
export { SshPool, SshTransport, Slots, connectNode } from './pool.js';
export type { SshPoolOptions } from './pool.js';
export { withinDeadline } from './util.js';
