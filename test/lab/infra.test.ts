/**
 * The lab's infrastructure, without the mesh: namespaces, sshd, host keys, per-node files, faults, down.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labDown, labFault, labNames, labStatus, labUp, loadLab, nodeExec, processesInNetns, sshExec } from './lab.js';
import { assertLabReady, labSkip, withLab } from './harness.js';

const skip = labSkip();

/** What the host still has of a lab: namespaces, links, processes, mounts, claims. */
function leftovers(dir: string): string[] {
  const names = labNames(dir);
  const found: string[] = [];
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  for (const l of ns.split('\n')) if (l.startsWith(names.netnsPrefix)) found.push(`netns ${l}`);
  for (const link of fs.readdirSync('/sys/class/net')) {
    if (link === names.bridge || link.startsWith(names.vethPrefix)) found.push(`link ${link}`);
  }
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmd.includes(dir) || cmd.includes(names.netnsPrefix)) found.push(`process ${pid} ${cmd}`);
  }
  for (const m of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (m.includes(dir) || m.includes(names.netnsPrefix)) found.push(`mount ${m}`);
  }
  if (fs.existsSync('/run/regen-lab/subnets')) {
    for (const c of fs.readdirSync('/run/regen-lab/subnets')) {
      if (fs.readFileSync(path.join('/run/regen-lab/subnets', c), 'utf8') === dir) found.push(`claim ${c}`);
    }
  }
  return found;
}

describe.skipIf(skip)('lab infrastructure (3 nodes, no mesh)', { timeout: 120_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', mesh: false });

  it('writes what a client needs: inventory, ssh_config, known_hosts, key, README, secret', () => {
    const { lab } = h;
    for (const f of [lab.inventory, lab.sshConfig, lab.knownHosts, lab.identityFile, `${lab.identityFile}.pub`, lab.secretFile]) {
      expect(fs.existsSync(f), f).toBe(true);
    }
    expect(fs.existsSync(path.join(lab.dir, 'README.md'))).toBe(true);
    expect(fs.statSync(lab.secretFile).mode & 0o777).toBe(0o600);
    expect(fs.statSync(lab.identityFile).mode & 0o777).toBe(0o600);
    const inv = fs.readFileSync(lab.inventory, 'utf8');
    expect(inv).toContain(`cluster: ${lab.cluster}`);
    for (const n of lab.nodes) {
      expect(inv).toContain(`name: ${n.name}`);
      expect(inv).toContain(`address: ${n.ip}`);
    }
    expect(lab.nodes.map((n) => n.kind)).toEqual(['server', 'agent', 'agent']);
  });

  it('each node answers ssh -F ssh_config with its own hostname, FQDN and address', async () => {
    const { lab } = h;
    for (const n of lab.nodes) {
      for (const alias of [n.short, n.name]) {
        const r = await sshExec(lab, alias, 'hostname; hostname -f; hostname -i; id -u; ip -4 -o addr show dev eth0');
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        const [short, fqdn, addr, uid, eth0] = r.stdout.trim().split('\n');
        expect({ short, fqdn, addr, uid }).toEqual({ short: n.short, fqdn: n.name, addr: n.ip, uid: '0' });
        expect(eth0).toContain(`${n.ip}/24`);
      }
    }
  });

  it('gives each node its own /etc/zextras, /var/lib/service-discover, /opt/zextras and /root', async () => {
    const { lab } = h;
    const [a, b] = lab.nodes;
    if (!a || !b) throw new Error('need two nodes');
    const w = await sshExec(lab, a.short, 'echo one > /etc/zextras/marker && echo two > /root/marker && ls -ld /var/lib/service-discover /var/lib/service-discover/data | awk "{print \\$3}"');
    expect(w.code).toBe(0);
    expect(w.stdout.trim().split('\n')).toEqual(['service-discover', 'service-discover']);
    expect(fs.readFileSync(path.join(a.root, 'etc-zextras', 'marker'), 'utf8')).toBe('one\n');
    const r = await sshExec(lab, b.short, 'ls /etc/zextras/marker /root/marker 2>&1; cat /etc/regen-lab/node.json; grep -o "<value>[^<]*" /opt/zextras/conf/localconfig.xml');
    expect(r.stdout).toContain('No such file');
    expect(r.stdout).not.toContain('one');
    const nodeJson = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'), r.stdout.lastIndexOf('}') + 1)) as Record<string, unknown>;
    expect(nodeJson).toMatchObject({ name: b.name, short: b.short, fqdn: b.name, ip: b.ip, kind: b.kind, labDir: lab.dir });
    expect(r.stdout).toContain(`<value>${b.name}`);
    // The host's own paths stay untouched.
    expect(fs.existsSync('/etc/zextras/marker')).toBe(false);
  });

  it('has the users and tools the seeds use: sudo -u service-discover, su - zextras, gpg, jq, wget', async () => {
    const { lab } = h;
    const r = await sshExec(
      lab,
      'mail2',
      'sudo -u service-discover bash -c "echo 7 > /var/lib/service-discover/data/probe" && stat -c %U /var/lib/service-discover/data/probe && ' +
        "su - zextras -c 'echo $PATH' && command -v gpg tar jq wget openssl consul service-discover systemctl",
    );
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('service-discover');
    expect(lines[1]?.split(':')[0]).toBe('/opt/zextras/bin');
    expect(lines.slice(2)).toEqual([
      '/usr/bin/gpg',
      '/usr/bin/tar',
      '/usr/bin/jq',
      '/usr/bin/wget',
      '/usr/bin/openssl',
      '/usr/local/sbin/consul',
      '/usr/local/sbin/service-discover',
      '/usr/local/sbin/systemctl',
    ]);
  });

  it('gives each node its own loopback: 127.0.0.1 in one node is not 127.0.0.1 in another', async () => {
    const { lab } = h;
    const server = `require('net').createServer((s)=>s.end('from-mail1\\n')).listen(18500,'127.0.0.1',()=>console.log('listening'))`;
    const started = await sshExec(lab, 'mail1', `nohup ${process.execPath} -e ${JSON.stringify(server)} > /root/listener.log 2>&1 & echo $!`);
    const pid = started.stdout.trim();
    expect(pid).toMatch(/^\d+$/);
    try {
      const fetch = `for i in $(seq 1 100); do grep -q listening /root/listener.log 2>/dev/null && break; sleep 0.05; done; wget -qO- -T 2 http://127.0.0.1:18500/`;
      const here = await sshExec(lab, 'mail1', fetch);
      expect(here.stdout).toBe('from-mail1\n');
      const there = await sshExec(lab, 'mail2', 'wget -qO- -T 2 -t 1 http://127.0.0.1:18500/');
      expect(there.code).not.toBe(0);
      expect(there.stdout).toBe('');
      // Nor is it reachable on the node's own address from the host.
      const host = spawnSync('wget', ['-qO-', '-T', '2', '-t', '1', `http://${lab.nodes[0]?.ip}:18500/`], { encoding: 'utf8' });
      expect(host.status).not.toBe(0);
    } finally {
      await sshExec(lab, 'mail1', `kill ${pid}`);
    }
  });

  it('verifies host keys: the generated known_hosts works, a wrong one is refused', async () => {
    const { lab } = h;
    const ok = await sshExec(lab, 'mail1', 'true', { sshOptions: ['-o', 'StrictHostKeyChecking=yes'] });
    expect(ok.code).toBe(0);
    // mail1's names with mail2's key: what a man in the middle would present.
    const lines = fs.readFileSync(lab.knownHosts, 'utf8').trim().split('\n');
    const key2 = lines[1]?.split(' ').slice(1).join(' ');
    const wrong = path.join(lab.dir, 'known_hosts.wrong');
    fs.writeFileSync(wrong, `${lab.nodes[0]?.ip},${lab.nodes[0]?.name},${lab.nodes[0]?.short} ${key2}\n`);
    const bad = await sshExec(lab, 'mail1', 'true', { sshOptions: ['-o', `UserKnownHostsFile=${wrong}`] });
    expect(bad.code).toBe(255);
    expect(bad.stderr).toMatch(/host key|REMOTE HOST IDENTIFICATION HAS CHANGED/i);
    const empty = path.join(lab.dir, 'known_hosts.empty');
    fs.writeFileSync(empty, '');
    const unknown = await sshExec(lab, 'mail1', 'true', { sshOptions: ['-o', `UserKnownHostsFile=${empty}`] });
    expect(unknown.code).toBe(255);
    expect(unknown.stderr).toMatch(/Host key verification failed/);
  });

  it('lets root on one node reach another (the seed copies the credentials with scp)', async () => {
    const { lab } = h;
    const leader = lab.nodes[0];
    const r = await sshExec(lab, 'mail3', `scp -q root@[${leader?.ip}]:/etc/hostname /tmp/leader-hostname 2>&1; ssh ${leader?.name} hostname`);
    expect(r.stdout.trim()).toBe('mail1');
    expect(r.code).toBe(0);
  });

  it('hostname-loopback makes `hostname -i` answer 127.0.1.1, and back', async () => {
    const { lab } = h;
    await labFault(lab.dir, { kind: 'hostname-loopback', node: 'mail2', on: true });
    const on = await sshExec(lab, 'mail2', 'hostname -i; getent ahostsv4 mail2.lab.example | head -1');
    expect(on.stdout.split('\n')[0]).toBe('127.0.1.1');
    expect(on.stdout.split('\n')[1]).toContain(lab.nodes[1]?.ip);
    expect(labStatus(lab.dir).nodes[1]?.hostnameLoopback).toBe(true);
    await labFault(lab.dir, { kind: 'hostname-loopback', node: 'mail2', on: false });
    const off = await sshExec(lab, 'mail2', 'hostname -i');
    expect(off.stdout.trim()).toBe(lab.nodes[1]?.ip);
  });

  it('writes latency and fail-next-setup knobs where the simulated commands read them', async () => {
    const { lab } = h;
    await labFault(lab.dir, { kind: 'latency', node: 'mail2', key: 'service-discover setup', ms: 3000 });
    await labFault(lab.dir, { kind: 'fail-next-setup', node: 'mail2', message: 'disk full' });
    const r = await sshExec(lab, 'mail2', 'cat /etc/regen-lab/faults.json');
    expect(JSON.parse(r.stdout)).toEqual({ latencyMs: { 'service-discover setup': 3000 }, failNextSetup: 'disk full' });
    await labFault(lab.dir, { kind: 'latency', node: 'mail2', key: 'service-discover setup', ms: 0 });
    const cleared = await nodeExec(lab, 'mail2', ['cat', '/etc/regen-lab/faults.json']);
    expect(JSON.parse(cleared.stdout)).toEqual({ latencyMs: {}, failNextSetup: 'disk full' });
  });

  it('crash kills every process of a node; restore brings it back with its files', async () => {
    const { lab } = h;
    const n = lab.nodes[1];
    if (!n) throw new Error('need mail2');
    // A session left running inside the node must die with it.
    await sshExec(lab, 'mail2', 'echo kept > /etc/zextras/crash-marker; nohup sleep 300 > /dev/null 2>&1 &');
    expect(processesInNetns(n.netns).length).toBeGreaterThanOrEqual(2);
    await labFault(lab.dir, { kind: 'crash', node: 'mail2' });
    expect(processesInNetns(n.netns)).toEqual([]);
    const down = await sshExec(lab, 'mail2', 'true', { sshOptions: ['-o', 'ConnectTimeout=3'] });
    expect(down.code).toBe(255);
    expect(labStatus(lab.dir).nodes[1]?.sshd).toBe(false);
    await labFault(lab.dir, { kind: 'restore', node: 'mail2' });
    const up = await sshExec(loadLab(lab.dir), 'mail2', 'hostname; cat /etc/zextras/crash-marker');
    expect(up.stdout).toBe('mail2\nkept\n');
    expect(labStatus(lab.dir).nodes[1]?.sshd).toBe(true);
  });

  it('sshd-stop refuses new logins but keeps the node; sshd-start lets them in again', async () => {
    const { lab } = h;
    const n = lab.nodes[2];
    if (!n) throw new Error('need mail3');
    await sshExec(lab, 'mail3', 'nohup sleep 300 > /dev/null 2>&1 &');
    await labFault(lab.dir, { kind: 'sshd-stop', node: 'mail3' });
    const refused = await sshExec(lab, 'mail3', 'true', { sshOptions: ['-o', 'ConnectTimeout=3'] });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/refused/);
    // The node itself still runs (its other processes) and nodeExec still reaches it.
    const inside = await nodeExec(loadLab(lab.dir), 'mail3', ['hostname']);
    expect(inside.stdout.trim()).toBe('mail3');
    await labFault(lab.dir, { kind: 'sshd-start', node: 'mail3' });
    const back = await sshExec(loadLab(lab.dir), 'mail3', 'hostname');
    expect(back.stdout.trim()).toBe('mail3');
  });

  it('moves the preferred leader', async () => {
    const { lab } = h;
    await labFault(lab.dir, { kind: 'leader', node: 'mail2' });
    expect(labStatus(lab.dir).leader).toBe('mail2.lab.example');
  });
});

describe.skipIf(skip)('lab down', { timeout: 120_000 }, () => {
  it('removes every namespace, link, process, mount and file; twice is fine', async () => {
    assertLabReady({ mesh: false });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-lab-down-'));
    try {
      const lab = await labUp({ dir, nodes: 2, servers: 1, profile: 'legacy', mesh: false });
      await sshExec(lab, 'mail2', 'nohup sleep 300 > /dev/null 2>&1 &');
      expect(leftovers(dir).length).toBeGreaterThan(0);
      await labDown(dir);
      expect(leftovers(dir)).toEqual([]);
      expect(fs.existsSync(dir)).toBe(false);
      await labDown(dir);
      expect(leftovers(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cleans a lab that crashed before writing lab.json', async () => {
    assertLabReady({ mesh: false });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-lab-crashed-'));
    try {
      await labUp({ dir, nodes: 2, servers: 1, profile: 'current', mesh: false });
      fs.rmSync(path.join(dir, 'lab.json'));
      expect(leftovers(dir).length).toBeGreaterThan(0);
      await labDown(dir);
      expect(leftovers(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a lab directory that the nodes would not see', async () => {
    await expect(labUp({ dir: '/root/lab', nodes: 1, servers: 1, profile: 'current', mesh: false })).rejects.toThrow(/mounts over/);
  });
});
