/** The SSH edge of regen: the Remote contract, its ssh2 implementation, known_hosts and ssh_config. */
export type { AuditSink, ExecOptions, ExecResult, Remote } from './remote.js';
export {
  HostKeyPolicy,
  SshPool,
  SshTransport,
  connectNode,
  shq,
  targetFromInventory,
  wrapCommand,
} from './transport.js';
export type { AcceptedHostKey, PassphrasePrompt, SshPoolOptions, SshTarget, SshTransportOptions } from './transport.js';
export {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  formatKnownHostsLine,
  hostKeyFromBlob,
  knownHostsName,
  parseKnownHosts,
  readKnownHosts,
} from './known-hosts.js';
export type { HostKey, HostKeyCheck, KnownHostEntry } from './known-hosts.js';
export { defaultSshConfigPath, loadSshConfig, parseSshConfig, resolveHost } from './ssh-config.js';
export type { JumpHost, ResolvedHost, SshConfig } from './ssh-config.js';
