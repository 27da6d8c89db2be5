#!/usr/bin/env node
/** `npm run lab -- up | down | status | fault …`: the lab from a terminal (see test/lab/README.md). */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { LabFault, LabProfile } from './lab.js';

const dirOption = { type: 'string', demandOption: true, describe: 'the lab directory' } as const;

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('lab')
    .strict()
    .command(
      'up',
      'bring a lab up',
      (y) =>
        y
          .option('dir', dirOption)
          .option('nodes', { type: 'number', default: 3, describe: 'number of nodes (1-30)' })
          .option('servers', { type: 'number', default: 1, describe: 'how many of them are mesh servers' })
          .option('profile', { choices: ['current', 'legacy'] as const, default: 'current' as const, describe: 'admin CLI: carbonio (current) or zmprov only (legacy)' })
          .option('service-discover-version', { type: 'string', describe: 'modelled release: 0.1.4, 0.1.6, 0.1.9, 0.7.2 (default: 0.7.2 current, 0.1.4 legacy)' })
          .option('mesh', { type: 'boolean', default: true, describe: 'bring the mesh up (--no-mesh: nodes and sshd only)' })
          .option('lose-password', { type: 'boolean', default: false, describe: 'delete the password file on the servers' })
          .option('keep-on-failure', { type: 'boolean', default: false, describe: 'leave a failed lab for inspection' })
          .option('concurrency', { type: 'number', default: 8, describe: 'nodes brought up in parallel' })
          .option('election-delay-ms', { type: 'number', describe: 'a server stands for election this long after its start (default 0)' })
          .option('rpc-hold-ms', { type: 'number', describe: 'RPCs wait this long for a leader before "No cluster leader" (default 7000, as Consul)' })
          .option('json', { type: 'boolean', default: false }),
      async (a) => {
        const { labUp } = await import('./lab.js');
        const lab = await labUp({
          dir: a.dir,
          nodes: a.nodes,
          servers: a.servers,
          profile: a.profile as LabProfile,
          ...(a['service-discover-version'] === undefined ? {} : { sdVersion: a['service-discover-version'] }),
          mesh: a.mesh,
          losePassword: a['lose-password'],
          concurrency: a.concurrency,
          election: {
            ...(a['election-delay-ms'] === undefined ? {} : { delayMs: a['election-delay-ms'] }),
            ...(a['rpc-hold-ms'] === undefined ? {} : { holdMs: a['rpc-hold-ms'] }),
          },
          keepOnFailure: a['keep-on-failure'],
          log: a.json ? undefined : (l) => console.error(l),
        });
        if (a.json) console.log(JSON.stringify(lab, null, 2));
        else {
          console.log(`lab ${lab.cluster} is up in ${lab.dir}`);
          for (const n of lab.nodes) console.log(`  ${n.name.padEnd(28)} ${n.ip.padEnd(15)} ${n.kind}`);
          console.log(`ssh -F ${lab.sshConfig} ${lab.nodes[0]?.short ?? ''}`);
          console.log(`inventory: ${lab.inventory}`);
        }
      },
    )
    .command(
      'down',
      'remove a lab (idempotent; also after a crash)',
      (y) => y.option('dir', dirOption),
      async (a) => {
        const { labDown } = await import('./lab.js');
        const t = Date.now();
        const r = await labDown(a.dir);
        console.log(`lab down in ${Date.now() - t} ms: ${r.killed} processes, ${r.netns.length} namespaces, ${r.links.length} links removed`);
      },
    )
    .command(
      'status',
      'show the nodes and their processes',
      (y) => y.option('dir', dirOption).option('json', { type: 'boolean', default: false }),
      async (a) => {
        const { labStatus } = await import('./lab.js');
        const s = labStatus(a.dir);
        if (a.json) return console.log(JSON.stringify(s, null, 2));
        console.log(`lab ${s.cluster} (${s.profile}) bridge ${s.bridge} subnet ${s.subnet} preferred leader ${s.leader}`);
        for (const n of s.nodes) {
          console.log(
            `  ${n.name.padEnd(28)} ${n.ip.padEnd(15)} ${n.kind.padEnd(6)} sshd:${n.sshd ? 'up' : 'down'} agent:${n.agent ? 'up' : 'down'}` +
              ` procs:${n.processes} rss:${Math.round(n.rssKiB / 1024)}MiB${n.hostnameLoopback ? ' hostname-i:127.0.1.1' : ''}`,
          );
        }
      },
    )
    .command('fault', 'inject or clear a fault', (y) =>
      y
        .option('dir', dirOption)
        .command('latency <node> <key> <ms>', 'make a simulated command slower ("*" for all; 0 clears)', {}, (a) =>
          fault(a.dir as string, { kind: 'latency', node: String(a.node), key: String(a.key), ms: Number(a.ms) }),
        )
        .command('fail-next-setup <node> [message]', 'the next service-discover setup on the node fails', {}, (a) =>
          fault(a.dir as string, { kind: 'fail-next-setup', node: String(a.node), message: a.message === undefined ? undefined : String(a.message) }),
        )
        .command('crash <node>', 'kill every process of the node', {}, (a) => fault(a.dir as string, { kind: 'crash', node: String(a.node) }))
        .command('restore <node>', 'bring a crashed node back (sshd, and the agent if it ran)', {}, (a) =>
          fault(a.dir as string, { kind: 'restore', node: String(a.node) }),
        )
        .command('sshd-stop <node>', "stop only the node's sshd", {}, (a) => fault(a.dir as string, { kind: 'sshd-stop', node: String(a.node) }))
        .command('sshd-start <node>', "start the node's sshd again", {}, (a) => fault(a.dir as string, { kind: 'sshd-start', node: String(a.node) }))
        .command('leader <node>', 'move the mesh leadership to the node', {}, (a) => fault(a.dir as string, { kind: 'leader', node: String(a.node) }))
        .command('hostname-loopback <node> <state>', '`hostname -i` answers 127.0.1.1 (on) or the node address (off)', {}, (a) =>
          fault(a.dir as string, { kind: 'hostname-loopback', node: String(a.node), on: String(a.state) === 'on' }),
        )
        .command('directory <state>', 'the directory (LDAP endpoint every setup connects to) goes down, comes up, or (bind-fail) is up but refuses the bind', {}, (a) =>
          fault(a.dir as string, { kind: 'directory', node: '', on: ['up', 'bind-fail'].includes(String(a.state)), rejectBinds: String(a.state) === 'bind-fail' }),
        )
        .command('mailbox <node> <state>', "the node's mailbox (the admin SOAP service zmprov uses without -l) goes down or comes up", {}, (a) =>
          fault(a.dir as string, { kind: 'mailbox', node: String(a.node), on: String(a.state) === 'up' }),
        )
        .demandCommand(1, 'name a fault'),
    )
    .demandCommand(1, 'name a command: up, down, status or fault')
    .fail((msg, err, y) => {
      if (err) throw err;
      console.error(msg);
      y.showHelp();
      process.exit(2);
    })
    .help()
    .parseAsync();
}

async function fault(dir: string, f: LabFault): Promise<void> {
  const { labFault } = await import('./lab.js');
  console.log(await labFault(dir, f));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
