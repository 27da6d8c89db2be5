/**
 * The catalog census: the services and passing checks recorded before the wipe are compared after the run, and
 * `regen status` shows what went missing or stopped passing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { harness, type Harness } from '../support/machine-harness.js';
import { deregisterService, setCheckStatus } from '../sim/catalog.js';
import { buildStatusView } from '../../cli/commands/status.js';
import { renderStatus } from '../../adapters/terminal/status.js';
import { compareCatalog, snapshotOf } from '../../machines/catalog-census.js';
import type { NodePort } from '../../machines/port.js';
import { CommandFailedError } from '../../machines/errors.js';
import { readCatalog } from '../../adapters/carbonio/commands.js';
import { parseCatalog } from '../../adapters/carbonio/catalog-parse.js';

let h: Harness | undefined;
afterEach(() => h?.cleanup());

function bind<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    const v = (o as Record<string, unknown>)[k];
    out[k] = typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(o) : v;
  }
  return out as T;
}

function statusOf(hh: Harness, runId: string) {
  const store = hh.open();
  const run = store.getRun(runId);
  if (run === null) throw new Error('no run');
  return buildStatusView(store, run);
}

describe('catalog census against the fake cluster', () => {
  it('an unchanged mesh reports nothing, and the snapshot was taken before the wipe', async () => {
    h = harness({ servers: 1, agents: 2 });
    const r = await h.start();
    expect(r.state).toBe('done');
    const view = statusOf(h, r.runId);
    expect(view.catalog?.before).toMatchObject({ recorded: true, passing: 6 });
    // consul + one Carbonio service per node.
    expect(view.catalog?.before?.services).toBe(4);
    expect(view.catalog?.after).toEqual({ compared: true, reason: null, missingServices: [], failingChecks: [] });
    const text = renderStatus(view);
    expect(text).toContain('every service still registered');
    expect(text).not.toContain('missing services');
  });

  it('a service that disappears and a check that goes from passing to critical are reported', async () => {
    h = harness({ servers: 1, agents: 2 });
    const [a1, a2] = h.cluster.agents as [string, string];
    const world = h.cluster.world;
    const short = (n: string) => n.split('.')[0] ?? n;
    const port = bind(h.cluster.port);
    const setupLeader: NodePort['setupLeader'] = async (...args) => {
      await h?.cluster.port.setupLeader(...args);
      deregisterService(world, a1, `carbonio-${short(a1)}`);
      setCheckStatus(world, a2, `service:carbonio-${short(a2)}`, 'critical');
    };
    const r = await h.start({ port: { ...port, setupLeader } });
    expect(r.state).toBe('done');
    const view = statusOf(h, r.runId);
    expect(view.catalog?.after?.missingServices).toEqual([`carbonio-${short(a1)}`]);
    const consulName = (n: string) => Object.values(world.state.members).find((m) => m.node === n)?.nodeName;
    expect(view.catalog?.after?.failingChecks).toEqual(
      expect.arrayContaining([
        { check: `${consulName(a2)}/service:carbonio-${short(a2)}`, status: 'critical' },
        { check: `${consulName(a1)}/service:carbonio-${short(a1)}`, status: 'missing' },
      ]),
    );
    expect(view.catalog?.after?.failingChecks).toHaveLength(2);
    const text = renderStatus(view);
    expect(text).toContain(`missing services: carbonio-${short(a1)}`);
    expect(text).toContain(`check failing: ${consulName(a2)}/service:carbonio-${short(a2)} (passing before, critical now)`);
  });

  it('a catalog nothing can read before the wipe is "not recorded", and the run still finishes', async () => {
    h = harness({ servers: 1, agents: 1 });
    const readCatalog: NodePort['readCatalog'] = async (node, s) => {
      if (s === null) throw new Error('curl: (7) Failed to connect to 127.0.0.1 port 8500');
      return h!.cluster.port.readCatalog(node, s);
    };
    const r = await h.start({ port: { ...bind(h.cluster.port), readCatalog } });
    expect(r.state).toBe('done');
    const view = statusOf(h, r.runId);
    expect(view.catalog?.before).toMatchObject({ recorded: false });
    expect(view.catalog?.after?.compared).toBe(false);
    expect(renderStatus(view)).toContain('not recorded');
  });
});

describe('catalog census across a resume', () => {
  it('the snapshot is taken once, before the wipe, and the resumed run compares with it', async () => {
    h = harness({ servers: 1, agents: 1 });
    const base = bind(h.cluster.port);
    let anonymousReads = 0;
    let failStop = true;
    const readCatalog: NodePort['readCatalog'] = async (node, s) => {
      if (s === null) anonymousReads++;
      return base.readCatalog(node, s);
    };
    const stopService: NodePort['stopService'] = async (node) => {
      if (failStop) {
        failStop = false;
        throw new CommandFailedError(node, 'Failed to stop service-discover.service: Access denied', 1);
      }
      return base.stopService(node);
    };
    const port = { ...base, readCatalog, stopService };
    const first = await h.start({ port });
    expect(first.state).toBe('failed');
    expect(statusOf(h, first.runId).catalog?.after).toBeNull();
    const second = await h.resume(first.runId, { port });
    expect(second.state).toBe('done');
    expect(anonymousReads).toBe(1);
    expect(statusOf(h, first.runId).catalog?.after).toEqual({ compared: true, reason: null, missingServices: [], failingChecks: [] });
  });
});

describe('compareCatalog', () => {
  it('an empty catalog is a token that reads nothing, not a snapshot', () => {
    expect(snapshotOf({ services: [], checks: [] })).toMatchObject({ recorded: false });
  });
  it('a warning after passing is reported; a check failing before is not', () => {
    const before = snapshotOf({ services: ['consul', 'a'], checks: [{ node: 'n1', checkId: 'c1', status: 'passing' }, { node: 'n1', checkId: 'c2', status: 'critical' }] });
    const after = compareCatalog(before, { services: ['consul', 'a'], checks: [{ node: 'n1', checkId: 'c1', status: 'warning' }, { node: 'n1', checkId: 'c2', status: 'critical' }] });
    expect(after.failingChecks).toEqual([{ check: 'n1/c1', status: 'warning' }]);
    expect(after.missingServices).toEqual([]);
  });
});

describe('the catalog command and its parser', () => {
  it('puts the token in a header file, never on curl\'s command line', () => {
    const withToken = readCatalog(true);
    const curls = withToken.split('\n').filter((l) => l.includes('curl -'));
    expect(curls).toHaveLength(2);
    for (const l of curls) {
      expect(l).toContain('-H @"$G/h"');
      expect(l).not.toContain('CONSUL_HTTP_TOKEN');
    }
    // Without a token the header file is empty: the agent's default token answers.
    expect(readCatalog(false)).not.toContain('CONSUL_HTTP_TOKEN');
  });

  it('parses the services map and the checks, and refuses anything else', () => {
    const out = 'services={"consul":[],"carbonio-mailbox":["v1"]}\nchecks=[{"Node":"agent-m1","CheckID":"serfHealth","Status":"passing"}]\n';
    expect(parseCatalog(out, 'm1')).toEqual({ services: ['carbonio-mailbox', 'consul'], checks: [{ node: 'agent-m1', checkId: 'serfHealth', status: 'passing' }] });
    expect(() => parseCatalog('services=[]\nchecks=[]\n', 'm1')).toThrow(/catalog\/services/);
    expect(() => parseCatalog('services={}\nchecks=[{"Node":1}]\n', 'm1')).toThrow(/health\/state/);
    expect(() => parseCatalog('<html>', 'm1')).toThrow();
  });
});
