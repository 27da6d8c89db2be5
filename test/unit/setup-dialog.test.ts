/**
 * regen's terminal dialog (adapters/ssh/pty-dialog.ts, adapters/carbonio/setup-dialog.ts) against the simulated
 * `setup-wizard` (test/sim/setup-dialog.ts), byte for byte through an in-memory pseudo-terminal.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CommandFailedError, OutcomeUnknownError } from '../../machines/errors.js';
import { createCarbonioPort } from '../../adapters/carbonio/port.js';
import { Secret } from '../../adapters/secrets/secret.js';
import { driveDialog, type DialogOptions, type DialogResult } from '../../adapters/ssh/pty-dialog.js';
import type { ExecResult, Remote } from '../../adapters/ssh/remote.js';
import { SimError } from '../../test/sim/model.js';
import {
  BIND_PROMPT,
  FIRST_PASSWORD_PROMPT,
  JOIN_PASSWORD_PROMPT,
  SECOND_PASSWORD_PROMPT,
  TermEof,
  XTerm,
  agentWizard,
  nonLoopback,
  serverWizard,
  type DialogInterface,
  type TermIo,
} from '../../test/sim/setup-dialog.js';

const SECRET_TEXT = 'Mesh-S3cret with $pecial \'quotes\'';
const IFACES: DialogInterface[] = [
  { name: 'lo', addresses: ['127.0.0.1/8'] },
  { name: 'eth0', addresses: ['10.77.0.11/24', 'fe80::1/64'] },
];

type Program = (t: XTerm) => Promise<void>;

/** A pseudo-terminal in memory: what regen writes is the program's input; what the program writes is output. */
class FakePty extends EventEmitter {
  readonly typed: string[] = [];
  closed = false;
  private readonly input: number[] = [];
  private waiter: ((b: number | null) => void) | null = null;

  constructor(program: Program) {
    super();
    const io: TermIo = {
      write: (bytes) => setImmediate(() => this.emit('data', Buffer.from(bytes, 'utf8'))),
      readByte: () => {
        const b = this.input.shift();
        if (b !== undefined) return Promise.resolve(b);
        if (this.closed) return Promise.resolve(null);
        return new Promise((resolve) => (this.waiter = resolve));
      },
    };
    setImmediate(() => {
      program(new XTerm(io)).then(
        () => this.exit(0),
        (e: unknown) => {
          if (e instanceof SimError) io.write(`service-discover: error: ${e.message}\r\n`);
          this.exit(e instanceof TermEof ? 2 : 1);
        },
      );
    });
  }

  private exit(code: number): void {
    setImmediate(() => {
      this.emit('exit', code);
      this.emit('close');
    });
  }

  write(data: string): boolean {
    this.typed.push(data);
    for (const b of Buffer.from(data, 'utf8')) {
      const w = this.waiter;
      this.waiter = null;
      if (w !== null) w(b);
      else this.input.push(b);
    }
    return true;
  }

  close(): void {
    this.closed = true;
    const w = this.waiter;
    this.waiter = null;
    if (w !== null) w(null);
    setImmediate(() => this.emit('close'));
  }
}

interface Session {
  command: string;
  pty: FakePty;
  result?: DialogResult;
}

function terminalNode(program: Program) {
  const sessions: Session[] = [];
  const remotes = (node: string): Remote => ({
    node,
    exec: (): Promise<ExecResult> => Promise.reject(new Error('setup must not run without a terminal')),
    async dialog(command: string, opts: DialogOptions): Promise<DialogResult> {
      const s: Session = { command, pty: new FakePty(program) };
      sessions.push(s);
      s.result = await driveDialog(s.pty, node, command, { ...opts, quietMs: 50 });
      return s.result;
    },
    close: () => Promise.resolve(),
  });
  const port = createCarbonioPort(remotes, { commandTimeoutMs: 2_000, setupTimeoutMs: 2_000, clock: () => 0 });
  return { port, sessions };
}

const secret = (): Secret => new Secret(SECRET_TEXT, 'mesh secret');

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('setup-wizard over a terminal', () => {
  it('the leader answers the bind address, then the password twice; the secret is on no command line and never echoed', async () => {
    const n = terminalNode(async (t) => {
      const a = await serverWizard(t, IFACES, true);
      expect(a).toEqual({ bind: '10.77.0.11', password: SECRET_TEXT });
    });
    await n.port.setupLeader('mail1', '10.77.0.11', secret());
    const s = n.sessions[0] as Session;
    expect(s.command).toContain('service-discover setup-wizard --first-instance');
    expect(s.command).not.toContain('S3cret');
    expect(s.pty.typed).toEqual(['10.77.0.11\r', `${SECRET_TEXT}\r`, `${SECRET_TEXT}\r`]);
    expect(s.result?.answered).toBe(3);
    // The bind address is echoed by ReadLine; the passwords are not.
    expect(s.result?.transcript).toBe(
      'Setup of first service-discover server instance\r\r\neth0 10.77.0.11/24, fe80::1/64\r\n' +
        `Specify the binding address for service discovery: 10.77.0.11\r\n${FIRST_PASSWORD_PROMPT}\r\n${SECOND_PASSWORD_PROMPT}\r\n`,
    );
  });

  it('a join (server or agent) answers the password once', async () => {
    for (const kind of ['server', 'agent'] as const) {
      const n = terminalNode(async (t) => {
        const a = kind === 'server' ? await serverWizard(t, IFACES, false) : await agentWizard(t, IFACES);
        expect(a.password).toBe(SECRET_TEXT);
      });
      await n.port.setupFollower('mail2', '10.77.0.11', secret(), kind);
      const s = n.sessions[0] as Session;
      expect(s.command).toContain('service-discover setup-wizard');
      expect(s.command).not.toContain('--first-instance');
      expect(s.pty.typed).toEqual(['10.77.0.11\r', `${SECRET_TEXT}\r`]);
      expect(s.result?.transcript).toContain(JOIN_PASSWORD_PROMPT);
    }
  });

  it('the old answer shape (bind and secret as lines ending in \\n) does not get through the dialog', async () => {
    const pty = new FakePty(async (t) => {
      await serverWizard(t, IFACES, true);
    });
    const res = await driveDialog(pty, 'mail1', 'setup-wizard', {
      steps: [{ name: 'everything', prompt: 'Specify the binding address for service discovery: ', answer: () => `10.77.0.11\n${SECRET_TEXT}\n` }],
      stepTimeoutMs: 300,
      finishTimeoutMs: 300,
      redact: (x) => x.split(SECRET_TEXT).join('********'),
      quietMs: 50,
    });
    // x/term drops the bare \n: the line typed is one invalid address, and nothing is set up.
    expect(res.code).not.toBe(0);
  });

  it('mismatching passwords fail as the source says', async () => {
    const pty = new FakePty(async (t) => {
      await serverWizard(t, IFACES, true);
    });
    const answers = ['10.77.0.11', SECRET_TEXT, `${SECRET_TEXT}x`];
    const res = await driveDialog(pty, 'mail1', 'setup-wizard', {
      steps: [BIND_PROMPT, FIRST_PASSWORD_PROMPT, SECOND_PASSWORD_PROMPT].map((prompt, i) => ({ name: `step ${i}`, prompt, answer: () => answers[i] ?? '' })),
      stepTimeoutMs: 1_000,
      finishTimeoutMs: 1_000,
      redact: (x) => x.split(SECRET_TEXT).join('********'),
    });
    expect(res.code).toBe(1);
    expect(res.transcript).toMatch(/Type the credential password again: \r\nservice-discover: error: passwords do not match\r\n$/);
    expect(res.transcript).not.toContain('S3cret');
  });

  it('an unexpected prompt stops the step as an unknown outcome, with a redacted transcript', async () => {
    const n = terminalNode(async (t) => {
      t.write('Specify the binding address for service discovery: ');
      await t.readLine('', true);
      await t.readLine('One-time code: ', false);
    });
    const err = await rejection(n.port.setupFollower('mail2', '10.77.0.11', secret(), 'agent'));
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.message).toMatch(/unexpected prompt \(waiting for the password\)/);
    expect(err.message).toContain('One-time code: ');
    expect(n.sessions[0]?.pty.closed).toBe(true);
    expect(n.sessions[0]?.pty.typed).toEqual(['10.77.0.11\r']);
  });

  it('a prompt that never comes is an unknown outcome after the step timeout', async () => {
    const n = terminalNode(() => new Promise(() => {}));
    const err = await rejection(n.port.setupLeader('mail1', '10.77.0.11', secret()));
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.message).toMatch(/no prompt for the bind address/);
    expect(n.sessions[0]?.pty.typed).toEqual([]);
  });

  it('a bind address that is not on a card fails with the source text and the inventory hint', async () => {
    const n = terminalNode(async (t) => {
      await agentWizard(t, IFACES);
    });
    const err = await rejection(n.port.setupFollower('mail2', '10.77.0.99', secret(), 'agent'));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err.message).toContain('invalid binding address selected');
    expect((err as CommandFailedError).hint).toMatch(/inventory/);
  });
});

describe('the simulated dialog', () => {
  it('drops lo by moving the last card into its place, as NonLoopbackInterfaces does', () => {
    const cards = [{ name: 'lo', addresses: [] }, { name: 'eth0', addresses: [] }, { name: 'eth1', addresses: [] }];
    expect(nonLoopback(cards).map((c) => c.name)).toEqual(['eth1', 'eth0']);
  });

  it('lists several cards under "Multiple network cards detected:"', async () => {
    const out: string[] = [];
    const input = [...Buffer.from('10.0.0.2\r')];
    const t = new XTerm({ write: (b) => out.push(b), readByte: () => Promise.resolve(input.shift() ?? null) });
    const cards = [...IFACES, { name: 'eth1', addresses: ['10.0.0.2/24'] }];
    await expect(agentWizard(t, cards)).rejects.toBeInstanceOf(TermEof);
    expect(out.join('')).toMatch(/^Multiple network cards detected:\r\neth1 10\.0\.0\.2\/24\r\neth0 10\.77\.0\.11\/24, fe80::1\/64\r\nSpecify/);
  });
});
