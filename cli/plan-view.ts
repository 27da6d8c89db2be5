/**
 * The plan as the operator reads it before confirming: leader, every node's profile, kind and bind address, the
 * backups, the steps in order with the command each one amounts to (secrets masked), and the warnings.
 */
import { BACKUP_ROOT, CONFIG_JSON, CREDENTIALS_FILE, MAIN_JSON, PASSWORD_FILE, RESET_FILE, SD_HOME, type Profile } from '../machines/port.js';
import type { PlannedNode } from '../machines/plan.js';
import type { RegenContext } from '../machines/recovery.js';

const MASK = '********';

function wipeCommand(profile: Profile): string {
  return profile === 'current' ? `rm ${CONFIG_JSON} ${MAIN_JSON} ${SD_HOME}/*.pem` : `rm ${SD_HOME}/*.pem`;
}

/** The seed-equivalent command of each step for one node. */
export function plannedSteps(ctx: RegenContext, n: PlannedNode): { step: string; command: string }[] {
  const backup = { step: 'backup', command: `cp -a ${CONFIG_JSON} ${MAIN_JSON} ${CREDENTIALS_FILE} ${SD_HOME}/*.pem ${PASSWORD_FILE} ${BACKUP_ROOT}/${ctx.runId}/ (those present; sha256 recorded)` };
  if (n.role === 'leader') {
    return [
      backup,
      { step: 'leader.reset-index', command: 'consul acl bootstrap   (reads "reset index: N" from the 403 answer)' },
      { step: 'leader.reset-file', command: `runuser -u service-discover -- sh -c 'echo N > ${RESET_FILE}'` },
      { step: 'leader.stop', command: 'systemctl stop service-discover' },
      { step: 'leader.wipe', command: wipeCommand(n.profile) },
      { step: 'leader.setup', command: `service-discover setup ${n.bindAddress} --first-instance --password=${MASK}   (secret via stdin)` },
      { step: 'leader.verify', command: 'consul members   (token decrypted on the node from the new credentials)' },
    ];
  }
  const setup =
    n.kind === 'agent'
      ? `service-discover setup --wizard   (bind ${n.bindAddress} and the secret on stdin)`
      : `service-discover setup ${n.bindAddress} --password=${MASK}   (secret via stdin)`;
  return [
    backup,
    { step: 'follower.copy-credentials', command: `leader:${CREDENTIALS_FILE} → ${CREDENTIALS_FILE} (sha256 checked)` },
    { step: 'follower.stop', command: 'systemctl stop service-discover' },
    { step: 'follower.wipe', command: wipeCommand(n.profile) },
    { step: 'follower.setup', command: setup },
    { step: 'follower.verify', command: 'consul members on the leader: this node alive' },
  ];
}

export function renderPlan(ctx: RegenContext, _o: { color: boolean }): string {
  const lines: string[] = [];
  const leader = ctx.nodes.find((n) => n.name === ctx.leader);
  lines.push(`Plan for cluster ${ctx.cluster} (run ${ctx.runId})`);
  lines.push(`  leader: ${leader ? `${leader.name} (${leader.bindAddress})` : 'not settled'}`);
  const servers = ctx.nodes.filter((n) => n.kind === 'server').length;
  lines.push(`  nodes: ${ctx.nodes.length} (${servers} mesh server${servers === 1 ? '' : 's'}, ${ctx.nodes.length - servers} agent${ctx.nodes.length - servers === 1 ? '' : 's'}); followers ${ctx.options.parallel} at a time`);
  lines.push(`  backups: ${BACKUP_ROOT}/${ctx.runId}/ on every node, before anything is removed`);
  lines.push('');
  const ordered = [...ctx.nodes].sort((a, b) => (a.role === 'leader' ? -1 : b.role === 'leader' ? 1 : a.kind === b.kind ? 0 : a.kind === 'server' ? -1 : 1));
  for (const n of ordered) {
    lines.push(`${n.name}  ${n.role ?? '?'}  ${n.kind ?? '?'}  profile ${n.profile}  bind ${n.bindAddress}`);
    for (const s of plannedSteps(ctx, n)) lines.push(`    ${s.step.padEnd(26)} ${s.command}`);
  }
  if (ctx.nodes.length > 1) lines.push(`\nthen final.verify on ${ctx.leader}: every node alive, every credentials file equal to the leader's`);
  if (ctx.options.revokeOldTokens) lines.push(`then harden.revoke: delete management tokens older than the new bootstrap token`);
  if (ctx.warnings.length) {
    lines.push('\nwarnings:');
    for (const w of ctx.warnings) lines.push(`  ! ${w.node ? `${w.node}: ` : ''}${w.message}`);
  }
  lines.push(`\nThe mesh is down from the leader's stop until the last node is set up again.`);
  return `${lines.join('\n')}\n`;
}
